/* The requests a router has in flight, on disk, so that the router that starts next on
 * the same file goes on with them. Lines, each written with one write() straight to the
 * kernel so that a router killed with -9 leaves them behind:
 *
 *   A <req_id> <client routing id, hex> <client's id, hex, or -> <generate frame, hex>
 *   T <req_id> <L|-> <token> ...      tokens streamed (L: the last one is the final token)
 *   E <req_id>                         ended
 *
 * The frame is the client's `generate` with its prompt as token ids and its tenant. T
 * lines lag the stream by PD_ROUTER_JOURNAL_LAG_MS to 2x that, so a token is on disk only
 * once the socket has had that long to write it out: what the journal says was streamed
 * the client has (the tokens handed to the socket in the last few milliseconds before the
 * kill come again, with their index). E lines lag the same way, so that a `done` still in
 * the socket at the kill is not lost with it: the next router ends the request again
 * (a client that has its done ignores the second); a router that stops cleanly writes
 * them all before it exits. A router that starts on the journal of one that died sends
 * each client that comes back (clients keep their routing id across reconnects)
 * `accepted` with `resumed` and queues its request again after the tokens the journal
 * holds; the sampler's seed is per position, so the continuation is the undisturbed
 * stream. Past --journal-compact-kb the file is rewritten with only the live requests
 * (pd_router_journal_compact). An entry
 * it cannot continue (no frame, a frame that does not decode) gets one `error`
 * (PD_ERR_PEER) instead, for up to PD_ROUTER_JOURNAL_NOTIFY_MS: nobody waits for
 * nothing. */
#include "router_int.h"

#include "pd/json.h"
#include "pd/log.h"
#include "pd/time.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define PD_ROUTER_JOURNAL_NOTIFY_MS 2000u
/* How long a client whose request can go on has to reconnect. */
#define PD_ROUTER_JOURNAL_RESUME_MS 10000u
#define PD_ROUTER_JOURNAL_MAX_LIVE  65536u
/* How long a token streamed waits before it is written (ZeroMQ's I/O thread sends it). */
#define PD_ROUTER_JOURNAL_LAG_MS 10u

struct pd_router_orphan {
    uint64_t req_id;
    pd_router_rid_t client;
    char id[PD_PROTO_ID_CAP];
    pd_proto_msg_t *gen; /* the decoded generate, owned; NULL: it cannot go on */
    int32_t *out;        /* (n_out) tokens streamed, of gen's max_tokens, owned */
    uint32_t n_out;
    bool last;
};

static void pd_router_hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = "0123456789abcdef"[b[i] >> 4];
        out[2 * i + 1] = "0123456789abcdef"[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Hex digits of s up to its end or a space into out; the bytes, or SIZE_MAX on a
 * non-hex character, an odd count or more than cap. */
static size_t pd_router_unhex(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;
    for (; *s != '\0' && *s != ' ' && *s != '\n'; s += 2) {
        int hi = pd_hex_digit(s[0]), lo = s[1] != '\0' ? pd_hex_digit(s[1]) : -1;
        if (hi < 0 || lo < 0 || n >= cap)
            return SIZE_MAX;
        out[n++] = (unsigned char)(hi << 4 | lo);
    }
    return n;
}

/* The next space-separated field of *s (NULL at the end), *s moved past it. */
static char *pd_router_field(char **s)
{
    char *p = *s;
    while (*p == ' ')
        p++;
    if (*p == '\0' || *p == '\n')
        return NULL;
    char *f = p;
    while (*p != '\0' && *p != ' ' && *p != '\n')
        p++;
    if (*p != '\0')
        *p++ = '\0';
    *s = p;
    return f;
}

static void pd_router_orphan_free(pd_router_orphan_t *o)
{
    if (o->gen != NULL) {
        pd_proto_msg_cleanup(o->gen);
        free(o->gen);
    }
    free(o->out);
    memset(o, 0, sizeof(*o));
}

static pd_router_orphan_t *pd_router_orphan_find(pd_router_t *r, uint64_t req_id)
{
    for (uint32_t i = 0; i < r->n_orphans; i++)
        if (r->orphans[i].req_id == req_id)
            return &r->orphans[i];
    return NULL;
}

static void pd_router_orphan_drop(pd_router_t *r, pd_router_orphan_t *o)
{
    pd_router_orphan_free(o);
    *o = r->orphans[--r->n_orphans];
}

/* The request a frame field holds, or NULL (the entry is told, not continued). */
static pd_proto_msg_t *pd_router_journal_frame(const char *hex)
{
    size_t cap = strlen(hex) / 2;
    unsigned char *frame = malloc(cap + 1);
    pd_proto_msg_t *m = calloc(1, sizeof(*m));
    size_t n = frame != NULL ? pd_router_unhex(hex, frame, cap) : SIZE_MAX;
    pd_proto_fault_t fault;
    if (m == NULL || n == SIZE_MAX || n == 0 ||
        pd_proto_decode(m, PD_PROTO_CHAN_CLIENT, frame, n, &fault) != PD_OK) {
        free(frame);
        free(m);
        return NULL;
    }
    free(frame);
    if (m->type != PD_PROTO_TYPE_GENERATE || m->u.generate.tokens == NULL) {
        pd_proto_msg_cleanup(m);
        free(m);
        return NULL;
    }
    return m;
}

static void pd_router_journal_line_a(pd_router_t *r, char *s)
{
    char *id_f = pd_router_field(&s), *rid_f = pd_router_field(&s);
    char *cid_f = pd_router_field(&s), *frame_f = pd_router_field(&s);
    char *end = NULL;
    unsigned long long id = id_f != NULL ? strtoull(id_f, &end, 10) : 0;
    if (id == 0 || *end != '\0' || rid_f == NULL || r->n_orphans >= PD_ROUTER_JOURNAL_MAX_LIVE ||
        pd_router_orphan_find(r, id) != NULL)
        return;
    if (r->n_orphans == r->cap_orphans) {
        uint32_t cap = r->cap_orphans ? 2 * r->cap_orphans : 64;
        pd_router_orphan_t *p = realloc(r->orphans, cap * sizeof(*p));
        if (p == NULL)
            return;
        r->orphans = p;
        r->cap_orphans = cap;
    }
    pd_router_orphan_t o = {.req_id = id};
    size_t n = pd_router_unhex(rid_f, o.client.bytes, sizeof(o.client.bytes));
    if (n == SIZE_MAX)
        return;
    o.client.n = n;
    if (cid_f != NULL && strcmp(cid_f, "-") != 0 &&
        pd_router_unhex(cid_f, (unsigned char *)o.id, sizeof(o.id) - 1) == SIZE_MAX)
        o.id[0] = '\0';
    if (frame_f != NULL && (o.gen = pd_router_journal_frame(frame_f)) != NULL) {
        o.out = malloc(o.gen->u.generate.max_tokens * sizeof(*o.out));
        if (o.out == NULL) {
            pd_router_orphan_free(&o);
            return;
        }
    }
    r->orphans[r->n_orphans++] = o;
}

static void pd_router_journal_line_t(pd_router_t *r, char *s)
{
    char *id_f = pd_router_field(&s), *flag = pd_router_field(&s), *end = NULL;
    unsigned long long id = id_f != NULL ? strtoull(id_f, &end, 10) : 0;
    pd_router_orphan_t *o = id != 0 && *end == '\0' ? pd_router_orphan_find(r, id) : NULL;
    if (o == NULL || o->gen == NULL || flag == NULL)
        return;
    for (char *t; (t = pd_router_field(&s)) != NULL;) {
        long v = strtol(t, &end, 10);
        if (*end != '\0' || v < 0 || v > PD_PROTO_MAX_TOKEN_ID ||
            o->n_out >= o->gen->u.generate.max_tokens) {
            /* Not a line this router wrote: the entry is told rather than continued. */
            pd_proto_msg_cleanup(o->gen);
            free(o->gen);
            o->gen = NULL;
            return;
        }
        o->out[o->n_out++] = (int32_t)v;
    }
    o->last = strcmp(flag, "L") == 0;
}

/* The live entries of an old journal: accepted and not ended. A line without its
 * newline was cut by the kill and is not read. */
static void pd_router_journal_read(pd_router_t *r, FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n' || len < 3 || line[1] != ' ')
            continue;
        line[len - 1] = '\0';
        char *rest = line + 2;
        if (line[0] == 'A') {
            pd_router_journal_line_a(r, rest);
        } else if (line[0] == 'T') {
            pd_router_journal_line_t(r, rest);
        } else if (line[0] == 'E') {
            char *end = NULL;
            unsigned long long id = strtoull(rest, &end, 10);
            pd_router_orphan_t *o = *end == '\0' ? pd_router_orphan_find(r, id) : NULL;
            if (o != NULL)
                pd_router_orphan_drop(r, o);
        }
    }
    free(line);
}

static void pd_router_journal_ends(pd_router_t *r, const uint64_t *ids, uint32_t n);

pd_status_t pd_router_journal_open(pd_router_t *r)
{
    r->journal_fd = -1;
    pd_mp_writer_init(&r->jw);
    if (r->cfg.journal_path[0] == '\0')
        return PD_OK;
    FILE *f = fopen(r->cfg.journal_path, "r");
    if (f != NULL) {
        pd_router_journal_read(r, f);
        fclose(f);
    }
    r->journal_fd =
        open(r->cfg.journal_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (r->journal_fd < 0) {
        pd_log_error("--journal %s: %s", r->cfg.journal_path, strerror(errno));
        return PD_ERR_IO;
    }
    if (r->n_orphans > 0) {
        uint32_t n_go_on = 0;
        for (uint32_t i = 0; i < r->n_orphans; i++)
            n_go_on += r->orphans[i].gen != NULL;
        pd_log_warn("the previous router left %u request(s) in flight: %u go on as their "
                    "clients come back, %u cannot and their clients are told",
                    r->n_orphans, n_go_on, r->n_orphans - n_go_on);
        r->orphans_until_ms = pd_time_now_ms();
    }
    return PD_OK;
}

void pd_router_journal_close(pd_router_t *r)
{
    /* Stopped cleanly: every request ended, its client told; none is for the next one. */
    pd_router_journal_ends(r, r->ended_old, r->n_ended_old);
    pd_router_journal_ends(r, r->ended_new, r->n_ended_new);
    if (r->journal_fd >= 0)
        close(r->journal_fd);
    r->journal_fd = -1;
    for (uint32_t i = 0; i < r->n_orphans; i++)
        pd_router_orphan_free(&r->orphans[i]);
    free(r->orphans);
    r->orphans = NULL;
    r->n_orphans = r->cap_orphans = 0;
    pd_mp_writer_cleanup(&r->jw);
    free(r->ended_new);
    free(r->ended_old);
    r->ended_new = r->ended_old = NULL;
    r->n_ended_new = r->n_ended_old = r->cap_ended = 0;
    free(r->jbuf);
    r->jbuf = NULL;
    r->jbuf_cap = 0;
}

/* Room for need more bytes after the first used ones of r->jbuf. */
static bool pd_router_jbuf_room(pd_router_t *r, size_t used, size_t need)
{
    if (used + need <= r->jbuf_cap)
        return true;
    size_t cap = r->jbuf_cap ? r->jbuf_cap : 4096;
    while (cap < used + need)
        cap *= 2;
    char *p = realloc(r->jbuf, cap);
    if (p == NULL)
        return false;
    r->jbuf = p;
    r->jbuf_cap = cap;
    return true;
}

static void pd_router_journal_write(pd_router_t *r, const char *data, size_t len)
{
    if (r->journal_fd >= 0 && len > 0)
        r->journal_bytes += len;
    if (r->journal_fd >= 0 && len > 0 && write(r->journal_fd, data, len) != (ssize_t)len) {
        pd_log_error("--journal: %s; no longer written", strerror(errno));
        close(r->journal_fd);
        r->journal_fd = -1;
    }
}

/* E lines for ids, one write each. */
static void pd_router_journal_ends(pd_router_t *r, const uint64_t *ids, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        char line[32];
        int len = snprintf(line, sizeof(line), "E %llu\n", (unsigned long long)ids[i]);
        pd_router_journal_write(r, line, (size_t)len);
    }
}

/* req's A line at r->jbuf + used (its frame from req->jframe); the new used, or used when
 * there is no room. */
static size_t pd_router_journal_a_line(pd_router_t *r, const pd_router_req_t *req, size_t used)
{
    size_t need = 64 + 2 * (req->client.n + strlen(req->id) + req->jframe_len);
    if (!pd_router_jbuf_room(r, used, need))
        return used;
    char *p = r->jbuf + used;
    p += sprintf(p, "A %llu ", (unsigned long long)req->req_id);
    if (req->client.n > 0)
        pd_router_hex(req->client.bytes, req->client.n, p);
    else
        strcpy(p, "00");
    p += strlen(p);
    *p++ = ' ';
    if (req->id[0] != '\0')
        pd_router_hex((const unsigned char *)req->id, strlen(req->id), p);
    else
        strcpy(p, "-");
    p += strlen(p);
    if (req->jframe_len > 0) {
        *p++ = ' ';
        pd_router_hex(req->jframe, req->jframe_len, p);
        p += 2 * req->jframe_len;
    }
    *p++ = '\n';
    return (size_t)(p - r->jbuf);
}

void pd_router_journal_accept(pd_router_t *r, pd_router_req_t *req, const pd_proto_generate_t *g)
{
    if (r->journal_fd < 0)
        return;
    /* The request as the next router needs it: the prompt as tokens, the tenant named.
     * Kept with the request for the journal's compaction. */
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_GENERATE};
    m.u.generate = *g;
    m.u.generate.prompt = NULL;
    m.u.generate.prompt_bytes = 0;
    m.u.generate.tokens = req->tokens;
    m.u.generate.n_tokens = req->n_prompt;
    memcpy(m.u.generate.tenant, req->tenant, sizeof(m.u.generate.tenant));
    pd_mp_writer_reset(&r->jw);
    if (pd_proto_encode(&m, &r->jw) == PD_OK &&
        (req->jframe = malloc(pd_mp_writer_size(&r->jw))) != NULL) {
        req->jframe_len = (uint32_t)pd_mp_writer_size(&r->jw);
        memcpy(req->jframe, pd_mp_writer_data(&r->jw), req->jframe_len);
    }
    pd_router_journal_write(r, r->jbuf, pd_router_journal_a_line(r, req, 0));
}

/* The E line goes out with the write after next, as tokens do: a request's done may
 * still be in the socket when the router is killed. */
void pd_router_journal_end(pd_router_t *r, const pd_router_req_t *req)
{
    if (r->journal_fd < 0)
        return;
    if (r->n_ended_new == r->cap_ended) {
        uint32_t cap = r->cap_ended ? 2 * r->cap_ended : 256;
        uint64_t *a = realloc(r->ended_new, cap * sizeof(*a));
        uint64_t *b = a != NULL ? realloc(r->ended_old, cap * sizeof(*b)) : NULL;
        if (a != NULL)
            r->ended_new = a;
        if (b == NULL) {
            pd_router_journal_ends(r, &req->req_id, 1); /* now rather than not at all */
            return;
        }
        r->ended_old = b;
        r->cap_ended = cap;
    }
    r->ended_new[r->n_ended_new++] = req->req_id;
}

static void pd_router_journal_compact(pd_router_t *r);

/* q's T line for its tokens [from, to) at r->jbuf + used (last: the final one is among
 * them); the new used, or used when there is no room. */
static size_t pd_router_journal_t_line(pd_router_t *r, const pd_router_req_t *q, uint32_t from,
                                       uint32_t to, bool last, size_t used)
{
    if (!pd_router_jbuf_room(r, used, 48 + 12 * (size_t)(to - from)))
        return used;
    char *p = r->jbuf + used;
    p += sprintf(p, "T %llu %c", (unsigned long long)q->req_id, last ? 'L' : '-');
    for (uint32_t i = from; i < to; i++)
        p += sprintf(p, " %d", q->out[i]);
    *p++ = '\n';
    return (size_t)(p - r->jbuf);
}

/* The tokens streamed up to the previous call, at most every PD_ROUTER_JOURNAL_LAG_MS, in
 * one write for every request. */
void pd_router_journal_tokens(pd_router_t *r, uint64_t now_ms)
{
    if (r->journal_fd < 0 || now_ms < r->journal_tick_ms + PD_ROUTER_JOURNAL_LAG_MS)
        return;
    r->journal_tick_ms = now_ms;
    size_t used = 0;
    for (pd_router_req_t *q = r->head; q != NULL; q = q->next) {
        if (q->journal_mark > q->n_journaled) {
            size_t next = pd_router_journal_t_line(r, q, q->n_journaled, q->journal_mark,
                                                   q->journal_mark_last, used);
            if (next > used) {
                used = next;
                q->journaled_last = q->journal_mark_last;
                q->n_journaled = q->journal_mark;
            }
        }
        q->journal_mark = q->n_out;
        q->journal_mark_last = q->last_streamed;
    }
    if (pd_router_jbuf_room(r, used, 32 * (size_t)r->n_ended_old)) {
        for (uint32_t i = 0; i < r->n_ended_old; i++)
            used +=
                (size_t)sprintf(r->jbuf + used, "E %llu\n", (unsigned long long)r->ended_old[i]);
    } else {
        pd_router_journal_write(r, r->jbuf, used);
        used = 0;
        pd_router_journal_ends(r, r->ended_old, r->n_ended_old);
    }
    /* The next write takes the ones ended since this one. */
    uint64_t *t = r->ended_old;
    r->ended_old = r->ended_new;
    r->ended_new = t;
    r->n_ended_old = r->n_ended_new;
    r->n_ended_new = 0;
    pd_router_journal_write(r, r->jbuf, used);
    /* Rewritten with only what is live once it has grown: at a moment when no end line is
     * pending (a request whose done may be in the socket keeps its entry), or at twice
     * the size whatever is pending. */
    uint64_t limit = (uint64_t)r->cfg.journal_compact_kb << 10;
    if (r->journal_bytes >= limit &&
        ((r->n_ended_old == 0 && r->n_ended_new == 0) || r->journal_bytes >= 2 * limit))
        pd_router_journal_compact(r);
}

/* A new file with an A line and the tokens written so far for every live request, renamed
 * over the journal. */
static void pd_router_journal_compact(pd_router_t *r)
{
    char tmp[PD_ROUTER_PATH_CAP + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", r->cfg.journal_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        pd_log_warn("--journal: cannot compact (%s: %s); it grows on", tmp, strerror(errno));
        r->journal_bytes = 0;
        return;
    }
    int old_fd = r->journal_fd;
    r->journal_fd = fd;
    r->journal_bytes = 0;
    uint32_t n_live = 0;
    for (pd_router_req_t *q = r->head; q != NULL && r->journal_fd == fd; q = q->next) {
        size_t used = pd_router_journal_a_line(r, q, 0);
        if (q->n_journaled > 0)
            used = pd_router_journal_t_line(r, q, 0, q->n_journaled, q->journaled_last, used);
        pd_router_journal_write(r, r->jbuf, used);
        n_live++;
    }
    if (r->journal_fd != fd || rename(tmp, r->cfg.journal_path) != 0) {
        pd_log_warn("--journal: compaction failed; the journal goes on as it was");
        if (r->journal_fd == fd)
            close(fd);
        unlink(tmp);
        r->journal_fd = old_fd;
        r->journal_bytes = 0;
        return;
    }
    close(old_fd);
    pd_log_info("--journal: compacted to %u live request(s), %llu bytes", n_live,
                (unsigned long long)r->journal_bytes);
}

/* One orphan: its client is sent `accepted` (resumed) and its request goes on, or it is
 * told it is lost. True when its client was reached. */
static bool pd_router_orphan_reach(pd_router_t *r, pd_router_orphan_t *o)
{
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_ERROR};
    uint32_t n_out = o->n_out;
    if (o->gen != NULL) {
        const pd_proto_generate_t *g = &o->gen->u.generate;
        /* Too long to prefill with its tokens: it runs again from the start. */
        if ((uint64_t)g->n_tokens + n_out > PD_PROTO_MAX_PROMPT_TOKENS)
            n_out = 0;
        m.type = PD_PROTO_TYPE_ACCEPTED;
        snprintf(m.u.accepted.id, sizeof(m.u.accepted.id), "%s", o->id);
        m.u.accepted.resumed = true;
        m.u.accepted.next_index = n_out;
    } else {
        snprintf(m.u.error.id, sizeof(m.u.error.id), "%s", o->id);
        m.u.error.code = PD_ERR_PEER;
        m.u.error.message = "the router restarted while this request ran: it is lost, send it "
                            "again";
    }
    pd_mp_writer_reset(&r->w);
    if (pd_proto_encode(&m, &r->w) != PD_OK || o->client.n == 0 ||
        zmq_send(r->client_sock, o->client.bytes, o->client.n, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(r->client_sock, pd_mp_writer_data(&r->w), pd_mp_writer_size(&r->w), ZMQ_DONTWAIT) <
            0)
        return false;
    if (o->gen != NULL)
        pd_router_req_resume(r, &o->client, &o->gen->u.generate, o->out, n_out,
                             n_out == o->n_out && o->last);
    else
        r->n_orphans_told++;
    return true;
}

bool pd_router_journal_claim(pd_router_t *r, const pd_router_rid_t *client, const char *id)
{
    for (uint32_t i = 0; i < r->n_orphans; i++) {
        pd_router_orphan_t *o = &r->orphans[i];
        if (o->client.n != client->n || memcmp(o->client.bytes, client->bytes, client->n) != 0 ||
            strcmp(o->id, id) != 0)
            continue;
        /* Its client is here: reached now rather than at the next tick. */
        if (pd_router_orphan_reach(r, o))
            pd_router_orphan_drop(r, o);
        return true;
    }
    return false;
}

/* Reach the previous router's clients as they come back. */
void pd_router_journal_tick(pd_router_t *r, uint64_t now_ms)
{
    if (r->n_orphans == 0)
        return;
    /* Sent only to a client that is connected (else ZeroMQ drops it unseen). */
    int mandatory = 1;
    zmq_setsockopt(r->client_sock, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof(mandatory));
    for (uint32_t i = 0; i < r->n_orphans;) {
        pd_router_orphan_t *o = &r->orphans[i];
        uint64_t wait_ms =
            o->gen != NULL ? PD_ROUTER_JOURNAL_RESUME_MS : PD_ROUTER_JOURNAL_NOTIFY_MS;
        bool reached = pd_router_orphan_reach(r, o);
        if (reached || now_ms >= r->orphans_until_ms + wait_ms) {
            if (!reached)
                pd_log_info("request %llu ('%s') of the previous router: its client did not "
                            "come back",
                            (unsigned long long)o->req_id, o->id);
            pd_router_orphan_drop(r, o);
            continue;
        }
        i++;
    }
    mandatory = 0;
    zmq_setsockopt(r->client_sock, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof(mandatory));
}
