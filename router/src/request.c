/* The request table and each request's life:
 *
 *   queued -> reserving -> prefilling -> decoding -> terminal (done or error, then freed)
 *
 * A request is freed in exactly two places, pd_router_req_finish (done) and
 * pd_router_req_fail (error), each of which sends the one terminal message first; any
 * worker message that arrives later for its req_id finds nothing and is dropped. Every
 * fail path sends cancel to each worker the request was assigned to, so nothing stays
 * reserved. */
#include "router_int.h"

#include "pd/hash.h"
#include "pd/log.h"
#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A worker that turned a request away for lack of room takes nothing new for this long,
 * or until it reports progress. */
#define PD_ROUTER_BUSY_MS 200

static uint32_t pd_router_bucket(uint64_t req_id)
{
    return (uint32_t)(req_id & (PD_ROUTER_REQ_BUCKETS - 1));
}

pd_router_req_t *pd_router_req_find(pd_router_t *r, uint64_t req_id)
{
    for (pd_router_req_t *q = r->buckets[pd_router_bucket(req_id)]; q != NULL; q = q->next_hash)
        if (q->req_id == req_id)
            return q;
    return NULL;
}

static void pd_router_req_link(pd_router_t *r, pd_router_req_t *req)
{
    uint32_t b = pd_router_bucket(req->req_id);
    req->next_hash = r->buckets[b];
    r->buckets[b] = req;
    req->prev = r->tail;
    req->next = NULL;
    if (r->tail != NULL)
        r->tail->next = req;
    else
        r->head = req;
    r->tail = req;
    r->n_live++;
}

static void pd_router_req_unlink(pd_router_t *r, pd_router_req_t *req)
{
    pd_router_journal_end(r, req);
    pd_router_req_t **pp = &r->buckets[pd_router_bucket(req->req_id)];
    while (*pp != NULL && *pp != req)
        pp = &(*pp)->next_hash;
    if (*pp == req)
        *pp = req->next_hash;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        r->head = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    else
        r->tail = req->prev;
    r->n_live--;
    if (req->state == PD_REQ_QUEUED)
        r->n_queued--;
}

static void pd_router_req_free(pd_router_req_t *req)
{
    free(req->tokens);
    free(req->hashes);
    free(req->block_table);
    free(req->src_table);
    free(req->src_sums);
    free(req->recomputed);
    free(req->out);
    free(req->jframe);
    pd_tokenizer_stream_destroy(&req->detok);
    free(req);
}

/* The worker of a side if it is still the one the request was assigned to. */
pd_router_worker_t *pd_router_req_worker(pd_router_t *r, int slot, uint64_t epoch)
{
    if (slot < 0)
        return NULL;
    pd_router_worker_t *wk = &r->workers[slot];
    return (wk->used && wk->epoch == epoch) ? wk : NULL;
}

static uint64_t pd_router_req_load_tokens(const pd_router_req_t *req)
{
    return (uint64_t)req->n_tokens + req->max_tokens;
}

void pd_router_req_release_prefill(pd_router_t *r, pd_router_req_t *req)
{
    if (!req->prefill_assigned)
        return;
    req->prefill_assigned = false;
    pd_router_worker_t *wk = pd_router_req_worker(r, req->prefill_slot, req->prefill_epoch);
    if (wk != NULL) {
        wk->n_assigned--;
        wk->assigned_tokens -= pd_router_req_load_tokens(req);
        pd_router_sched_uncommit(wk, req);
        if (req->prefill_counted && wk->n_prefill_sent > 0)
            wk->n_prefill_sent--;
    }
    req->prefill_counted = false;
    req->prefill_held = false;
}

void pd_router_req_release_decode(pd_router_t *r, pd_router_req_t *req)
{
    if (!req->decode_assigned)
        return;
    req->decode_assigned = false;
    pd_router_worker_t *wk = pd_router_req_worker(r, req->decode_slot, req->decode_epoch);
    if (wk != NULL) {
        wk->n_assigned--;
        wk->assigned_tokens -= pd_router_req_load_tokens(req);
    }
}

/* The holder lets its pins go (prefill read what it needed, or the request ended). */
void pd_router_req_release_holder(pd_router_t *r, pd_router_req_t *req)
{
    if (!req->pin_held)
        return;
    req->pin_held = false;
    req->pin_waiting = false;
    pd_router_worker_t *h = pd_router_req_worker(r, req->holder_slot, req->holder_epoch);
    if (h != NULL)
        pd_router_send_cancel(r, h, req->req_id);
}

/* Let go of everything req holds on its workers (prefill slot, decode reservation, pins). */
static void pd_router_req_release_workers(pd_router_t *r, pd_router_req_t *req)
{
    pd_router_req_release_prefill(r, req);
    pd_router_req_release_decode(r, req);
    pd_router_req_release_holder(r, req);
}

/* Tell the workers assigned to req to drop it, then let go of what it holds on them. */
static void pd_router_req_cancel_workers(pd_router_t *r, pd_router_req_t *req)
{
    if (req->state != PD_REQ_QUEUED) {
        pd_router_worker_t *d = pd_router_req_worker(r, req->decode_slot, req->decode_epoch);
        pd_router_worker_t *p = pd_router_req_worker(r, req->prefill_slot, req->prefill_epoch);
        if (d != NULL)
            pd_router_send_cancel(r, d, req->req_id);
        if (p != NULL && p != d)
            pd_router_send_cancel(r, p, req->req_id);
    }
    pd_router_req_release_workers(r, req);
}

void pd_router_req_fail(pd_router_t *r, pd_router_req_t *req, pd_status_t code, const char *message)
{
    pd_log_debug("request %llu (%s) failed: %s: %s", (unsigned long long)req->req_id, req->id,
                 pd_status_name(code), message);
    pd_router_send_client_error(r, &req->client, req->id, code, message);
    pd_router_req_cancel_workers(r, req);
    pd_router_req_unlink(r, req);
    pd_router_req_free(req);
}

double pd_router_ms_between(uint64_t from_ns, uint64_t to_ns)
{
    return (from_ns == 0 || to_ns < from_ns) ? 0.0 : pd_time_ns_to_ms(to_ns - from_ns);
}

/* The terminal `done`: merge decode's and prefill's reports (docs/PROTOCOL.md). */
void pd_router_req_finish(pd_router_t *r, pd_router_req_t *req)
{
    uint64_t now = pd_time_now_ns();
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_DONE};
    pd_proto_done_t *d = &m.u.done;
    uint32_t pinned_tokens = req->n_cached_blocks * r->cfg.block_tokens;
    if (pinned_tokens > req->n_prompt)
        pinned_tokens = req->n_prompt;

    memcpy(d->id, req->id, sizeof(d->id));
    /* What the text stream still holds (a character the last token left unfinished). */
    const char *rest;
    size_t rest_len;
    if (req->stream && req->detok != NULL &&
        pd_tokenizer_stream_finish(req->detok, &rest, &rest_len) == PD_OK && rest_len > 0) {
        while (rest_len > PD_PROTO_MAX_PIECE_BYTES ||
               (rest_len < strlen(rest) && ((unsigned char)rest[rest_len] & 0xc0) == 0x80))
            rest_len--;
        d->text = rest;
        d->text_bytes = rest_len;
    }
    d->finish_reason = req->done.finish_reason;
    d->tokens = req->out;
    d->n_tokens = req->n_out;
    if (req->prefilled || req->keep_usage) {
        d->usage.input_tokens = req->n_computed_tokens;
        d->usage.cache_read_input_tokens = req->n_prefill_cached_tokens > pinned_tokens
                                               ? req->n_prefill_cached_tokens
                                               : pinned_tokens;
    } else {
        d->usage.input_tokens = req->n_prompt - pinned_tokens;
        d->usage.cache_read_input_tokens = pinned_tokens;
    }
    d->usage.cache_creation_input_tokens =
        req->done.cache_creation_input_tokens > req->prefill_cc_tokens
            ? req->done.cache_creation_input_tokens
            : req->prefill_cc_tokens;
    d->usage.output_tokens = req->n_out;
    d->timings.queue_ms = pd_router_ms_between(req->arrival_ns, req->dispatch_ns);
    d->timings.prefill_ms = req->prefill_ms;
    d->timings.transfer_ms = req->transfer_ms;
    if (req->first_token_ns != 0 && req->prefilled_ns > req->first_token_ns) {
        /* Decode streamed the first token before prefill's report came: prefill was busy
         * (computing the next prompt) when its push ended, so part of what it measured
         * came after the first token. Only the part before it is in TTFT. */
        double after = pd_router_ms_between(req->first_token_ns, req->prefilled_ns);
        d->timings.transfer_ms = req->transfer_ms > after ? req->transfer_ms - after : 0.0;
    }
    d->timings.ttft_ms = pd_router_ms_between(req->arrival_ns, req->first_token_ns);
    d->timings.tpot_ms =
        req->n_out > 1
            ? pd_router_ms_between(req->first_token_ns, req->last_token_ns) / (req->n_out - 1)
            : 0.0;
    d->timings.total_ms = pd_router_ms_between(req->arrival_ns, now);
    d->timings.admission_ms = pd_router_ms_between(req->dispatch_ns, req->reserved_ns);
    d->timings.prefill_queue_ms =
        pd_router_ms_between(req->reserved_ns, req->prefill_sent_ns) + req->prefill_queue_ms;
    if (req->prefilled_ns != 0 && req->first_token_ns > req->prefilled_ns)
        d->timings.first_step_ms = pd_router_ms_between(req->prefilled_ns, req->first_token_ns);
    d->usage.fetched_input_tokens = req->prefilled ? req->n_fetched_tokens : 0;
    if (req->prefill_slot >= 0)
        memcpy(d->prefill_worker, r->workers[req->prefill_slot].id, sizeof(d->prefill_worker));
    if (req->decode_slot >= 0)
        memcpy(d->decode_worker, r->workers[req->decode_slot].id, sizeof(d->decode_worker));
    d->recomputed_blocks = req->recomputed;
    d->n_recomputed_blocks = req->n_recomputed;
    pd_router_send_client(r, &req->client, &m);

    /* Prefill never reported: make sure it holds nothing. */
    if (!req->prefilled) {
        pd_router_worker_t *p = pd_router_req_worker(r, req->prefill_slot, req->prefill_epoch);
        pd_router_worker_t *dw = pd_router_req_worker(r, req->decode_slot, req->decode_epoch);
        if (p != NULL && p != dw)
            pd_router_send_cancel(r, p, req->req_id);
    }
    pd_router_req_release_workers(r, req);
    pd_router_req_unlink(r, req);
    pd_router_req_free(req);
}

void pd_router_req_finish_now(pd_router_t *r, pd_router_req_t *req)
{
    if (!req->decode_done && req->last_streamed && req->n_out > 0) {
        /* The decode worker flagged its last token and died before its done: the tokens
         * stand. Why it ended, as decode decides it (EOS at exactly max_tokens reads as
         * length here). */
        int32_t last = req->out[req->n_out - 1];
        bool stop = false;
        for (uint32_t i = 0; i < req->n_stop; i++)
            stop = stop || req->stop[i] == last;
        req->done.finish_reason = stop                           ? PD_PROTO_FINISH_STOP
                                  : req->n_out < req->max_tokens ? PD_PROTO_FINISH_EOS
                                                                 : PD_PROTO_FINISH_LENGTH;
        req->done.output_tokens = req->n_out;
    }
    pd_router_req_finish(r, req);
}

/* Some live worker can take each side of a moved request. */
static bool pd_router_can_take(const pd_router_t *r)
{
    bool d = false, p = false;
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++) {
        d = d || pd_router_worker_can_decode(&r->workers[s]);
        p = p || pd_router_worker_can_prefill(&r->workers[s]);
    }
    return d && p;
}

/* Let go of req's workers: whatever they hold for it goes (a dead one is already unused),
 * and it keeps only what it needs to be dispatched again. */
static void pd_router_req_unassign(pd_router_t *r, pd_router_req_t *req)
{
    pd_router_req_cancel_workers(r, req);
    free(req->block_table);
    free(req->src_table);
    free(req->src_sums);
    free(req->recomputed);
    req->block_table = req->src_table = req->recomputed = NULL;
    req->src_sums = NULL;
    req->n_block_table = req->n_cached_blocks = req->n_src = req->n_recomputed = 0;
    req->prefill_slot = req->decode_slot = req->holder_slot = -1;
    req->prefill_sent = req->pin_waiting = req->pin_held = false;
    req->push_error = PD_OK;
    if (req->prefilled)
        req->keep_usage = true;
    req->prefilled = false;
}

/* The work becomes the prompt and every token streamed: prefill computes their KV and
 * samples token n_out with the sampler's step n_out, the token an undisturbed run samples
 * there (docs/ARCHITECTURE.md, 11b). */
static void pd_router_req_continue_from_out(pd_router_t *r, pd_router_req_t *req)
{
    memcpy(req->tokens + req->n_prompt, req->out, (size_t)req->n_out * sizeof(*req->out));
    req->n_tokens = req->n_prompt + req->n_out;
    req->n_hashes = req->n_tokens / r->cfg.block_tokens;
    pd_block_hash_t root = pd_block_hash_root(req->tenant, r->cfg.model_id);
    pd_block_hash_chain(root, req->tokens, req->n_tokens, r->cfg.block_tokens, req->hashes,
                        req->n_hashes);
    req->first_step = req->n_out;
}

bool pd_router_req_move(pd_router_t *r, pd_router_req_t *req, const char *why)
{
    /* With nobody to take it now, the client hears at once rather than at its deadline. */
    if (req->n_moves >= r->cfg.max_migrations || req->decode_done ||
        req->n_out >= req->max_tokens ||
        (uint64_t)req->n_prompt + req->n_out > PD_PROTO_MAX_PROMPT_TOKENS || !pd_router_can_take(r))
        return false;
    pd_router_req_unassign(r, req);
    pd_router_req_continue_from_out(r, req);
    req->n_moves++;
    req->state = PD_REQ_QUEUED; /* keeps its place: it goes before later arrivals */
    r->n_queued++;
    r->n_moved++;
    pd_log_info("request %llu (%s): %s; continues elsewhere from token %u (move %u of %u)",
                (unsigned long long)req->req_id, req->id, why, req->n_out, req->n_moves,
                r->cfg.max_migrations);
    return true;
}

/* A busy worker turned req away before anything of it ran: it goes back to its place in
 * the queue, and that worker takes nothing new until it reports progress (or briefly). */
void pd_router_req_reroute(pd_router_t *r, pd_router_req_t *req, pd_router_worker_t *wk,
                           const char *why)
{
    wk->busy_until_ms = pd_time_now_ms() + PD_ROUTER_BUSY_MS;
    pd_router_req_unassign(r, req);
    req->state = PD_REQ_QUEUED;
    r->n_queued++;
    req->n_rerouted++;
    r->n_rerouted++;
    pd_log_info("request %llu (%s): %s is busy (%s); back in the queue",
                (unsigned long long)req->req_id, req->id, wk->id, why);
}

static pd_router_req_t *pd_router_req_of_client(pd_router_t *r, const pd_router_rid_t *client,
                                                const char *id)
{
    for (pd_router_req_t *q = r->head; q != NULL; q = q->next)
        if (q->client.n == client->n && memcmp(q->client.bytes, client->bytes, client->n) == 0 &&
            strcmp(q->id, id) == 0)
            return q;
    return NULL;
}

/* A queued request from g's fields and its prompt tokens, not yet linked; NULL when out of
 * memory. */
static pd_router_req_t *pd_router_req_new(pd_router_t *r, const pd_router_rid_t *client,
                                          const pd_proto_generate_t *g, const int32_t *tokens,
                                          size_t n_tokens, const char *tenant)
{
    pd_router_req_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    /* Room for the tokens it may generate: a move to another decode worker sends them. */
    size_t cap = n_tokens + g->max_tokens;
    req->tokens = malloc(cap * sizeof(*req->tokens));
    req->n_hashes = (uint32_t)(n_tokens / r->cfg.block_tokens);
    req->hashes = malloc((cap / r->cfg.block_tokens + 1) * sizeof(*req->hashes));
    req->out = malloc(g->max_tokens * sizeof(*req->out));
    if (req->tokens == NULL || req->hashes == NULL || req->out == NULL) {
        pd_router_req_free(req);
        return NULL;
    }
    memcpy(req->tokens, tokens, n_tokens * sizeof(*tokens));
    req->n_tokens = req->n_prompt = (uint32_t)n_tokens;
    snprintf(req->tenant, sizeof(req->tenant), "%s", tenant != NULL ? tenant : g->tenant);
    pd_block_hash_t root = pd_block_hash_root(req->tenant, r->cfg.model_id);
    pd_block_hash_chain(root, req->tokens, n_tokens, r->cfg.block_tokens, req->hashes,
                        req->n_hashes);
    req->req_id = ++r->next_req_id;
    req->client = *client;
    req->client_fd = r->client_fd_now;
    memcpy(req->id, g->id, sizeof(req->id));
    req->max_tokens = g->max_tokens;
    req->sampling = g->sampling;
    req->n_stop = g->n_stop;
    if (g->n_stop > 0)
        memcpy(req->stop, g->stop, g->n_stop * sizeof(*g->stop));
    pd_proto_cache_plan_make(&g->cache, req->n_tokens, r->cfg.block_tokens,
                             r->cfg.min_cached_prefix_tokens, &req->plan);
    req->stream = g->stream;
    req->prefill_slot = req->decode_slot = req->holder_slot = -1;
    req->arrival_ns = pd_time_now_ns();
    req->deadline_ms = pd_time_now_ms() + r->cfg.request_timeout_ms;
    req->slo_ttft_ms = g->slo_ttft_ms != 0 ? g->slo_ttft_ms : r->cfg.slo_ttft_ms;
    req->slo_tpot_ms = g->slo_tpot_ms != 0 ? g->slo_tpot_ms : r->cfg.slo_tpot_ms;
    req->state = PD_REQ_QUEUED;
    return req;
}

void pd_router_on_generate(pd_router_t *r, const pd_router_rid_t *client,
                           const pd_proto_generate_t *g, const char *tenant)
{
    static int32_t scratch[PD_PROTO_MAX_PROMPT_TOKENS];
    const int32_t *tokens = g->tokens;
    size_t n_tokens = g->n_tokens;
    pd_status_t st;

    /* The same request again from its client (it saw no accepted: a router that died
     * with it unread, or a slow one): it runs once, and the client hears accepted. */
    if (g->id[0] != '\0' && pd_router_journal_claim(r, client, g->id))
        return;
    if (g->id[0] != '\0' && pd_router_req_of_client(r, client, g->id) != NULL) {
        pd_proto_msg_t acc = {.type = PD_PROTO_TYPE_ACCEPTED};
        memcpy(acc.u.accepted.id, g->id, sizeof(acc.u.accepted.id));
        pd_router_send_client(r, client, &acc);
        return;
    }
    if (r->n_queued >= r->cfg.max_queue) {
        char why[128];
        snprintf(why, sizeof(why), "the router's queue is full (%u of max_queue %u); retry later",
                 r->n_queued, r->cfg.max_queue);
        pd_router_send_client_error(r, client, g->id, PD_ERR_OVERLOADED, why);
        return;
    }
    if (g->prompt != NULL) {
        if (r->tok == NULL) {
            pd_router_send_client_error(r, client, g->id, PD_ERR_INVALID_PARAM,
                                        "text prompts need pd-router --tokenizer; send tokens");
            return;
        }
        st = pd_tokenizer_encode(r->tok, g->prompt, g->prompt_bytes, PD_TOKENIZE_ADD_SPECIAL,
                                 scratch, PD_PROTO_MAX_PROMPT_TOKENS, &n_tokens);
        if (st != PD_OK) {
            char why[128];
            if (st == PD_ERR_LIMIT)
                snprintf(why, sizeof(why), "the prompt is longer than the limit of %u tokens",
                         (unsigned)PD_PROTO_MAX_PROMPT_TOKENS);
            else
                snprintf(why, sizeof(why), "the prompt could not be tokenized");
            pd_router_send_client_error(r, client, g->id, st, why);
            return;
        }
        tokens = scratch;
    }
    if (n_tokens == 0) {
        pd_router_send_client_error(r, client, g->id, PD_ERR_PROTO, "empty prompt");
        return;
    }
    if (r->tok != NULL) {
        uint32_t vocab = pd_tokenizer_vocab_size(r->tok);
        for (size_t i = 0; i < n_tokens; i++) {
            if ((uint32_t)tokens[i] >= vocab) {
                char msg[96];
                snprintf(msg, sizeof(msg), "token id %d at %zu is outside the vocabulary (%u)",
                         tokens[i], i, vocab);
                pd_router_send_client_error(r, client, g->id, PD_ERR_OUT_OF_RANGE, msg);
                return;
            }
        }
    }

    pd_router_req_t *req = pd_router_req_new(r, client, g, tokens, n_tokens, tenant);
    if (req == NULL) {
        pd_router_send_client_error(r, client, g->id, PD_ERR_NO_MEMORY, "out of memory");
        return;
    }
    pd_router_sched_arrive(r, req);
    {
        /* Refused before anything is reserved or computed when its objective cannot be met. */
        char why[PD_PROTO_MAX_MESSAGE_BYTES];
        if (pd_router_sched_admit(r, req, why, sizeof(why)) != PD_OK) {
            r->n_slo_rejected++;
            pd_log_debug("request %llu (%s): %s", (unsigned long long)req->req_id, req->id, why);
            pd_router_send_client_error(r, client, g->id, PD_ERR_OVERLOADED, why);
            pd_router_req_free(req);
            return;
        }
    }
    pd_router_req_link(r, req);
    pd_router_journal_accept(r, req, g);
    r->n_queued++;
    r->requests_total++;

    pd_proto_msg_t acc = {.type = PD_PROTO_TYPE_ACCEPTED};
    memcpy(acc.u.accepted.id, req->id, sizeof(acc.u.accepted.id));
    pd_router_send_client(r, client, &acc);
    pd_log_debug("request %llu (%s): %u tokens, %u blocks, tenant '%s'",
                 (unsigned long long)req->req_id, req->id, req->n_tokens, req->n_hashes,
                 req->tenant);
    pd_router_dispatch(r);
}

void pd_router_req_resume(pd_router_t *r, const pd_router_rid_t *client,
                          const pd_proto_generate_t *g, const int32_t *out, uint32_t n_out,
                          bool last)
{
    pd_router_req_t *req = pd_router_req_new(r, client, g, g->tokens, g->n_tokens, g->tenant);
    if (req == NULL) {
        pd_router_send_client_error(r, client, g->id, PD_ERR_NO_MEMORY, "out of memory");
        return;
    }
    req->client_fd = -1; /* not known until it sends again */
    if (n_out > req->max_tokens)
        n_out = req->max_tokens;
    if (n_out > 0)
        memcpy(req->out, out, (size_t)n_out * sizeof(*out));
    req->n_out = n_out;
    pd_router_req_link(r, req);
    pd_router_journal_accept(r, req, g);
    req->journal_mark = n_out; /* the tokens it has go into this journal at the next write */
    r->n_queued++;
    r->requests_total++;
    r->n_resumed++;
    /* The text stream goes on from where the client's is: the tokens it has go through
     * the detokenizer unsent. */
    if (req->stream && r->tok != NULL && n_out > 0 &&
        pd_tokenizer_stream_create(r->tok, 0, req->tokens[req->n_prompt - 1], &req->detok) ==
            PD_OK) {
        for (uint32_t i = 0; i < n_out; i++) {
            const char *text;
            size_t len;
            pd_status_ignore(pd_tokenizer_stream_push(req->detok, out[i], &text, &len));
        }
    }
    pd_log_info("request %llu (%s) of the previous router: goes on from token %u",
                (unsigned long long)req->req_id, req->id, n_out);
    if (last || n_out >= req->max_tokens) {
        /* Its last token was streamed before the restart: only the done is missing. */
        req->last_streamed = true;
        pd_router_req_finish_now(r, req);
        return;
    }
    if (n_out > 0)
        pd_router_req_continue_from_out(r, req);
    pd_router_sched_arrive(r, req);
    pd_router_dispatch(r);
}

void pd_router_on_stop(pd_router_t *r, const pd_router_rid_t *client, const char *id)
{
    pd_router_req_t *req = pd_router_req_of_client(r, client, id);
    if (req == NULL) {
        pd_router_send_client_error(r, client, id, PD_ERR_NOT_FOUND, "no such request in flight");
        return;
    }
    /* Decode is still generating: it must stop and release. Prefill, if it has not
     * reported, is canceled by pd_router_req_finish like any request done without it. */
    pd_router_worker_t *d = pd_router_req_worker(r, req->decode_slot, req->decode_epoch);
    if (req->state != PD_REQ_QUEUED && d != NULL)
        pd_router_send_cancel(r, d, req->req_id);
    req->done.finish_reason = PD_PROTO_FINISH_STOP;
    req->done.cache_creation_input_tokens = 0; /* decode's share is reported only at its end */
    pd_log_debug("request %llu (%s) stopped by the client after %u tokens",
                 (unsigned long long)req->req_id, req->id, req->n_out);
    pd_router_req_finish(r, req);
}

void pd_router_on_cancel(pd_router_t *r, const pd_router_rid_t *client, const char *id)
{
    pd_router_req_t *q = pd_router_req_of_client(r, client, id);
    if (q != NULL) {
        pd_router_req_fail(r, q, PD_ERR_CANCELED, "canceled by the client");
        pd_router_dispatch(r); /* what it held can go to the next */
    } else
        pd_router_send_client_error(r, client, id, PD_ERR_NOT_FOUND, "no such request in flight");
}

/* Whether wk can take req's side now: decode within --max-inflight (and the TPOT
 * objective), prefill within --prefill-depth (sched.c). */
static bool pd_router_has_room(const pd_router_t *r, const pd_router_worker_t *wk, bool decode_side,
                               const pd_router_req_t *req)
{
    if (decode_side) {
        if (wk->suspect_ms != 0 || !pd_router_sched_decode_room(r, wk, req, pd_time_now_ms()))
            return false;
        /* Colocated, it computes the prompt too unless a prefill worker does it better. */
        return wk->role != PD_PROTO_ROLE_BOTH || pd_router_sched_prefill_room(r, wk, req);
    }
    return wk->n_assigned < r->cfg.max_inflight_per_worker &&
           pd_router_sched_prefill_room(r, wk, req);
}

/* Pick the best worker of a side; -1 if none has room. cached[s] is slot s's cached
 * prefix in blocks. */
static int pd_router_pick(pd_router_t *r, bool decode_side, const uint32_t *cached, uint32_t *rr_p,
                          const pd_router_req_t *req)
{
    int best = -1;
    double best_score = 0;
    if (r->cfg.policy == PD_ROUTER_POLICY_RR) {
        for (uint32_t k = 1; k <= PD_DIR_MAX_WORKERS; k++) {
            uint32_t s = (*rr_p + k) % PD_DIR_MAX_WORKERS;
            const pd_router_worker_t *wk = &r->workers[s];
            bool role_ok =
                decode_side ? pd_router_worker_can_decode(wk) : pd_router_worker_can_prefill(wk);
            if (role_ok && pd_router_has_room(r, wk, decode_side, req)) {
                *rr_p = s;
                return (int)s;
            }
        }
        return -1;
    }
    /* Ties (equal score and equal request count: typically cold prompts on an idle
     * cluster) go round-robin, starting after the last pick, so that new prefixes spread
     * over the workers instead of all landing on the first slot. */
    for (uint32_t k = 1; k <= PD_DIR_MAX_WORKERS; k++) {
        uint32_t s = (*rr_p + k) % PD_DIR_MAX_WORKERS;
        const pd_router_worker_t *wk = &r->workers[s];
        bool role_ok =
            decode_side ? pd_router_worker_can_decode(wk) : pd_router_worker_can_prefill(wk);
        if (!role_ok || !pd_router_has_room(r, wk, decode_side, req))
            continue;
        double score = r->cfg.kv_weight * (double)cached[s] * r->cfg.block_tokens -
                       r->cfg.load_weight * (double)wk->assigned_tokens;
        if (best < 0 || score > best_score ||
            (score == best_score && wk->n_assigned < r->workers[best].n_assigned)) {
            best = (int)s;
            best_score = score;
        }
    }
    if (best >= 0)
        *rr_p = (uint32_t)best;
    return best;
}

/* With KV routing, a worker other than the pair that holds more of the prefix than both
 * (any role, any tier) is asked to pin it for prefill to read, beside reserve. */
static void pd_router_req_pin_holder(pd_router_t *r, pd_router_req_t *req, const uint32_t *cached,
                                     uint32_t n_lookup, int d, int p, uint64_t now_ms)
{
    if (r->cfg.policy != PD_ROUTER_POLICY_KV || n_lookup == 0)
        return;
    uint32_t best_have = cached[d] > cached[p] ? cached[d] : cached[p];
    int h = -1;
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++) {
        if ((int)s == d || (int)s == p || !r->workers[s].used)
            continue;
        if (cached[s] > best_have && (h < 0 || cached[s] > cached[h]))
            h = (int)s;
    }
    if (h < 0)
        return;
    pd_router_worker_t *hw = &r->workers[h];
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_PIN};
    uint32_t left = (uint32_t)(req->deadline_ms > now_ms ? req->deadline_ms - now_ms : 1);
    m.u.pin = (pd_proto_pin_t){req->req_id, req->hashes, cached[h], left};
    if (pd_router_send_worker(r, hw, &m) != PD_OK)
        return;
    pd_log_debug("request %llu: %s holds %u blocks (decode %u, prefill %u): pinning them",
                 (unsigned long long)req->req_id, hw->id, cached[h], cached[d], cached[p]);
    req->holder_slot = h;
    req->holder_epoch = hw->epoch;
    req->pin_waiting = req->pin_held = true;
    req->pin_sent_ms = now_ms;
}

/* Choose the pair and send reserve. false when no pair has room (the request stays
 * queued). */
static bool pd_router_req_dispatch(pd_router_t *r, pd_router_req_t *req)
{
    uint32_t cached[PD_DIR_MAX_WORKERS];
    uint32_t n_lookup =
        req->plan.read_blocks < req->n_hashes ? req->plan.read_blocks : req->n_hashes;
    pd_dir_lookup_prefix(r->dir, req->hashes, n_lookup, cached);

    int d = pd_router_pick(r, true, cached, &r->rr_decode, req);
    if (d < 0)
        return false;
    int p;
    if (r->workers[d].role == PD_PROTO_ROLE_BOTH && r->cfg.policy == PD_ROUTER_POLICY_KV) {
        /* Colocated: the decode worker computes the prompt itself unless a prefill worker
         * scores strictly better. */
        int other = pd_router_pick(r, false, cached, &r->rr_prefill, req);
        p = d;
        if (other >= 0 && other != d) {
            double sd = r->cfg.kv_weight * (double)cached[d] * r->cfg.block_tokens;
            double so = r->cfg.kv_weight * (double)cached[other] * r->cfg.block_tokens -
                        r->cfg.load_weight * (double)r->workers[other].assigned_tokens;
            if (so > sd && pd_router_has_room(r, &r->workers[other], false, req))
                p = other;
        }
    } else {
        p = pd_router_pick(r, false, cached, &r->rr_prefill, req);
    }
    if (p < 0)
        return false;

    pd_router_worker_t *dw = &r->workers[d];
    pd_router_worker_t *pw = &r->workers[p];
    req->decode_slot = d;
    req->decode_epoch = dw->epoch;
    req->prefill_slot = p;
    req->prefill_epoch = pw->epoch;
    req->decode_assigned = req->prefill_assigned = true;
    dw->n_assigned++;
    dw->assigned_tokens += pd_router_req_load_tokens(req);
    pw->n_assigned++;
    pw->assigned_tokens += pd_router_req_load_tokens(req);
    pd_router_sched_commit(r, pw, req);
    req->state = PD_REQ_RESERVING;
    r->n_queued--;
    req->dispatch_ns = pd_time_now_ns();

    uint64_t now_ms = pd_time_now_ms();
    pd_router_req_pin_holder(r, req, cached, n_lookup, d, p, now_ms);
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_RESERVE};
    pd_proto_reserve_t *x = &m.u.reserve;
    x->req_id = req->req_id;
    x->tokens = req->tokens;
    x->n_tokens = req->n_tokens;
    x->block_hashes = req->hashes;
    x->n_block_hashes = req->n_hashes;
    x->cache = req->plan;
    x->max_tokens = req->max_tokens - req->first_step;
    x->first_step = req->first_step;
    x->sampling = req->sampling;
    x->stop = req->stop;
    x->n_stop = req->n_stop;
    x->deadline_ms = (uint32_t)(req->deadline_ms > now_ms ? req->deadline_ms - now_ms : 0);
    pd_log_debug("request %llu: decode %s (cached %u blocks), prefill %s (cached %u)",
                 (unsigned long long)req->req_id, dw->id, cached[d], pw->id, cached[p]);
    if (pd_router_send_worker(r, dw, &m) != PD_OK)
        pd_router_req_fail(r, req, PD_ERR_INTERNAL, "could not send reserve");
    return true;
}

/* Send held prefills, shortest expected first, while their workers have room. */
static void pd_router_send_held(pd_router_t *r)
{
    for (;;) {
        pd_router_req_t *best = NULL;
        for (pd_router_req_t *q = r->head; q != NULL; q = q->next) {
            if (!q->prefill_held || q->prefill_sent || q->state != PD_REQ_PREFILLING ||
                q->pin_waiting)
                continue;
            pd_router_worker_t *wk = pd_router_req_worker(r, q->prefill_slot, q->prefill_epoch);
            if (wk != NULL && wk->n_prefill_sent < r->cfg.prefill_depth &&
                (best == NULL || q->sched_key_ms < best->sched_key_ms))
                best = q;
        }
        if (best == NULL)
            return;
        pd_router_req_send_prefill(r, best);
        if (pd_router_req_find(r, best->req_id) == best && best->prefill_held)
            return; /* cannot happen (room was checked); never loop on it */
    }
}

void pd_router_dispatch(pd_router_t *r)
{
    pd_router_send_held(r);
    if (r->n_queued == 0)
        return;
    /* Shortest expected first (sched.c); one that finds no room does not stop a shorter
     * one behind it from going where only a much shorter prompt may. */
    uint32_t n = pd_router_sched_order(r);
    for (uint32_t i = 0; i < n && r->n_queued > 0; i++)
        (void)pd_router_req_dispatch(r, r->sched_buf[i]);
}
