/* KV events: the batch published once per loop iteration, and the record of held hashes
 * that answers resync with a kv_snapshot. */
#include "pd/log.h"
#include "worker_int.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define PD_WORKER_HELD_CAP0 1024u

static inline uint32_t pd_worker_held_slot(uint64_t key, uint32_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (uint32_t)key & (cap - 1);
}

pd_status_t pd_worker_held_init(pd_worker_held_t *h)
{
    memset(h, 0, sizeof(*h));
    h->keys = calloc(PD_WORKER_HELD_CAP0, sizeof(*h->keys));
    h->tiers = calloc(PD_WORKER_HELD_CAP0, sizeof(*h->tiers));
    if (h->keys == NULL || h->tiers == NULL) {
        pd_worker_held_cleanup(h);
        return PD_ERR_NO_MEMORY;
    }
    h->cap = PD_WORKER_HELD_CAP0;
    return PD_OK;
}

void pd_worker_held_cleanup(pd_worker_held_t *h)
{
    free(h->keys);
    free(h->tiers);
    memset(h, 0, sizeof(*h));
}

static uint32_t pd_worker_held_find(const pd_worker_held_t *h, uint64_t key, bool *found_p)
{
    uint32_t i = pd_worker_held_slot(key, h->cap);
    while (h->tiers[i] != 0) {
        if (h->keys[i] == key) {
            *found_p = true;
            return i;
        }
        i = (i + 1) & (h->cap - 1);
    }
    *found_p = false;
    return i;
}

static pd_status_t pd_worker_held_grow(pd_worker_held_t *h)
{
    pd_worker_held_t g;
    memset(&g, 0, sizeof(g));
    g.cap = h->cap * 2;
    g.keys = calloc(g.cap, sizeof(*g.keys));
    g.tiers = calloc(g.cap, sizeof(*g.tiers));
    if (g.keys == NULL || g.tiers == NULL) {
        free(g.keys);
        free(g.tiers);
        return PD_ERR_NO_MEMORY;
    }
    for (uint32_t i = 0; i < h->cap; i++) {
        if (h->tiers[i] == 0)
            continue;
        bool found;
        uint32_t j = pd_worker_held_find(&g, h->keys[i], &found);
        g.keys[j] = h->keys[i];
        g.tiers[j] = h->tiers[i];
    }
    g.n = h->n;
    memcpy(g.n_tier, h->n_tier, sizeof(g.n_tier));
    free(h->keys);
    free(h->tiers);
    *h = g;
    return PD_OK;
}

static void pd_worker_held_set(pd_worker_held_t *h, uint64_t key, pd_proto_tier_t tier)
{
    if ((h->n + 1) * 2 > h->cap && pd_worker_held_grow(h) != PD_OK) {
        pd_log_error("worker: out of memory growing the held-hash record");
        return;
    }
    bool found;
    uint32_t i = pd_worker_held_find(h, key, &found);
    if (found) {
        h->n_tier[h->tiers[i] - 1]--;
    } else {
        h->keys[i] = key;
        h->n++;
    }
    h->tiers[i] = (uint8_t)(tier + 1);
    h->n_tier[tier]++;
}

static void pd_worker_held_del(pd_worker_held_t *h, uint64_t key)
{
    bool found;
    uint32_t i = pd_worker_held_find(h, key, &found);
    if (!found)
        return;
    h->n_tier[h->tiers[i] - 1]--;
    h->n--;
    h->tiers[i] = 0;
    /* Backward-shift: move later entries of the run into the hole when their home allows. */
    uint32_t hole = i;
    uint32_t j = (i + 1) & (h->cap - 1);
    while (h->tiers[j] != 0) {
        uint32_t home = pd_worker_held_slot(h->keys[j], h->cap);
        bool movable = (hole <= j) ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            h->keys[hole] = h->keys[j];
            h->tiers[hole] = h->tiers[j];
            h->tiers[j] = 0;
            hole = j;
        }
        j = (j + 1) & (h->cap - 1);
    }
}

pd_status_t pd_worker_events_init(pd_worker_t *w)
{
    w->items_cap = 64;
    w->hashes_cap = 1024;
    w->items = calloc(w->items_cap, sizeof(*w->items));
    w->wire_items = calloc(w->items_cap, sizeof(*w->wire_items));
    w->hashes = calloc(w->hashes_cap, sizeof(*w->hashes));
    if (w->items == NULL || w->wire_items == NULL || w->hashes == NULL)
        return PD_ERR_NO_MEMORY;
    return pd_worker_held_init(&w->held);
}

void pd_worker_events_cleanup(pd_worker_t *w)
{
    free(w->items);
    free(w->wire_items);
    free(w->hashes);
    w->items = NULL;
    w->wire_items = NULL;
    w->hashes = NULL;
    pd_worker_held_cleanup(&w->held);
}

void pd_worker_kv_event(pd_worker_t *w, pd_proto_event_kind_t kind, pd_proto_tier_t tier,
                        uint64_t hash)
{
    if (kind == PD_PROTO_EVENT_REMOVED)
        pd_worker_held_del(&w->held, hash);
    else
        pd_worker_held_set(&w->held, hash, tier);

    pd_worker_item_t *last = w->n_items > 0 ? &w->items[w->n_items - 1] : NULL;
    bool extend = last != NULL && last->kind == kind && last->tier == tier &&
                  last->n < PD_PROTO_MAX_EVENT_HASHES;
    if (!extend && w->n_items == PD_PROTO_MAX_EVENTS)
        pd_worker_events_flush(w);
    if (w->n_hashes == w->hashes_cap) {
        uint64_t *h = realloc(w->hashes, 2 * (size_t)w->hashes_cap * sizeof(*h));
        if (h == NULL) {
            pd_log_error("worker: out of memory for KV events; flushing early");
            pd_worker_events_flush(w);
        } else {
            w->hashes = h;
            w->hashes_cap *= 2;
        }
    }
    if (!extend || w->n_items == 0) {
        if (w->n_items == w->items_cap) {
            uint32_t cap = w->items_cap * 2;
            pd_worker_item_t *it = realloc(w->items, cap * sizeof(*it));
            if (it != NULL)
                w->items = it;
            pd_proto_kv_event_item_t *wi = realloc(w->wire_items, cap * sizeof(*wi));
            if (wi != NULL)
                w->wire_items = wi;
            if (it == NULL || wi == NULL) {
                pd_log_error("worker: out of memory for KV events; flushing early");
                pd_worker_events_flush(w);
            } else {
                w->items_cap = cap;
            }
        }
        pd_worker_item_t *it = &w->items[w->n_items++];
        it->kind = kind;
        it->tier = tier;
        it->first = w->n_hashes;
        it->n = 0;
    }
    w->hashes[w->n_hashes++] = hash;
    w->items[w->n_items - 1].n++;
}

void pd_worker_events_flush(pd_worker_t *w)
{
    if (w->n_items == 0)
        return;
    for (uint32_t i = 0; i < w->n_items; i++) {
        w->wire_items[i].kind = w->items[i].kind;
        w->wire_items[i].tier = w->items[i].tier;
        w->wire_items[i].hashes = w->hashes + w->items[i].first;
        w->wire_items[i].n_hashes = w->items[i].n;
    }
    pd_proto_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PD_PROTO_TYPE_KV_EVENT;
    pd_proto_kv_event_t *ev = &msg.u.kv_event;
    snprintf(ev->worker_id, sizeof(ev->worker_id), "%s", w->args.id);
    ev->epoch = w->epoch;
    ev->seq = ++w->seq;
    ev->events = w->wire_items;
    ev->n_events = w->n_items;
    pd_mp_writer_reset(&w->w_event);
    pd_status_t st = pd_proto_encode(&msg, &w->w_event);
    if (st != PD_OK) {
        pd_log_error("worker: cannot encode kv_event seq %llu: %s", (unsigned long long)ev->seq,
                     pd_status_str(st));
    } else if (zmq_send(w->pub, pd_mp_writer_data(&w->w_event), pd_mp_writer_size(&w->w_event),
                        ZMQ_DONTWAIT) < 0) {
        pd_log_warn("worker: kv_event seq %llu not sent: %s", (unsigned long long)ev->seq,
                    zmq_strerror(zmq_errno()));
    }
    w->n_items = 0;
    w->n_hashes = 0;
}

uint32_t pd_worker_held_count(const pd_worker_t *w, pd_proto_tier_t tier)
{
    if ((int)tier < 0 || tier >= PD_PROTO_N_TIERS)
        return 0;
    return w->held.n_tier[tier];
}

void pd_worker_snapshot_send(pd_worker_t *w)
{
    pd_worker_events_flush(w);
    pd_proto_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PD_PROTO_TYPE_KV_SNAPSHOT;
    pd_proto_kv_snapshot_t *s = &msg.u.kv_snapshot;
    snprintf(s->worker_id, sizeof(s->worker_id), "%s", w->args.id);
    s->epoch = w->epoch;
    s->seq = w->seq;
    uint64_t *per_tier[PD_PROTO_N_TIERS] = {NULL};
    bool ok = true;
    for (int t = 0; t < PD_PROTO_N_TIERS; t++) {
        uint32_t n = w->held.n_tier[t];
        if (n > PD_PROTO_MAX_SNAPSHOT_HASHES)
            n = PD_PROTO_MAX_SNAPSHOT_HASHES;
        per_tier[t] = malloc(((size_t)n + 1) * sizeof(uint64_t));
        if (per_tier[t] == NULL) {
            ok = false;
            break;
        }
        s->hashes[t] = per_tier[t];
    }
    if (ok) {
        for (uint32_t i = 0; i < w->held.cap; i++) {
            if (w->held.tiers[i] == 0)
                continue;
            int t = w->held.tiers[i] - 1;
            if (s->n_hashes[t] < PD_PROTO_MAX_SNAPSHOT_HASHES)
                per_tier[t][s->n_hashes[t]++] = w->held.keys[i];
        }
        pd_status_t st = pd_worker_send(w, &msg);
        if (st != PD_OK)
            pd_log_error("worker: kv_snapshot not sent: %s", pd_status_str(st));
        else
            pd_log_info("worker: kv_snapshot seq %llu: %u/%u/%u hashes (G1/G2/G3)",
                        (unsigned long long)s->seq, s->n_hashes[0], s->n_hashes[1], s->n_hashes[2]);
    } else {
        pd_log_error("worker: out of memory building kv_snapshot");
    }
    for (int t = 0; t < PD_PROTO_N_TIERS; t++)
        free(per_tier[t]);
}
