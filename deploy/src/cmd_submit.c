/* pdctl submit: send one generate request to a router, stream its tokens to stdout, and
 * end with its usage and timings (stderr), or print everything as one JSON object. */
#include "cmd_client.h"
#include "pdctl_int.h"
#include "pd/tokenizer.h"

#include "cli_opt.h"
#include "pd/client.h"
#include "pd/json.h"
#include "pd/time.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pd_submit_opts {
    char router[300];
    uint32_t wait_s;         /* --wait: how long to wait for a router to answer */
    const char *server_key;  /* --curve-server-key, NULL: no CURVE */
    const char *secret_file; /* --curve-secret-file */
    bool json;
    uint32_t timeout_ms;
    pd_proto_generate_t g;
    int32_t tokens[PD_PROTO_MAX_PROMPT_TOKENS];
    int32_t stop[PD_PROTO_MAX_STOP];
    const char *tokenizer; /* -t, for a conversation */
    pd_cli_chat_t chat;
} pd_submit_opts_t;

static volatile sig_atomic_t pd_submit_interrupted;

static void pd_submit_on_sigint(int sig)
{
    (void)sig;
    pd_submit_interrupted = 1;
}

static void pd_submit_usage(FILE *out)
{
    fprintf(out,
            "usage: pdctl submit [-r ROUTER] [-w SECONDS] (-p TEXT | --tokens 1,2,3 |\n"
            "                    -t TOKENIZER (--chat FILE | [--system T] --user T...)) [-n N]\n"
            "                    [--temperature T] [--top-p P] [--seed S] [--stop 2,13]\n"
            "                    [--tenant T] [--cache auto|off|explicit:OFF[@TTL],...]\n"
            "                    [--id ID] [--no-stream] [--json] [--timeout-ms MS]\n"
            "                    [--curve-server-key Z85 --curve-secret-file PATH]\n"
            "\n"
            "Send one request to a pd-router and stream the generated text to stdout as it\n"
            "comes (token ids when the router has no tokenizer). Usage and timings (queue,\n"
            "prefill, transfer, TTFT, TPOT) follow on stderr. Exit status 0 on done, 1 on an\n"
            "error or timeout (its code on stderr), 2 on a usage error. Ctrl-C cancels.\n"
            "\n"
            "  -r, --router EP      the router's client endpoint: tcp://HOST:PORT, HOST:PORT or\n"
            "                       :PORT (default tcp://127.0.0.1:7100)\n"
            "  -w, --wait SECONDS   wait this long for a router to accept connections (default\n"
            "                       0: fail at once when none answers)\n"
            "  -p, --prompt TEXT    prompt text; the router adds BOS, as 'pdctl generate -p'\n"
            "  --tokens LIST        prompt token ids, comma-separated (no BOS added)\n"
            "  --chat FILE          a conversation (JSON messages, as for pdctl template),\n"
            "                       rendered with the chat template of -t TOKENIZER (a\n"
            "                       tokenizer.json or its directory) and sent as token ids\n"
            "  --system T, --user T the conversation as messages, in order\n"
            "  --template FILE      a Jinja chat template instead of the tokenizer's\n"
            "  -t, --tokenizer PATH the tokenizer for a conversation\n"
            "  -n, --max-tokens N   tokens to generate, 1..4096 (default 64)\n"
            "  --temperature T      0 is greedy (default 1.0)\n"
            "  --top-p P            nucleus sampling, 1 is off (default 1.0)\n"
            "  --seed S             sampling seed (default: a random one, printed with the\n"
            "                       usage so the run can be repeated)\n"
            "  --stop LIST          stop token ids, comma-separated (up to 16)\n"
            "  --tenant T           cache isolation key (used while auth is off)\n"
            "  --cache MODE         auto (default), off, or explicit:OFFSET[@5m|@1h],... with\n"
            "                       up to 4 increasing token offsets\n"
            "  --id ID              the request id (default pdctl-PID)\n"
            "  --no-stream          no token messages: print the token ids at the end\n"
            "  --json               print one JSON object: id, tokens, text, seed, finish_reason,\n"
            "                       usage, timings, workers (or error)\n"
            "  --timeout-ms MS      give up (and cancel) after MS (default 130000)\n"
            "  --curve-server-key K the router's CURVE public key (Z85): authenticate\n"
            "  --curve-secret-file F this client's CURVE secret key (Z85) file; the router\n"
            "                       serves it as the tenant listed with its public key\n");
}

/* Parse "1,2,3" into ids (capacity cap). */
static bool pd_submit_parse_ids(const char *opt, const char *s, int32_t *ids, uint32_t cap,
                                uint32_t *n_p)
{
    uint32_t n = 0;
    const char *p = s;
    while (*p != '\0') {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "pdctl: submit: %s: '%s' is not a list of token ids\n", opt, s);
            return false;
        }
        if (n == cap) {
            fprintf(stderr, "pdctl: submit: %s: more than %u ids\n", opt, cap);
            return false;
        }
        ids[n++] = (int32_t)v;
        p = (*end == ',') ? end + 1 : end;
    }
    if (n == 0) {
        fprintf(stderr, "pdctl: submit: %s: empty list\n", opt);
        return false;
    }
    *n_p = n;
    return true;
}

/* "auto", "off" or "explicit:16@1h,1024" into cache. */
static bool pd_submit_parse_cache(const char *s, pd_proto_cache_t *cache)
{
    memset(cache, 0, sizeof(*cache));
    if (strcmp(s, "auto") == 0)
        return true;
    if (strcmp(s, "off") == 0) {
        cache->mode = PD_PROTO_CACHE_OFF;
        return true;
    }
    if (strncmp(s, "explicit:", 9) != 0)
        goto bad;
    cache->mode = PD_PROTO_CACHE_EXPLICIT;
    const char *p = s + 9;
    while (*p != '\0') {
        char *end = NULL;
        errno = 0;
        unsigned long long off = strtoull(p, &end, 10);
        if (end == p || errno != 0 || off == 0 || off > PD_PROTO_MAX_PROMPT_TOKENS)
            goto bad;
        uint32_t ttl = PD_PROTO_TTL_5M_S;
        if (*end == '@') {
            if (strncmp(end + 1, "5m", 2) == 0)
                ttl = PD_PROTO_TTL_5M_S;
            else if (strncmp(end + 1, "1h", 2) == 0)
                ttl = PD_PROTO_TTL_1H_S;
            else
                goto bad;
            end += 3;
        }
        if (*end != ',' && *end != '\0')
            goto bad;
        if (cache->n_breakpoints == PD_PROTO_MAX_BREAKPOINTS) {
            fprintf(stderr, "pdctl: submit: --cache: at most %d breakpoints\n",
                    PD_PROTO_MAX_BREAKPOINTS);
            return false;
        }
        if (cache->n_breakpoints > 0 &&
            off <= cache->breakpoints[cache->n_breakpoints - 1].offset_tokens)
            goto bad;
        cache->breakpoints[cache->n_breakpoints++] = (pd_proto_breakpoint_t){(uint32_t)off, ttl};
        p = (*end == ',') ? end + 1 : end;
    }
    if (cache->n_breakpoints > 0)
        return true;
bad:
    fprintf(stderr,
            "pdctl: submit: --cache: '%s' is not auto, off or explicit:OFFSET[@5m|@1h],... "
            "(offsets increasing)\n",
            s);
    return false;
}

static const pd_cli_opt_t pd_submit_opts[] = {
    PD_CLI_OPT_ROUTER,
    PD_CLI_OPTS_REQUEST,
    {"stop", 0, true, 'X', NULL},
    {"tenant", 0, true, 'E', NULL},
    {"cache", 0, true, 'C', NULL},
    {"id", 0, true, 'I', NULL},
    {"no-stream", 0, false, 'N', NULL},
    PD_CLI_OPT_JSON,
    PD_CLI_OPT_TIMEOUT_MS,
    PD_CLI_OPT_WAIT,
    PD_CLI_OPT_CURVE_KEY,
    PD_CLI_OPT_CURVE_SECRET,
    {"tokenizer", 't', true, 't', NULL},
    PD_CLI_CHAT_OPTIONS,
    PD_CLI_OPT_HELP,
    PD_CLI_OPT_END_TABLE,
};

static int pd_submit_parse(int argc, char **argv, pd_submit_opts_t *o)
{
    pd_cli_parser_t p;
    pd_proto_generate_t *g = &o->g;
    float f;
    int ch;

    snprintf(o->router, sizeof(o->router), "%s", PD_CLI_DEFAULT_ROUTER);
    o->timeout_ms = 130000;
    bool seeded = false;
    g->max_tokens = 64;
    g->sampling = (pd_proto_sampling_t){1.0, 1.0, 0};
    g->stream = true;
    snprintf(g->id, sizeof(g->id), "pdctl-%d", (int)getpid());
    pd_cli_parser_init(&p, "submit", argc, argv, pd_submit_opts);
    while ((ch = pd_cli_opt_next(&p)) != PD_CLI_OPT_END) {
        const char *optarg = p.arg;
        switch (ch) {
        case 't':
            o->tokenizer = optarg;
            break;
        case PD_CLI_OPT_CHAT:
        case PD_CLI_OPT_SYSTEM:
        case PD_CLI_OPT_USER:
        case PD_CLI_OPT_TEMPLATE:
            if (!pd_cli_chat_option(&o->chat, ch, optarg))
                return PD_CLI_USAGE;
            break;
        case 'r':
            if (!pd_cli_parse_endpoint("--router", optarg, o->router, sizeof(o->router)))
                return PD_CLI_USAGE;
            break;
        case 'W':
            if (!pd_cli_parse_u32("--wait", optarg, 0, 3600, &o->wait_s))
                return PD_CLI_USAGE;
            break;
        case 'p':
            g->prompt = optarg;
            g->prompt_bytes = strlen(optarg);
            break;
        case 'K':
            if (!pd_submit_parse_ids("--tokens", optarg, o->tokens, PD_PROTO_MAX_PROMPT_TOKENS,
                                     &g->n_tokens))
                return PD_CLI_USAGE;
            g->tokens = o->tokens;
            break;
        case 'n':
            if (!pd_cli_parse_u32("--max-tokens", optarg, 1, PD_PROTO_MAX_NEW_TOKENS,
                                  &g->max_tokens))
                return PD_CLI_USAGE;
            break;
        case 'T':
            if (!pd_cli_parse_f32("--temperature", optarg, 0.0f, 100.0f, &f))
                return PD_CLI_USAGE;
            g->sampling.temperature = f;
            break;
        case 'P':
            if (!pd_cli_parse_f32("--top-p", optarg, 1e-6f, 1.0f, &f))
                return PD_CLI_USAGE;
            g->sampling.top_p = f;
            break;
        case 'S':
            if (!pd_cli_parse_u64("--seed", optarg, 0, UINT64_MAX, &g->sampling.seed))
                return PD_CLI_USAGE;
            seeded = true;
            break;
        case 'X':
            if (!pd_submit_parse_ids("--stop", optarg, o->stop, PD_PROTO_MAX_STOP, &g->n_stop))
                return PD_CLI_USAGE;
            g->stop = o->stop;
            break;
        case 'E':
            if (strlen(optarg) >= sizeof(g->tenant)) {
                fprintf(stderr, "pdctl: submit: --tenant: longer than %zu bytes\n",
                        sizeof(g->tenant) - 1);
                return PD_CLI_USAGE;
            }
            snprintf(g->tenant, sizeof(g->tenant), "%s", optarg);
            break;
        case 'C':
            if (!pd_submit_parse_cache(optarg, &g->cache))
                return PD_CLI_USAGE;
            break;
        case 'I':
            if (strlen(optarg) >= sizeof(g->id)) {
                fprintf(stderr, "pdctl: submit: --id: longer than %zu bytes\n", sizeof(g->id) - 1);
                return PD_CLI_USAGE;
            }
            snprintf(g->id, sizeof(g->id), "%s", optarg);
            break;
        case 'N':
            g->stream = false;
            break;
        case 'J':
            o->json = true;
            break;
        case 'O':
            if (!pd_cli_parse_u32("--timeout-ms", optarg, 1, 86400000, &o->timeout_ms))
                return PD_CLI_USAGE;
            break;
        case 'V':
            o->server_key = optarg;
            break;
        case 'F':
            o->secret_file = optarg;
            break;
        case 'h':
            pd_submit_usage(stdout);
            return -1;
        default:
            return PD_CLI_USAGE;
        }
    }
    if (!pd_cli_parser_want_pos(&p, 0, 0, ""))
        return PD_CLI_USAGE;
    if (!seeded)
        g->sampling.seed = pd_cli_random_seed();
    bool chat = pd_cli_chat_given(&o->chat);
    if ((g->prompt != NULL) + (g->tokens != NULL) + chat != 1) {
        fprintf(stderr, "pdctl: submit: give exactly one of -p TEXT, --tokens LIST and a "
                        "conversation (--chat FILE or --system/--user)\n");
        return PD_CLI_USAGE;
    }
    if (chat != (o->tokenizer != NULL)) {
        fprintf(stderr, "pdctl submit: a conversation needs -t TOKENIZER (and -t is only for "
                        "one)\n");
        return PD_CLI_USAGE;
    }
    if (chat) {
        pd_tokenizer_t *tok = NULL;
        pd_status_t st = pd_tokenizer_open(o->tokenizer, 0, &tok);
        if (st != PD_OK) {
            fprintf(stderr, "pdctl submit: tokenizer %s: %s\n", o->tokenizer, pd_status_str(st));
            return PD_CLI_FAIL;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        int rc = pd_cli_chat_tokens(&o->chat, tok, &ids, &n);
        pd_tokenizer_destroy(&tok);
        if (rc != PD_CLI_OK)
            return rc;
        if (n == 0 || n > PD_PROTO_MAX_PROMPT_TOKENS) {
            fprintf(stderr, "pdctl submit: the conversation is %zu tokens (1..%u)\n", n,
                    PD_PROTO_MAX_PROMPT_TOKENS);
            free(ids);
            return PD_CLI_USAGE;
        }
        memcpy(o->tokens, ids, n * sizeof(int32_t));
        free(ids);
        g->tokens = o->tokens;
        g->n_tokens = (uint32_t)n;
    }
    if (g->prompt != NULL &&
        (g->prompt_bytes == 0 || g->prompt_bytes > PD_PROTO_MAX_PROMPT_BYTES)) {
        fprintf(stderr, "pdctl: submit: -p: the prompt must be 1..%u bytes\n",
                PD_PROTO_MAX_PROMPT_BYTES);
        return PD_CLI_USAGE;
    }
    return PD_CLI_OK;
}

/* Text gathered from the token messages, for the end (no-stream, JSON). */
typedef struct pd_submit_text {
    pd_cli_text_t buf;
    bool any; /* some token came with text */
} pd_submit_text_t;

/* Like llama2.c's safe_printf: a lone control byte is not printed. */
static void pd_submit_print_piece(const char *s, size_t n)
{
    if (n == 1 && ((unsigned char)s[0] < 0x20 || (unsigned char)s[0] == 0x7f) && s[0] != '\n' &&
        s[0] != '\t')
        return;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
}

static void pd_submit_print_done_json(const pd_proto_done_t *d, const pd_submit_text_t *text,
                                      uint64_t seed)
{
    printf("{\"id\":");
    pd_json_fprint_string(stdout, d->id, strlen(d->id));
    printf(",\"tokens\":[");
    for (uint32_t i = 0; i < d->n_tokens; i++)
        printf("%s%d", i ? "," : "", d->tokens[i]);
    printf("],\"text\":");
    if (text->any)
        pd_json_fprint_string(stdout, text->buf.data ? text->buf.data : "", text->buf.len);
    else
        printf("null");
    const pd_proto_usage_t *u = &d->usage;
    const pd_proto_timings_t *t = &d->timings;
    printf(",\"seed\":%llu", (unsigned long long)seed);
    printf(",\"finish_reason\":\"%s\",\"usage\":{\"input_tokens\":%u,"
           "\"cache_creation_input_tokens\":%u,\"cache_read_input_tokens\":%u,"
           "\"output_tokens\":%u},\"timings\":{\"queue_ms\":%.3f,\"prefill_ms\":%.3f,"
           "\"transfer_ms\":%.3f,\"ttft_ms\":%.3f,\"tpot_ms\":%.3f,\"total_ms\":%.3f},"
           "\"workers\":{\"prefill\":",
           pd_proto_finish_name(d->finish_reason), u->input_tokens, u->cache_creation_input_tokens,
           u->cache_read_input_tokens, u->output_tokens, t->queue_ms, t->prefill_ms, t->transfer_ms,
           t->ttft_ms, t->tpot_ms, t->total_ms);
    pd_json_fprint_string(stdout, d->prefill_worker, strlen(d->prefill_worker));
    printf(",\"decode\":");
    pd_json_fprint_string(stdout, d->decode_worker, strlen(d->decode_worker));
    printf("}");
    if (d->n_recomputed_blocks > 0) {
        printf(",\"recomputed_blocks\":[");
        for (uint32_t i = 0; i < d->n_recomputed_blocks; i++)
            printf("%s%u", i ? "," : "", d->recomputed_blocks[i]);
        printf("]");
    }
    printf("}\n");
}

static void pd_submit_print_error(bool json, const char *id, pd_status_t code, const char *message)
{
    if (json) {
        printf("{\"id\":");
        pd_json_fprint_string(stdout, id, strlen(id));
        printf(",\"error\":{\"code\":\"%s\",\"message\":", pd_status_name(code));
        pd_json_fprint_string(stdout, message, strlen(message));
        printf("}}\n");
    } else {
        printf("\n");
    }
    fflush(stdout);
    fprintf(stderr, "pdctl: submit: %s: %s\n", pd_status_name(code), message);
}

static void pd_submit_send_cancel(pd_client_t *c, const char *id)
{
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_CANCEL};
    snprintf(m.u.cancel.id, sizeof(m.u.cancel.id), "%s", id);
    /* On the way out: a router we cannot reach cancels the request itself when this
     * client's connection closes. */
    pd_status_ignore(pd_client_send(c, &m));
}

int pd_cmd_submit(int argc, char **argv)
{
    static pd_submit_opts_t o;
    pd_submit_text_t text = {0};
    pd_client_t *c = NULL;
    int rc;

    memset(&o, 0, sizeof(o));
    rc = pd_submit_parse(argc, argv, &o);
    if (rc < 0)
        return PD_CLI_OK;
    if (rc != PD_CLI_OK)
        return rc;
    rc = PD_CLI_FAIL;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pd_submit_on_sigint;
    sigaction(SIGINT, &sa, NULL);

    if (!pd_cli_router_reach("submit", o.router, o.wait_s))
        return PD_CLI_FAIL;
    if (pd_client_connect_opt("pdctl: submit", o.router, o.server_key, o.secret_file, &c) !=
        PD_OK) {
        pd_cli_error("submit: cannot connect to %s", o.router);
        return PD_CLI_FAIL;
    }
    pd_proto_msg_t req = {.type = PD_PROTO_TYPE_GENERATE};
    req.u.generate = o.g;
    pd_status_t st = pd_client_send(c, &req);
    if (st != PD_OK) {
        fprintf(stderr, "pdctl: submit: cannot send the request: %s\n", pd_status_str(st));
        goto out;
    }

    uint64_t deadline = pd_time_now_ms() + o.timeout_ms;
    bool canceled = false;
    uint32_t n_tokens = 0; /* streamed so far */
    /* With no accepted after 2 s the request goes again (a router that died with it
     * unread); a router that has it answers accepted and runs it once. */
    bool accepted = false;
    uint64_t sent_ms = pd_time_now_ms();
    int n_resent = 0;
    for (;;) {
        uint64_t now = pd_time_now_ms();
        if (!accepted && !canceled && n_resent < 5 && now >= sent_ms + 2000) {
            if (pd_client_send(c, &req) == PD_OK)
                n_resent++;
            sent_ms = now;
        }
        if (pd_submit_interrupted && !canceled) {
            pd_submit_send_cancel(c, o.g.id);
            canceled = true;
            deadline = now + 2000; /* the router's error should come back at once */
        }
        if (now >= deadline) {
            if (!canceled)
                pd_submit_send_cancel(c, o.g.id);
            pd_submit_print_error(o.json, o.g.id, PD_ERR_TIMEOUT,
                                  canceled ? "canceled; the router did not confirm"
                                           : "no answer from the router in time (canceled)");
            goto out;
        }
        pd_proto_msg_t m;
        pd_proto_fault_t fault;
        int wait_ms = (int)(deadline - now < 200 ? deadline - now : 200);
        st = pd_client_recv(c, wait_ms, &m, &fault);
        if (st == PD_ERR_TIMEOUT || st == PD_ERR_CANCELED)
            continue;
        if (st != PD_OK) {
            fprintf(stderr, "pdctl: submit: bad message from the router: %s\n", fault.reason);
            continue;
        }
        bool mine = true;
        switch (m.type) {
        case PD_PROTO_TYPE_ACCEPTED:
            mine = strcmp(m.u.accepted.id, o.g.id) == 0;
            accepted = accepted || mine;
            break;
        case PD_PROTO_TYPE_TOKEN:
            /* A token it already has (sent again by a router that restarted and went on
             * with the request) is skipped by its index. */
            if ((mine = strcmp(m.u.token.id, o.g.id) == 0) && m.u.token.index >= n_tokens) {
                n_tokens = m.u.token.index + 1;
                if (m.u.token.text_bytes > 0) {
                    text.any = true;
                    if (!pd_cli_text_append(&text.buf, m.u.token.text, m.u.token.text_bytes)) {
                        pd_proto_msg_cleanup(&m);
                        goto out;
                    }
                    if (!o.json)
                        pd_submit_print_piece(m.u.token.text, m.u.token.text_bytes);
                } else if (!o.json) {
                    printf("%s%d", m.u.token.index ? " " : "", m.u.token.token);
                    fflush(stdout);
                }
            }
            break;
        case PD_PROTO_TYPE_DONE: {
            const pd_proto_done_t *d = &m.u.done;
            if (!(mine = strcmp(d->id, o.g.id) == 0))
                break;
            /* The text the stream held back at the end (an unfinished character). */
            if (d->text != NULL && d->text_bytes > 0) {
                text.any = true;
                if (!pd_cli_text_append(&text.buf, d->text, d->text_bytes)) {
                    pd_proto_msg_cleanup(&m);
                    goto out;
                }
                if (!o.json)
                    pd_submit_print_piece(d->text, d->text_bytes);
            }
            if (o.json) {
                pd_submit_print_done_json(d, &text, o.g.sampling.seed);
            } else {
                if (!o.g.stream) {
                    for (uint32_t i = 0; i < d->n_tokens; i++)
                        printf("%s%d", i ? " " : "", d->tokens[i]);
                }
                printf("\n");
                fflush(stdout);
                const pd_proto_usage_t *u = &d->usage;
                const pd_proto_timings_t *t = &d->timings;
                fprintf(stderr,
                        "pdctl: submit: finish %s, seed %llu; usage: input %u, cache read %u, "
                        "cache "
                        "write %u, output %u tokens\n"
                        "pdctl: submit: timings: queue %.2f ms, prefill %.2f ms, transfer %.2f "
                        "ms, ttft %.2f ms, tpot %.2f ms, total %.2f ms; prefill %s, decode %s\n",
                        pd_proto_finish_name(d->finish_reason),
                        (unsigned long long)o.g.sampling.seed, u->input_tokens,
                        u->cache_read_input_tokens, u->cache_creation_input_tokens,
                        u->output_tokens, t->queue_ms, t->prefill_ms, t->transfer_ms, t->ttft_ms,
                        t->tpot_ms, t->total_ms, d->prefill_worker, d->decode_worker);
            }
            rc = PD_CLI_OK;
            pd_proto_msg_cleanup(&m);
            goto out;
        }
        case PD_PROTO_TYPE_ERROR:
            /* An error with an empty id answers a frame the router could not read: ours. */
            if (m.u.error.id[0] != '\0' && strcmp(m.u.error.id, o.g.id) != 0) {
                mine = false;
                break;
            }
            pd_submit_print_error(o.json, o.g.id, m.u.error.code, m.u.error.message);
            pd_proto_msg_cleanup(&m);
            goto out;
        default:
            mine = false;
            break;
        }
        if (!mine)
            fprintf(stderr, "pdctl: submit: ignoring a '%s' for another request\n",
                    pd_proto_type_name(m.type));
        pd_proto_msg_cleanup(&m);
    }

out:
    free(text.buf.data);
    pd_client_destroy(&c);
    return rc;
}
