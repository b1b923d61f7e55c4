/* The requests a router has in flight, on disk: one line when a request is accepted
 * (`A req_id client-routing-id id`, both hex) and one when it ends (`E req_id`), written
 * straight to the kernel so that a router killed with -9 leaves them behind. A router
 * that starts on the journal of one that died reads who was waiting, and tells each of
 * those clients with one `error` (PD_ERR_PEER) as soon as it has reconnected (clients keep
 * their routing id across reconnects), for up to PD_ROUTER_JOURNAL_NOTIFY_MS: nothing it
 * can do brings their streams back, but nobody waits for nothing. */
#include "router_int.h"

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
#define PD_ROUTER_JOURNAL_MAX_LIVE  65536u

struct pd_router_orphan {
    uint64_t req_id;
    pd_router_rid_t client;
    char id[PD_PROTO_ID_CAP];
};

static void pd_router_hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static size_t pd_router_unhex(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;
    for (; s[0] != '\0' && s[1] != '\0' && n < cap; s += 2) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1)
            break;
        out[n++] = (unsigned char)v;
    }
    return n;
}

/* The live entries of an old journal: accepted and not ended. */
static void pd_router_journal_read(pd_router_t *r, FILE *f)
{
    static char line[2 * PD_ROUTER_RID_CAP + 2 * PD_PROTO_ID_CAP + 64];
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long id = 0;
        if (line[0] == 'E' && sscanf(line, "E %llu", &id) == 1) {
            for (uint32_t i = 0; i < r->n_orphans; i++) {
                if (r->orphans[i].req_id == id) {
                    r->orphans[i] = r->orphans[--r->n_orphans];
                    break;
                }
            }
            continue;
        }
        char rid_hex[2 * PD_ROUTER_RID_CAP + 1], id_hex[2 * PD_PROTO_ID_CAP + 1] = "";
        if (line[0] != 'A' || sscanf(line, "A %llu %512s %128s", &id, rid_hex, id_hex) < 2 ||
            r->n_orphans >= PD_ROUTER_JOURNAL_MAX_LIVE)
            continue;
        if (r->n_orphans == r->cap_orphans) {
            uint32_t cap = r->cap_orphans ? 2 * r->cap_orphans : 64;
            pd_router_orphan_t *p = realloc(r->orphans, cap * sizeof(*p));
            if (p == NULL)
                return;
            r->orphans = p;
            r->cap_orphans = cap;
        }
        pd_router_orphan_t *o = &r->orphans[r->n_orphans++];
        memset(o, 0, sizeof(*o));
        o->req_id = id;
        o->client.n = pd_router_unhex(rid_hex, o->client.bytes, sizeof(o->client.bytes));
        pd_router_unhex(id_hex, (unsigned char *)o->id, sizeof(o->id) - 1);
    }
}

pd_status_t pd_router_journal_open(pd_router_t *r)
{
    r->journal_fd = -1;
    if (r->cfg.journal_path[0] == '\0')
        return PD_OK;
    FILE *f = fopen(r->cfg.journal_path, "r");
    if (f != NULL) {
        pd_router_journal_read(r, f);
        fclose(f);
    }
    r->journal_fd = open(r->cfg.journal_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
                         0600);
    if (r->journal_fd < 0) {
        pd_log_error("--journal %s: %s", r->cfg.journal_path, strerror(errno));
        return PD_ERR_IO;
    }
    if (r->n_orphans > 0) {
        pd_log_warn("the previous router left %u request(s) in flight: their clients are told",
                    r->n_orphans);
        r->orphans_until_ms = pd_time_now_ms() + PD_ROUTER_JOURNAL_NOTIFY_MS;
    }
    return PD_OK;
}

void pd_router_journal_close(pd_router_t *r)
{
    if (r->journal_fd >= 0)
        close(r->journal_fd);
    r->journal_fd = -1;
    free(r->orphans);
    r->orphans = NULL;
    r->n_orphans = r->cap_orphans = 0;
}

static void pd_router_journal_write(pd_router_t *r, const char *line, size_t len)
{
    if (r->journal_fd >= 0 && write(r->journal_fd, line, len) != (ssize_t)len) {
        pd_log_error("--journal: %s; no longer written", strerror(errno));
        close(r->journal_fd);
        r->journal_fd = -1;
    }
}

void pd_router_journal_accept(pd_router_t *r, const pd_router_req_t *req)
{
    if (r->journal_fd < 0)
        return;
    char rid_hex[2 * PD_ROUTER_RID_CAP + 1], id_hex[2 * PD_PROTO_ID_CAP + 1];
    static char line[sizeof(rid_hex) + sizeof(id_hex) + 32];
    pd_router_hex(req->client.bytes, req->client.n, rid_hex);
    pd_router_hex((const unsigned char *)req->id, strlen(req->id), id_hex);
    int n = snprintf(line, sizeof(line), "A %llu %s %s\n", (unsigned long long)req->req_id,
                     rid_hex[0] ? rid_hex : "00", id_hex);
    if (n > 0 && (size_t)n < sizeof(line))
        pd_router_journal_write(r, line, (size_t)n);
}

void pd_router_journal_end(pd_router_t *r, const pd_router_req_t *req)
{
    if (r->journal_fd < 0)
        return;
    char line[32];
    int n = snprintf(line, sizeof(line), "E %llu\n", (unsigned long long)req->req_id);
    pd_router_journal_write(r, line, (size_t)n);
}

/* Tell the clients of the previous router's requests, each once it is connected again. */
void pd_router_journal_tick(pd_router_t *r, uint64_t now_ms)
{
    if (r->n_orphans == 0)
        return;
    bool give_up = now_ms >= r->orphans_until_ms;
    int mandatory = 1;
    zmq_setsockopt(r->client_sock, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof(mandatory));
    for (uint32_t i = 0; i < r->n_orphans;) {
        pd_router_orphan_t *o = &r->orphans[i];
        pd_proto_msg_t m = {.type = PD_PROTO_TYPE_ERROR};
        snprintf(m.u.error.id, sizeof(m.u.error.id), "%s", o->id);
        m.u.error.code = PD_ERR_PEER;
        m.u.error.message = "the router restarted while this request ran: it is lost, send it "
                            "again";
        pd_mp_writer_reset(&r->w);
        bool sent = false;
        if (pd_proto_encode(&m, &r->w) == PD_OK && o->client.n > 0 &&
            zmq_send(r->client_sock, o->client.bytes, o->client.n, ZMQ_SNDMORE | ZMQ_DONTWAIT) >=
                0)
            sent = zmq_send(r->client_sock, pd_mp_writer_data(&r->w), pd_mp_writer_size(&r->w),
                            ZMQ_DONTWAIT) >= 0;
        if (sent || give_up) {
            if (!sent)
                pd_log_info("request %llu ('%s') of the previous router: its client did not "
                            "come back",
                            (unsigned long long)o->req_id, o->id);
            r->n_orphans_told += sent;
            *o = r->orphans[--r->n_orphans];
            continue;
        }
        i++;
    }
    mandatory = 0;
    zmq_setsockopt(r->client_sock, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof(mandatory));
}
