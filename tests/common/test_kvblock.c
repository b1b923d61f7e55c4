/* The block manager in one tier: all-or-nothing allocation, refcounts, prefix lookup,
 * eviction order, retention and tenant isolation. */
#include "kvblock_test_util.h"

Test(kvblock, rejects_bad_config)
{
    pd_kvbm_config_t cfg = base_config(0);
    pd_kvbm_t *bm = (pd_kvbm_t *)&cfg; /* must stay untouched */
    cr_assert_eq(pd_kvbm_create(&cfg, &bm), PD_ERR_INVALID_PARAM);
    cr_assert_eq(bm, (pd_kvbm_t *)&cfg);
    cfg = base_config(4);
    cfg.n_host_blocks = 2; /* tiers need the pool's memory */
    cr_assert_eq(pd_kvbm_create(&cfg, &bm), PD_ERR_INVALID_PARAM);
    pd_kvbm_destroy(NULL);
    bm = NULL;
    pd_kvbm_destroy(&bm);
}

Test(kvblock, alloc_is_all_or_nothing)
{
    pd_kvbm_config_t cfg = base_config(8);
    pd_kvbm_t *bm = make(&cfg);
    uint32_t a[8], b[8], c[8];
    cr_assert_eq(pd_kvbm_alloc(bm, 5, a), PD_OK);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(pd_kvbm_refcount(bm, a[i]), 1);
    memset(b, 0xee, sizeof(b));
    cr_assert_eq(pd_kvbm_alloc(bm, 4, b), PD_ERR_NO_RESOURCE);
    cr_assert_eq(b[0], 0xeeeeeeeeu, "output written on failure");
    cr_assert_eq(stats_of(bm).n_free, 3);
    cr_assert_eq(pd_kvbm_alloc(bm, 3, b), PD_OK);
    cr_assert_eq(pd_kvbm_alloc(bm, 1, c), PD_ERR_NO_RESOURCE);
    cr_assert_eq(pd_kvbm_alloc(bm, 0, c), PD_OK);
    /* Every id handed out once. */
    int seen[8] = {0};
    for (int i = 0; i < 5; i++)
        seen[a[i]]++;
    for (int i = 0; i < 3; i++)
        seen[b[i]]++;
    for (int i = 0; i < 8; i++)
        cr_assert_eq(seen[i], 1);
    cr_assert_eq(stats_of(bm).n_reserved, 8);
    cr_assert_eq(pd_kvbm_release(bm, a, 5), PD_OK);
    cr_assert_eq(pd_kvbm_release(bm, b, 3), PD_OK);
    assert_nothing_reserved(bm);
    cr_assert_eq(stats_of(bm).n_free, 8);
    cr_assert_eq(n_events, 0, "uncommitted blocks make no events");
    pd_kvbm_destroy(&bm);
    cr_assert_null(bm);
}

Test(kvblock, refcounts_and_release)
{
    pd_kvbm_config_t cfg = base_config(4);
    pd_kvbm_t *bm = make(&cfg);
    uint32_t id;
    cr_assert_eq(pd_kvbm_alloc(bm, 1, &id), PD_OK);
    cr_assert_eq(pd_kvbm_retain(bm, &id, 1), PD_OK);
    cr_assert_eq(pd_kvbm_refcount(bm, id), 2);
    cr_assert_eq(pd_kvbm_release(bm, &id, 1), PD_OK);
    cr_assert_eq(pd_kvbm_refcount(bm, id), 1);
    cr_assert_eq(stats_of(bm).n_reserved, 1);
    cr_assert_eq(pd_kvbm_release(bm, &id, 1), PD_OK);
    cr_assert_eq(stats_of(bm).n_free, 4);
    /* Double release and bad ids are refused, and change nothing. */
    cr_assert_eq(pd_kvbm_release(bm, &id, 1), PD_ERR_INVALID_PARAM);
    uint32_t bad[2] = {99, PD_KVBM_NO_BLOCK};
    cr_assert_eq(pd_kvbm_release(bm, bad, 2), PD_ERR_INVALID_PARAM);
    cr_assert_eq(pd_kvbm_retain(bm, &id, 1), PD_ERR_INVALID_PARAM);
    cr_assert_eq(pd_kvbm_commit(bm, id, 42, 0, NULL), PD_ERR_INVALID_PARAM);
    cr_assert_eq(stats_of(bm).n_free, 4);
    /* NO_BLOCK entries are skipped. */
    uint32_t none = PD_KVBM_NO_BLOCK;
    cr_assert_eq(pd_kvbm_release(bm, &none, 1), PD_OK);
    assert_nothing_reserved(bm);
    pd_kvbm_destroy(&bm);
}

Test(kvblock, longest_prefix_and_perforated_lookup)
{
    pd_kvbm_config_t cfg = base_config(16);
    pd_kvbm_t *bm = make(&cfg);
    pd_block_hash_t h[6];
    chain("alice", 6, h);
    uint32_t ids[6];
    cr_assert_eq(pd_kvbm_alloc(bm, 6, ids), PD_OK);
    /* Blocks 0, 1, 2 and 4 are valid; 3 and 5 never arrived. */
    size_t order[4] = {0, 1, 2, 4};
    for (int k = 0; k < 4; k++)
        cr_assert_eq(pd_kvbm_commit(bm, ids[order[k]], h[order[k]], 0, NULL), PD_OK);
    cr_assert_eq(count_events(PD_KVBM_EVENT_STORED, PD_KV_TIER_G1, h[4]), 1);
    cr_assert_eq(count_events(PD_KVBM_EVENT_STORED, PD_KV_TIER_G1, h[3]), 0);
    cr_assert_eq(pd_kvbm_release(bm, ids, 6), PD_OK);
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_cached, 4);
    cr_assert_eq(st.n_evictable, 4);
    cr_assert_eq(st.n_free, 12);

    uint32_t got[6];
    size_t n_hit = 99;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, h, 6, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(got[i], ids[i]);
        cr_assert_eq(pd_kvbm_refcount(bm, got[i]), 1);
    }
    cr_assert_eq(pd_kvbm_refcount(bm, ids[4]), 0, "a block past the hole is not pinned");
    st = stats_of(bm);
    cr_assert_eq(st.n_pinned, 3);
    cr_assert_eq(st.n_hits, 3);
    cr_assert_eq(st.n_misses, 3);
    cr_assert_eq(pd_kvbm_release(bm, got, n_hit), PD_OK);

    cr_assert_eq(pd_kvbm_lookup_each(bm, h, 6, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 4);
    uint32_t want[6] = {ids[0], ids[1], ids[2], PD_KVBM_NO_BLOCK, ids[4], PD_KVBM_NO_BLOCK};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(got[i], want[i], "index %d", i);
    cr_assert_eq(pd_kvbm_release(bm, got, 6), PD_OK);

    uint8_t tiers[6];
    size_t n_prefix = 0;
    cr_assert_eq(pd_kvbm_probe(bm, h, 6, tiers, &n_prefix), PD_OK);
    cr_assert_eq(n_prefix, 3);
    uint8_t want_t[6] = {1, 1, 1, 0, 1, 0};
    cr_assert_arr_eq(tiers, want_t, 6);
    pd_block_hash_t hh = 0;
    cr_assert_eq(pd_kvbm_block_hash(bm, ids[4], &hh), PD_OK);
    cr_assert_eq(hh, h[4]);
    cr_assert_eq(pd_kvbm_block_hash(bm, ids[3], &hh), PD_ERR_NOT_FOUND);
    /* An empty chain is a zero-length hit. */
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, h, 0, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 0);
    assert_nothing_reserved(bm);
    pd_kvbm_destroy(&bm);
}

Test(kvblock, duplicate_commit_keeps_one_and_frees_the_other)
{
    pd_kvbm_config_t cfg = base_config(4);
    pd_kvbm_t *bm = make(&cfg);
    uint32_t a, b;
    cr_assert_eq(pd_kvbm_alloc(bm, 1, &a), PD_OK);
    cr_assert_eq(pd_kvbm_alloc(bm, 1, &b), PD_OK);
    int stored = -1;
    cr_assert_eq(pd_kvbm_commit(bm, a, 77, 0, &stored), PD_OK);
    cr_assert_eq(stored, 1);
    cr_assert_eq(pd_kvbm_commit(bm, b, 77, 0, &stored), PD_OK);
    cr_assert_eq(stored, 0);
    /* Committing again under the same hash is harmless; under another is refused. */
    cr_assert_eq(pd_kvbm_commit(bm, a, 77, 0, &stored), PD_OK);
    cr_assert_eq(stored, 0);
    cr_assert_eq(pd_kvbm_commit(bm, a, 78, 0, &stored), PD_ERR_INVALID_PARAM);
    cr_assert_eq(pd_kvbm_release(bm, &a, 1), PD_OK);
    cr_assert_eq(pd_kvbm_release(bm, &b, 1), PD_OK);
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_cached, 1);
    cr_assert_eq(st.n_free, 3, "the duplicate went back to free");
    cr_assert_eq(st.n_stored, 1);
    cr_assert_eq(st.n_duplicates, 1);
    pd_block_hash_t h = 77;
    uint32_t got;
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, &h, 1, &got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 1);
    cr_assert_eq(got, a);
    cr_assert_eq(pd_kvbm_release(bm, &got, 1), PD_OK);
    cr_assert_eq(count_events(PD_KVBM_EVENT_STORED, PD_KV_TIER_G1, 77), 1);
    assert_nothing_reserved(bm);
    pd_kvbm_destroy(&bm);
}

Test(kvblock, pinned_blocks_are_never_evicted_under_pressure)
{
    pd_kvbm_config_t cfg = base_config(8);
    pd_kvbm_t *bm = make(&cfg);
    pd_block_hash_t h[8];
    chain("t", 8, h);
    uint32_t ids[8];
    cr_assert_eq(pd_kvbm_alloc(bm, 8, ids), PD_OK);
    commit_all(bm, ids, h, 8, 0);
    uint32_t pinned[4];
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, h, 4, pinned, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 4);
    cr_assert_eq(pd_kvbm_release(bm, ids, 8), PD_OK);
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_pinned, 4);
    cr_assert_eq(st.n_evictable, 4);
    cr_assert_eq(st.n_free, 0);

    uint32_t got[8];
    cr_assert_eq(pd_kvbm_alloc(bm, 5, got), PD_ERR_NO_RESOURCE);
    cr_assert_eq(stats_of(bm).n_evictable, 4, "a refused alloc evicts nothing");
    /* Churn: many requests come and go through the 4 unpinned blocks. */
    srand(7);
    for (int round = 0; round < 500; round++) {
        size_t n = 1 + (size_t)(rand() % 4);
        cr_assert_eq(pd_kvbm_alloc(bm, n, got), PD_OK);
        for (size_t i = 0; i < n; i++) {
            for (int k = 0; k < 4; k++)
                cr_assert_neq(got[i], pinned[k], "a pinned block was handed out");
            cr_assert_eq(pd_kvbm_commit(bm, got[i], 1000000u + (uint64_t)round * 8 + i, 0, NULL),
                         PD_OK);
        }
        cr_assert_eq(pd_kvbm_alloc(bm, 5, got + n), PD_ERR_NO_RESOURCE);
        cr_assert_eq(pd_kvbm_release(bm, got, n), PD_OK);
    }
    for (int k = 0; k < 4; k++) {
        pd_block_hash_t hh;
        cr_assert_eq(pd_kvbm_refcount(bm, pinned[k]), 1);
        cr_assert_eq(pd_kvbm_block_hash(bm, pinned[k], &hh), PD_OK);
        cr_assert_eq(hh, h[k]);
        cr_assert_eq(count_events(PD_KVBM_EVENT_REMOVED, PD_KV_TIER_G1, h[k]), 0);
    }
    for (int k = 4; k < 8; k++)
        cr_assert_eq(count_events(PD_KVBM_EVENT_REMOVED, PD_KV_TIER_G1, h[k]), 1);
    size_t n_prefix;
    cr_assert_eq(pd_kvbm_probe(bm, h, 8, NULL, &n_prefix), PD_OK);
    cr_assert_eq(n_prefix, 4);
    cr_assert_eq(pd_kvbm_release(bm, pinned, 4), PD_OK);
    assert_nothing_reserved(bm);
    cr_assert_gt(stats_of(bm).n_evictions, 500);
    pd_kvbm_destroy(&bm);
}

Test(kvblock, evicts_least_recently_used_first)
{
    pd_kvbm_config_t cfg = base_config(4);
    pd_kvbm_t *bm = make(&cfg);
    pd_block_hash_t h[4] = {10, 11, 12, 13};
    uint32_t ids[4];
    cr_assert_eq(pd_kvbm_alloc(bm, 4, ids), PD_OK);
    commit_all(bm, ids, h, 4, 0);
    /* Released in the order 2, 0, 3, 1. */
    int rel[4] = {2, 0, 3, 1};
    for (int k = 0; k < 4; k++)
        cr_assert_eq(pd_kvbm_release(bm, &ids[rel[k]], 1), PD_OK);
    /* A read of 2 makes it the most recent: order 0, 3, 1, 2. */
    uint32_t got;
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, &h[2], 1, &got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 1);
    cr_assert_eq(pd_kvbm_release(bm, &got, 1), PD_OK);
    n_events = 0;
    uint32_t fresh[2];
    cr_assert_eq(pd_kvbm_alloc(bm, 2, fresh), PD_OK);
    cr_assert_eq(n_events, 2);
    cr_assert_eq(events[0].kind, PD_KVBM_EVENT_REMOVED);
    cr_assert_eq(events[0].hash, 10);
    cr_assert_eq(events[1].hash, 13);
    cr_assert_eq(fresh[0], ids[0]);
    cr_assert_eq(fresh[1], ids[3]);
    uint8_t tiers[4];
    cr_assert_eq(pd_kvbm_probe(bm, h, 4, tiers, NULL), PD_OK);
    uint8_t want[4] = {0, 1, 1, 0};
    cr_assert_arr_eq(tiers, want, 4);
    cr_assert_eq(pd_kvbm_release(bm, fresh, 2), PD_OK);
    assert_nothing_reserved(bm);
    pd_kvbm_destroy(&bm);
}

Test(kvblock, retention_expires_and_reads_refresh_it)
{
    pd_kvbm_config_t cfg = base_config(8);
    pd_kvbm_t *bm = make(&cfg);
    const uint64_t m5 = PD_KVBM_RETENTION_DEFAULT_MS, h1 = PD_KVBM_RETENTION_EXTENDED_MS;
    uint32_t ids[4];
    cr_assert_eq(pd_kvbm_alloc(bm, 4, ids), PD_OK);
    cr_assert_eq(pd_kvbm_commit(bm, ids[0], 100, 0, NULL), PD_OK); /* default: 5 min */
    cr_assert_eq(pd_kvbm_commit(bm, ids[1], 101, h1, NULL), PD_OK);
    cr_assert_eq(pd_kvbm_commit(bm, ids[2], 102, h1, NULL), PD_OK);
    /* Committed again with 5 min: the longer (1 h) wins. */
    cr_assert_eq(pd_kvbm_commit(bm, ids[2], 102, m5, NULL), PD_OK);
    cr_assert_eq(pd_kvbm_commit(bm, ids[3], 103, 0, NULL), PD_OK);
    cr_assert_eq(pd_kvbm_release(bm, ids, 3), PD_OK); /* 103 stays pinned */
    uint64_t t0 = test_now_ms;

    /* Just before 5 min, a read of 100 restarts its clock. */
    test_now_ms = t0 + m5 - 1;
    pd_block_hash_t q = 100;
    uint32_t got;
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, &q, 1, &got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 1);
    cr_assert_eq(pd_kvbm_release(bm, &got, 1), PD_OK);
    test_now_ms = t0 + 2 * m5 - 2;
    cr_assert_eq(pd_kvbm_expire(bm), 0);
    pd_block_hash_t all[4] = {100, 101, 102, 103};
    size_t n_prefix;
    cr_assert_eq(pd_kvbm_probe(bm, all, 4, NULL, &n_prefix), PD_OK);
    cr_assert_eq(n_prefix, 4);
    /* At its refreshed expiry the sweep drops 100 only. */
    test_now_ms = t0 + 2 * m5 - 1;
    n_events = 0;
    cr_assert_eq(pd_kvbm_expire(bm), 1);
    cr_assert_eq(n_events, 1);
    cr_assert_eq(events[0].kind, PD_KVBM_EVENT_REMOVED);
    cr_assert_eq(events[0].hash, 100);
    cr_assert_eq(stats_of(bm).n_expired, 1);
    /* After an hour 101 is dropped when looked up (no sweep), 102 kept 1 h, and the pinned
     * 103 never expires. */
    test_now_ms = t0 + h1;
    q = 101;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, &q, 1, &got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 0);
    cr_assert_eq(count_events(PD_KVBM_EVENT_REMOVED, PD_KV_TIER_G1, 101), 1);
    uint8_t tiers[4];
    cr_assert_eq(pd_kvbm_probe(bm, all, 4, tiers, NULL), PD_OK);
    uint8_t want[4] = {0, 0, 0, 1};
    cr_assert_arr_eq(tiers, want, 4);
    test_now_ms = t0 + 10 * h1;
    cr_assert_eq(pd_kvbm_expire(bm), 0);
    cr_assert_eq(pd_kvbm_block_hash(bm, ids[3], &q), PD_OK);
    /* Released, 103's clock starts now. */
    cr_assert_eq(pd_kvbm_release(bm, &ids[3], 1), PD_OK);
    test_now_ms += m5 - 1;
    cr_assert_eq(pd_kvbm_expire(bm), 0);
    test_now_ms += 1;
    cr_assert_eq(pd_kvbm_expire(bm), 1);
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_cached, 0);
    cr_assert_eq(st.n_free, 8);
    pd_kvbm_destroy(&bm);
}

Test(kvblock, tenants_never_hit_each_others_blocks)
{
    pd_kvbm_config_t cfg = base_config(16);
    pd_kvbm_t *bm = make(&cfg);
    pd_block_hash_t ha[4], hb[4];
    chain("alice", 4, ha); /* the same tokens */
    chain("bob", 4, hb);
    uint32_t ids[4];
    cr_assert_eq(pd_kvbm_alloc(bm, 4, ids), PD_OK);
    commit_all(bm, ids, ha, 4, 0);
    cr_assert_eq(pd_kvbm_release(bm, ids, 4), PD_OK);
    uint32_t got[4];
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_each(bm, hb, 4, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 0);
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, ha, 4, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 4);
    cr_assert_eq(pd_kvbm_release(bm, got, 4), PD_OK);
    assert_nothing_reserved(bm);
    pd_kvbm_destroy(&bm);
}
