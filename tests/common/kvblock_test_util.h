/* Helpers of the block manager tests: a clock the tests move by hand, every event in order,
 * a small layout, and a hash chain per tenant. */
#ifndef PD_TEST_KVBLOCK_UTIL_H
#define PD_TEST_KVBLOCK_UTIL_H

#include "pd/hash.h"
#include "pd/kvblock.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A clock the tests move by hand. */
static uint64_t test_now_ms;
static inline uint64_t test_clock(void *arg)
{
    (void)arg;
    return test_now_ms;
}

/* Every event, in order. */
#define MAX_EVENTS 4096
static pd_kvbm_event_t events[MAX_EVENTS];
static size_t n_events;
static inline void record_event(void *arg, const pd_kvbm_event_t *ev)
{
    (void)arg;
    if (n_events < MAX_EVENTS)
        events[n_events] = *ev;
    n_events++;
}

static inline size_t count_events(pd_kvbm_event_kind_t kind, pd_kv_tier_t tier,
                                  pd_block_hash_t hash)
{
    size_t n = 0;
    for (size_t i = 0; i < n_events && i < MAX_EVENTS; i++)
        n += events[i].kind == kind && events[i].tier == tier && events[i].hash == hash;
    return n;
}

static inline pd_kv_layout_t small_layout(uint32_t n_blocks)
{
    pd_kv_layout_t l = {
        .n_layers = 3, .n_kv_heads = 2, .head_dim = 4, .block_tokens = 4, .n_blocks = n_blocks};
    return l;
}

static inline pd_kvbm_config_t base_config(uint32_t n_blocks)
{
    pd_kvbm_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.layout = small_layout(n_blocks);
    cfg.clock_ms = test_clock;
    cfg.on_event = record_event;
    cfg.model_id = "tiny/model";
    test_now_ms = 1000;
    n_events = 0;
    return cfg;
}

static inline pd_kvbm_t *make(const pd_kvbm_config_t *cfg)
{
    pd_kvbm_t *bm = NULL;
    cr_assert_eq(pd_kvbm_create(cfg, &bm), PD_OK);
    cr_assert_not_null(bm);
    return bm;
}

static inline pd_kvbm_stats_t stats_of(const pd_kvbm_t *bm)
{
    pd_kvbm_stats_t st;
    pd_kvbm_stats(bm, &st);
    cr_assert_eq(st.n_free + st.n_reserved + st.n_evictable, st.n_blocks);
    return st;
}

static inline void assert_nothing_reserved(const pd_kvbm_t *bm)
{
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_reserved, 0, "%u blocks still reserved", st.n_reserved);
    cr_assert_eq(st.n_pinned, 0);
    for (uint32_t b = 0; b < st.n_blocks; b++)
        cr_assert_eq(pd_kvbm_refcount(bm, b), 0);
}

/* Commit ids[i] under hashes[i] with the given retention. */
static inline void commit_all(pd_kvbm_t *bm, const uint32_t *ids, const pd_block_hash_t *hashes,
                              size_t n, uint64_t retention_ms)
{
    for (size_t i = 0; i < n; i++) {
        int stored = -1;
        cr_assert_eq(pd_kvbm_commit(bm, ids[i], hashes[i], retention_ms, &stored), PD_OK);
        cr_assert_eq(stored, 1);
    }
}

static inline void chain(const char *tenant, size_t n_blocks, pd_block_hash_t *hashes_p)
{
    int32_t toks[64 * 4];
    cr_assert_leq(n_blocks, 64);
    for (size_t i = 0; i < n_blocks * 4; i++)
        toks[i] = (int32_t)(i * 31 + 7);
    pd_block_hash_t root = pd_block_hash_root(tenant, "tiny/model");
    cr_assert_eq(pd_block_hash_chain(root, toks, n_blocks * 4, 4, hashes_p, n_blocks), n_blocks);
}

#endif
