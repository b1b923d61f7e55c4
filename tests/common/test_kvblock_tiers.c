/* The block manager's tiers: offload down G2 host memory and G3 SSD files, bring back exact
 * bytes, checksums, retention and the sweep of stale directories. */
#include "kvblock_test_util.h"

/* A real float pool and a real directory for the tier tests. */
typedef struct tiered {
    pd_kvbm_config_t cfg;
    float *pool; /* (n_layers, n_blocks, 2, B, kvh, hd) f32 */
    char dir[64];
} tiered_t;

static void tiered_init(tiered_t *t, uint32_t n_blocks, uint32_t n_host, uint32_t n_disk)
{
    t->cfg = base_config(n_blocks);
    t->pool = calloc(1, pd_kv_pool_bytes(&t->cfg.layout));
    cr_assert_not_null(t->pool);
    strcpy(t->dir, "/tmp/pd_kvbm_XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir));
    t->cfg.pool_base = t->pool;
    t->cfg.n_host_blocks = n_host;
    t->cfg.disk_dir = (n_disk > 0) ? t->dir : NULL;
    t->cfg.n_disk_blocks = n_disk;
}

static size_t dir_count(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void tiered_cleanup(tiered_t *t)
{
    cr_assert_eq(dir_count(t->dir), 0, "block files left behind");
    cr_assert_eq(rmdir(t->dir), 0);
    free(t->pool);
}

/* Value of element i of a block whose content is a function of its hash, so that any
 * bring-back can be checked against it. */
static float content(pd_block_hash_t h, size_t i)
{
    return (float)((h >> 8) % 100000) + (float)i * 0.25f;
}

static void fill_block(const tiered_t *t, uint32_t b, pd_block_hash_t h)
{
    const pd_kv_layout_t *l = &t->cfg.layout;
    size_t per_layer = pd_kv_block_layer_bytes(l) / sizeof(float);
    for (uint32_t layer = 0; layer < l->n_layers; layer++) {
        float *p = (float *)((char *)t->pool + pd_kv_offset(l, layer, b));
        for (size_t i = 0; i < per_layer; i++)
            p[i] = content(h, layer * per_layer + i);
    }
}

static int block_matches(const tiered_t *t, uint32_t b, pd_block_hash_t h)
{
    const pd_kv_layout_t *l = &t->cfg.layout;
    size_t per_layer = pd_kv_block_layer_bytes(l) / sizeof(float);
    for (uint32_t layer = 0; layer < l->n_layers; layer++) {
        const float *p = (const float *)((char *)t->pool + pd_kv_offset(l, layer, b));
        for (size_t i = 0; i < per_layer; i++)
            if (p[i] != content(h, layer * per_layer + i))
                return 0;
    }
    return 1;
}

static void scribble(tiered_t *t, const uint32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fill_block(t, ids[i], 0xdeadbeefull + i);
}

Test(kvblock, offloads_down_the_tiers_and_brings_back_exact_bytes)
{
    tiered_t t;
    tiered_init(&t, 4, 2, 4);
    pd_kvbm_t *bm = make(&t.cfg);
    pd_block_hash_t h[4];
    chain("alice", 4, h);
    uint32_t ids[4];
    cr_assert_eq(pd_kvbm_alloc(bm, 4, ids), PD_OK);
    for (int i = 0; i < 4; i++)
        fill_block(&t, ids[i], h[i]);
    commit_all(bm, ids, h, 4, 0);
    cr_assert_eq(pd_kvbm_release(bm, ids, 4), PD_OK);

    /* Another request takes the whole pool: h0, h1 go to G2, then h2, h3 push them on to
     * G3. */
    n_events = 0;
    uint32_t other[4];
    cr_assert_eq(pd_kvbm_alloc(bm, 4, other), PD_OK);
    scribble(&t, other, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(count_events(PD_KVBM_EVENT_TIER_CHANGED, PD_KV_TIER_G2, h[i]), 1);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(count_events(PD_KVBM_EVENT_TIER_CHANGED, PD_KV_TIER_G3, h[i]), 1);
    cr_assert_eq(count_events(PD_KVBM_EVENT_REMOVED, PD_KV_TIER_G1, h[0]), 0);
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_host_cached, 2);
    cr_assert_eq(st.n_disk_cached, 2);
    cr_assert_eq(st.n_cached, 0);
    cr_assert_eq(st.n_offloads, 6);
    cr_assert_eq(dir_count(pd_kvbm_disk_dir(bm)), 2);
    uint8_t tiers[4];
    cr_assert_eq(pd_kvbm_probe(bm, h, 4, tiers, NULL), PD_OK);
    uint8_t want[4] = {3, 3, 2, 2};
    cr_assert_arr_eq(tiers, want, 4);
    cr_assert_eq(pd_kvbm_release(bm, other, 4), PD_OK);

    /* The prefix comes back into G1 with every byte intact. */
    uint32_t got[4];
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, h, 4, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert(block_matches(&t, got[i], h[i]), "block %d differs after bring-back", i);
        cr_assert_eq(pd_kvbm_refcount(bm, got[i]), 1);
        cr_assert_eq(count_events(PD_KVBM_EVENT_TIER_CHANGED, PD_KV_TIER_G1, h[i]), 1);
    }
    st = stats_of(bm);
    cr_assert_eq(st.n_hits_host, 2);
    cr_assert_eq(st.n_hits_disk, 2);
    cr_assert_eq(st.n_host_cached, 0);
    cr_assert_eq(st.n_disk_cached, 0);
    cr_assert_eq(st.n_pinned, 4);
    cr_assert_eq(dir_count(pd_kvbm_disk_dir(bm)), 0);
    cr_assert_eq(pd_kvbm_release(bm, got, 4), PD_OK);
    assert_nothing_reserved(bm);
    pd_kvbm_destroy(&bm);
    tiered_cleanup(&t);
}

Test(kvblock, bring_back_makes_room_without_losing_the_prefix)
{
    /* G1 of 2 blocks, a chain of 4 spread over G2 and G3: the lookup can pin only 2. */
    tiered_t t;
    tiered_init(&t, 2, 1, 4);
    pd_kvbm_t *bm = make(&t.cfg);
    pd_block_hash_t h[4];
    chain("alice", 4, h);
    for (int i = 0; i < 4; i++) {
        uint32_t id;
        cr_assert_eq(pd_kvbm_alloc(bm, 1, &id), PD_OK);
        fill_block(&t, id, h[i]);
        cr_assert_eq(pd_kvbm_commit(bm, id, h[i], 0, NULL), PD_OK);
        cr_assert_eq(pd_kvbm_release(bm, &id, 1), PD_OK);
    }
    size_t n_prefix;
    cr_assert_eq(pd_kvbm_probe(bm, h, 4, NULL, &n_prefix), PD_OK);
    cr_assert_eq(n_prefix, 4);
    uint32_t got[4];
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, h, 4, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 2);
    for (int i = 0; i < 2; i++)
        cr_assert(block_matches(&t, got[i], h[i]));
    /* Nothing was lost: the other two are still held below G1. */
    cr_assert_eq(pd_kvbm_probe(bm, h, 4, NULL, &n_prefix), PD_OK);
    cr_assert_eq(n_prefix, 4);
    cr_assert_eq(pd_kvbm_release(bm, got, 2), PD_OK);
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, h + 2, 2, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 2);
    for (int i = 0; i < 2; i++)
        cr_assert(block_matches(&t, got[i], h[2 + i]));
    cr_assert_eq(pd_kvbm_release(bm, got, 2), PD_OK);
    assert_nothing_reserved(bm);
    pd_kvbm_destroy(&bm);
    cr_assert_eq(dir_count(t.dir), 0, "destroy deletes the files it wrote");
    tiered_cleanup(&t);
}

static char *file_of(const pd_kvbm_t *bm, pd_block_hash_t h, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%016llx-tiny_model.kvblk", pd_kvbm_disk_dir(bm), (unsigned long long)h);
    return buf;
}

Test(kvblock, corrupt_ssd_file_is_a_miss_and_is_deleted)
{
    tiered_t t;
    tiered_init(&t, 2, 0, 4);
    pd_kvbm_t *bm = make(&t.cfg);
    pd_block_hash_t h[3];
    chain("alice", 3, h);
    uint32_t ids[2];
    cr_assert_eq(pd_kvbm_alloc(bm, 2, ids), PD_OK);
    fill_block(&t, ids[0], h[0]);
    fill_block(&t, ids[1], h[1]);
    commit_all(bm, ids, h, 2, 0);
    cr_assert_eq(pd_kvbm_release(bm, ids, 2), PD_OK);
    uint32_t other[2];
    cr_assert_eq(pd_kvbm_alloc(bm, 2, other), PD_OK); /* both go straight to G3 */
    scribble(&t, other, 2);
    cr_assert_eq(pd_kvbm_release(bm, other, 2), PD_OK);
    cr_assert_eq(stats_of(bm).n_disk_cached, 2);

    /* Flip one payload byte of h0's file. */
    char path[256];
    file_of(bm, h[0], path, sizeof(path));
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "no file %s", path);
    unsigned char byte;
    cr_assert_eq(pread(fd, &byte, 1, 100), 1);
    byte ^= 0x01;
    cr_assert_eq(pwrite(fd, &byte, 1, 100), 1);
    close(fd);

    n_events = 0;
    uint32_t got[2];
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, h, 2, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 0);
    cr_assert_eq(count_events(PD_KVBM_EVENT_REMOVED, PD_KV_TIER_G3, h[0]), 1);
    cr_assert_eq(access(path, F_OK), -1, "corrupt file kept");
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_corrupt, 1);
    cr_assert_eq(st.n_disk_cached, 1);
    /* The block after it still verifies: a perforated prefix. */
    cr_assert_eq(pd_kvbm_lookup_each(bm, h, 2, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 1);
    cr_assert_eq(got[0], PD_KVBM_NO_BLOCK);
    cr_assert(block_matches(&t, got[1], h[1]));
    cr_assert_eq(pd_kvbm_release(bm, got, 2), PD_OK);

    /* A truncated file is a miss too. */
    uint32_t id;
    cr_assert_eq(pd_kvbm_alloc(bm, 1, &id), PD_OK);
    cr_assert_eq(pd_kvbm_commit(bm, id, h[2], 0, NULL), PD_OK);
    cr_assert_eq(pd_kvbm_release(bm, &id, 1), PD_OK);
    cr_assert_eq(pd_kvbm_alloc(bm, 2, other), PD_OK);
    cr_assert_eq(pd_kvbm_release(bm, other, 2), PD_OK);
    cr_assert_eq(truncate(file_of(bm, h[2], path, sizeof(path)), 50), 0);
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, &h[2], 1, got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 0);
    cr_assert_eq(stats_of(bm).n_corrupt, 2);
    assert_nothing_reserved(bm);
    pd_kvbm_destroy(&bm);
    tiered_cleanup(&t);
}

Test(kvblock, expired_blocks_are_dropped_not_offloaded)
{
    tiered_t t;
    tiered_init(&t, 2, 2, 2);
    pd_kvbm_t *bm = make(&t.cfg);
    uint32_t ids[2];
    pd_block_hash_t h[2] = {500, 501};
    cr_assert_eq(pd_kvbm_alloc(bm, 2, ids), PD_OK);
    commit_all(bm, ids, h, 2, 0);
    cr_assert_eq(pd_kvbm_release(bm, ids, 2), PD_OK);
    test_now_ms += PD_KVBM_RETENTION_DEFAULT_MS;
    n_events = 0;
    cr_assert_eq(pd_kvbm_alloc(bm, 2, ids), PD_OK);
    cr_assert_eq(count_events(PD_KVBM_EVENT_REMOVED, PD_KV_TIER_G1, 500), 1);
    cr_assert_eq(count_events(PD_KVBM_EVENT_REMOVED, PD_KV_TIER_G1, 501), 1);
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_host_cached, 0);
    cr_assert_eq(st.n_offloads, 0);
    cr_assert_eq(st.n_expired, 2);
    cr_assert_eq(pd_kvbm_release(bm, ids, 2), PD_OK);
    pd_kvbm_destroy(&bm);
    tiered_cleanup(&t);
}

Test(kvblock, commit_over_a_lower_tier_copy_replaces_it)
{
    tiered_t t;
    tiered_init(&t, 1, 1, 0);
    pd_kvbm_t *bm = make(&t.cfg);
    uint32_t id;
    cr_assert_eq(pd_kvbm_alloc(bm, 1, &id), PD_OK);
    cr_assert_eq(pd_kvbm_commit(bm, id, 900, PD_KVBM_RETENTION_EXTENDED_MS, NULL), PD_OK);
    cr_assert_eq(pd_kvbm_release(bm, &id, 1), PD_OK);
    cr_assert_eq(pd_kvbm_alloc(bm, 1, &id), PD_OK); /* 900 moves to G2 */
    int stored = -1;
    cr_assert_eq(pd_kvbm_commit(bm, id, 900, 0, &stored), PD_OK);
    cr_assert_eq(stored, 0, "already held: not a cache creation");
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_host_cached, 0);
    cr_assert_eq(st.n_cached, 1);
    cr_assert_eq(pd_kvbm_release(bm, &id, 1), PD_OK);
    /* It kept the hour. */
    test_now_ms += PD_KVBM_RETENTION_DEFAULT_MS * 2;
    cr_assert_eq(pd_kvbm_expire(bm), 0);
    pd_kvbm_destroy(&bm);
    tiered_cleanup(&t);
}

/* Random operations against a model of what each hash holds; every bring-back is checked
 * byte for byte and the counts must add up after every step. */
Test(kvblock, random_operations_keep_the_books_straight)
{
    tiered_t t;
    tiered_init(&t, 16, 8, 8);
    pd_kvbm_t *bm = make(&t.cfg);
    enum { N_REQ = 6, MAX_BLK = 6 };
    uint32_t held[N_REQ][MAX_BLK];
    size_t n_held[N_REQ] = {0};
    srand(12345);
    for (int step = 0; step < 3000; step++) {
        int r = rand() % N_REQ;
        if (n_held[r] > 0) {
            cr_assert_eq(pd_kvbm_release(bm, held[r], n_held[r]), PD_OK);
            n_held[r] = 0;
            continue;
        }
        /* A request over one of 3 tenants' chains of up to 6 blocks. */
        pd_block_hash_t h[MAX_BLK];
        const char *tenants[3] = {"a", "b", "c"};
        size_t n = 1 + (size_t)(rand() % MAX_BLK);
        chain(tenants[rand() % 3], n, h);
        if (rand() % 4 == 0)
            h[rand() % n] ^= (uint64_t)rand(); /* a different middle block */
        uint32_t ids[MAX_BLK];
        size_t n_hit;
        cr_assert_eq(pd_kvbm_lookup_prefix(bm, h, n, ids, &n_hit), PD_OK);
        for (size_t i = 0; i < n_hit; i++)
            cr_assert(block_matches(&t, ids[i], h[i]), "step %d block %zu", step, i);
        if (pd_kvbm_alloc(bm, n - n_hit, ids + n_hit) == PD_OK) {
            for (size_t i = n_hit; i < n; i++) {
                fill_block(&t, ids[i], h[i]);
                cr_assert_eq(pd_kvbm_commit(bm, ids[i], h[i], (rand() % 2) ? 0 : 3600000, NULL),
                             PD_OK);
            }
            memcpy(held[r], ids, n * sizeof(ids[0]));
            n_held[r] = n;
        } else {
            cr_assert_eq(pd_kvbm_release(bm, ids, n_hit), PD_OK);
        }
        if (step % 97 == 0) {
            test_now_ms += 60000;
            pd_kvbm_expire(bm);
        }
        pd_kvbm_stats_t st = stats_of(bm);
        cr_assert_leq(st.n_pinned, st.n_reserved);
        cr_assert_leq(st.n_host_cached, 8);
        cr_assert_eq(dir_count(pd_kvbm_disk_dir(bm)), st.n_disk_cached);
    }
    for (int r = 0; r < N_REQ; r++)
        cr_assert_eq(pd_kvbm_release(bm, held[r], n_held[r]), PD_OK);
    assert_nothing_reserved(bm);
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_gt(st.n_hits_host, 0);
    cr_assert_gt(st.n_hits_disk, 0);
    cr_assert_gt(st.n_offloads, 0);
    pd_kvbm_destroy(&bm);
    tiered_cleanup(&t);
}

Test(kvblock, reserve_pins_the_prefix_and_allocates_the_rest_or_nothing)
{
    pd_kvbm_config_t cfg = base_config(8);
    pd_kvbm_t *bm = make(&cfg);
    pd_block_hash_t h[5];
    chain("alice", 5, h);
    uint32_t first[3];
    cr_assert_eq(pd_kvbm_alloc(bm, 3, first), PD_OK);
    commit_all(bm, first, h, 3, 0);
    cr_assert_eq(pd_kvbm_release(bm, first, 3), PD_OK);

    /* 5 full blocks + 1 partial/decode block: 3 hit, 3 fresh. */
    uint32_t ids[8];
    size_t n_hit = 99;
    cr_assert_eq(pd_kvbm_reserve(bm, h, 5, 6, ids, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 3);
    cr_assert_arr_eq(ids, first, sizeof(first));
    for (int i = 3; i < 6; i++) {
        cr_assert_eq(pd_kvbm_refcount(bm, ids[i]), 1);
        cr_assert_eq(pd_kvbm_block_hash(bm, ids[i], &h[0]), PD_ERR_NOT_FOUND);
    }
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_reserved, 6);
    cr_assert_eq(st.n_pinned, 3);

    /* A second request that does not fit gets nothing and leaves nothing pinned. */
    chain("alice", 5, h);
    uint32_t more[8];
    n_hit = 99;
    cr_assert_eq(pd_kvbm_reserve(bm, h, 5, 6, more, &n_hit), PD_ERR_NO_RESOURCE);
    cr_assert_eq(n_hit, 99);
    st = stats_of(bm);
    cr_assert_eq(st.n_reserved, 6);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pd_kvbm_refcount(bm, first[i]), 1);
    cr_assert_eq(pd_kvbm_reserve(bm, h, 5, 4, more, &n_hit), PD_ERR_INVALID_PARAM);
    cr_assert_eq(pd_kvbm_release(bm, ids, 6), PD_OK);
    assert_nothing_reserved(bm);
    pd_kvbm_destroy(&bm);
}

Test(kvblock, workers_sharing_a_directory_keep_apart_and_stale_dirs_are_swept)
{
    tiered_t t;
    tiered_init(&t, 1, 0, 2);
    /* A directory left by a process that is gone (pids never reach 999999999). */
    char stale[128], junk[200];
    snprintf(stale, sizeof(stale), "%s/kvbm-999999999-abcdef", t.dir);
    cr_assert_eq(mkdir(stale, 0700), 0);
    snprintf(junk, sizeof(junk), "%s/0123456789abcdef-m.kvblk", stale);
    FILE *f = fopen(junk, "w");
    cr_assert_not_null(f);
    fclose(f);

    pd_kvbm_t *a = make(&t.cfg);
    pd_kvbm_t *b = make(&t.cfg);
    cr_assert_eq(access(stale, F_OK), -1, "stale directory kept");
    cr_assert_str_neq(pd_kvbm_disk_dir(a), pd_kvbm_disk_dir(b));
    /* Both hold the same hash in G3, each in its own file. */
    pd_kvbm_t *both[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        uint32_t id;
        cr_assert_eq(pd_kvbm_alloc(both[k], 1, &id), PD_OK);
        fill_block(&t, id, 4242);
        cr_assert_eq(pd_kvbm_commit(both[k], id, 4242, 0, NULL), PD_OK);
        cr_assert_eq(pd_kvbm_release(both[k], &id, 1), PD_OK);
        cr_assert_eq(pd_kvbm_alloc(both[k], 1, &id), PD_OK); /* 4242 goes to G3 */
        cr_assert_eq(pd_kvbm_release(both[k], &id, 1), PD_OK);
        cr_assert_eq(dir_count(pd_kvbm_disk_dir(both[k])), 1);
    }
    pd_block_hash_t h = 4242;
    uint32_t got;
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_prefix(a, &h, 1, &got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 1);
    cr_assert_eq(pd_kvbm_release(a, &got, 1), PD_OK);
    pd_kvbm_destroy(&a);
    cr_assert_eq(pd_kvbm_lookup_prefix(b, &h, 1, &got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 1, "the other worker lost its file");
    cr_assert(block_matches(&t, got, 4242));
    cr_assert_eq(pd_kvbm_release(b, &got, 1), PD_OK);
    pd_kvbm_destroy(&b);
    tiered_cleanup(&t);
}

Test(kvblock, the_last_tier_drops_its_least_recently_used_block)
{
    tiered_t t;
    tiered_init(&t, 1, 1, 1);
    pd_kvbm_t *bm = make(&t.cfg);
    pd_block_hash_t h[4] = {700, 701, 702, 703};
    for (int i = 0; i < 4; i++) {
        uint32_t id;
        cr_assert_eq(pd_kvbm_alloc(bm, 1, &id), PD_OK);
        fill_block(&t, id, h[i]);
        cr_assert_eq(pd_kvbm_commit(bm, id, h[i], 0, NULL), PD_OK);
        cr_assert_eq(pd_kvbm_release(bm, &id, 1), PD_OK);
    }
    /* 703 in G1, 702 in G2, 701 in G3, 700 dropped from G3. */
    uint8_t tiers[4];
    cr_assert_eq(pd_kvbm_probe(bm, h, 4, tiers, NULL), PD_OK);
    uint8_t want[4] = {0, 3, 2, 1};
    cr_assert_arr_eq(tiers, want, 4);
    cr_assert_eq(count_events(PD_KVBM_EVENT_REMOVED, PD_KV_TIER_G3, 700), 1);
    cr_assert_eq(n_events, 4 + 3 + 2 + 1, "4 stored, 3 to G2, 2 to G3, 1 removed");
    pd_kvbm_stats_t st = stats_of(bm);
    cr_assert_eq(st.n_dropped, 1);
    cr_assert_eq(st.n_host_cached, 1);
    cr_assert_eq(st.n_disk_cached, 1);
    cr_assert_eq(dir_count(pd_kvbm_disk_dir(bm)), 1);
    /* Bring 701 back from G3: 703 goes down to G2, 702 to G3 (dropping nothing else). */
    uint32_t got;
    size_t n_hit;
    cr_assert_eq(pd_kvbm_lookup_prefix(bm, &h[1], 1, &got, &n_hit), PD_OK);
    cr_assert_eq(n_hit, 1);
    cr_assert(block_matches(&t, got, 701));
    cr_assert_eq(pd_kvbm_probe(bm, h, 4, tiers, NULL), PD_OK);
    uint8_t want2[4] = {0, 1, 3, 2};
    cr_assert_arr_eq(tiers, want2, 4);
    cr_assert_eq(pd_kvbm_release(bm, &got, 1), PD_OK);
    pd_kvbm_destroy(&bm);
    tiered_cleanup(&t);
}
