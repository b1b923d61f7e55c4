#include "pd/directory.h"
#include "pd/hash.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static pd_dir_t *dir;

static void setup(void)
{
    cr_assert_eq(pd_dir_create(0, &dir), PD_OK);
}

static void teardown(void)
{
    pd_dir_destroy(&dir);
    cr_assert_null(dir);
}

/* Snapshot for slot: n hashes in tier G1, seq. */
static void snapshot(uint32_t slot, uint64_t epoch, uint64_t seq, const uint64_t *hashes,
                     uint32_t n)
{
    pd_proto_kv_snapshot_t s = {.epoch = epoch, .seq = seq};
    s.hashes[PD_PROTO_TIER_G1] = hashes;
    s.n_hashes[PD_PROTO_TIER_G1] = n;
    cr_assert_eq(pd_dir_apply_snapshot(dir, slot, &s), PD_OK);
}

static pd_dir_verdict_t event(uint32_t slot, uint64_t epoch, uint64_t seq,
                              pd_proto_event_kind_t kind, pd_proto_tier_t tier,
                              const uint64_t *hashes, uint32_t n)
{
    pd_proto_kv_event_item_t it = {kind, tier, hashes, n};
    pd_proto_kv_event_t ev = {.epoch = epoch, .seq = seq, .events = &it, .n_events = 1};
    return pd_dir_apply_event(dir, slot, &ev);
}

TestSuite(directory, .init = setup, .fini = teardown);

Test(directory, ignores_events_until_snapshot_then_applies_in_order)
{
    const uint64_t h[4] = {11, 12, 13, 14};
    uint32_t prefix[PD_DIR_MAX_WORKERS];
    pd_dir_worker_reset(dir, 3, 100);
    cr_assert_not(pd_dir_worker_synced(dir, 3));
    cr_assert_eq(event(3, 100, 1, PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, h, 2), PD_DIR_IGNORED);
    cr_assert_eq(pd_dir_n_hashes(dir), 0);
    snapshot(3, 100, 1, h, 2);
    cr_assert(pd_dir_worker_synced(dir, 3));
    /* seq 1 is already in the snapshot. */
    cr_assert_eq(event(3, 100, 1, PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, h + 2, 1),
                 PD_DIR_IGNORED);
    cr_assert_eq(event(3, 100, 2, PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, h + 2, 2),
                 PD_DIR_APPLIED);
    cr_assert_eq(pd_dir_n_hashes(dir), 4);
    cr_assert_eq(pd_dir_worker_n_hashes(dir, 3), 4);
    pd_dir_lookup_prefix(dir, h, 4, prefix);
    cr_assert_eq(prefix[3], 4);
    cr_assert_eq(prefix[0], 0);
}

Test(directory, gap_or_new_epoch_asks_for_resync)
{
    const uint64_t h[2] = {1, 2};
    pd_dir_worker_reset(dir, 0, 7);
    snapshot(0, 7, 0, NULL, 0);
    cr_assert_eq(event(0, 7, 1, PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, h, 1), PD_DIR_APPLIED);
    cr_assert_eq(event(0, 7, 3, PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, h + 1, 1),
                 PD_DIR_NEED_RESYNC);
    cr_assert_not(pd_dir_worker_synced(dir, 0));
    /* While unsynced everything is ignored. */
    cr_assert_eq(event(0, 7, 2, PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, h + 1, 1), PD_DIR_IGNORED);
    snapshot(0, 7, 3, h, 2);
    cr_assert_eq(pd_dir_worker_n_hashes(dir, 0), 2);
    cr_assert_eq(event(0, 8, 4, PD_PROTO_EVENT_REMOVED, PD_PROTO_TIER_G1, h, 1),
                 PD_DIR_NEED_RESYNC);
    /* A snapshot of another epoch is refused. */
    pd_proto_kv_snapshot_t s = {.epoch = 8, .seq = 4};
    cr_assert_eq(pd_dir_apply_snapshot(dir, 0, &s), PD_ERR_PEER);
}

Test(directory, snapshot_replaces_and_drop_removes_everything)
{
    uint64_t a[100], b[50];
    for (int i = 0; i < 100; i++)
        a[i] = 1000 + (uint64_t)i;
    for (int i = 0; i < 50; i++)
        b[i] = 5000 + (uint64_t)i;
    pd_dir_worker_reset(dir, 1, 1);
    pd_dir_worker_reset(dir, 2, 1);
    snapshot(1, 1, 0, a, 100);
    snapshot(2, 1, 0, a, 50); /* shares a[0..50) with slot 1 */
    cr_assert_eq(pd_dir_n_hashes(dir), 100);
    snapshot(1, 1, 5, b, 50);
    cr_assert_eq(pd_dir_worker_n_hashes(dir, 1), 50);
    cr_assert_eq(pd_dir_n_hashes(dir), 100); /* a[0..50) (slot 2) + b */
    cr_assert_eq(pd_dir_holder_tiers(dir, a[60], 1), 0);
    cr_assert_eq(pd_dir_holder_tiers(dir, a[10], 2), 1u << PD_PROTO_TIER_G1);
    pd_dir_worker_drop(dir, 2);
    cr_assert_eq(pd_dir_n_hashes(dir), 50);
    cr_assert_eq(pd_dir_worker_n_hashes(dir, 2), 0);
    pd_dir_worker_drop(dir, 1);
    cr_assert_eq(pd_dir_n_hashes(dir), 0);
    /* Events for a dropped slot are ignored. */
    cr_assert_eq(event(1, 1, 6, PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, a, 1), PD_DIR_IGNORED);
}

Test(directory, longest_prefix_per_worker_and_tiers)
{
    const uint64_t h[6] = {21, 22, 23, 24, 25, 26};
    uint32_t prefix[PD_DIR_MAX_WORKERS];
    pd_dir_worker_reset(dir, 0, 1);
    pd_dir_worker_reset(dir, 5, 1);
    pd_dir_worker_reset(dir, 63, 1);
    snapshot(0, 1, 0, h, 6);
    snapshot(5, 1, 0, h, 2);
    /* Slot 63 holds a perforated run: 0, 1, 3 but not 2. */
    const uint64_t perforated[3] = {21, 22, 24};
    snapshot(63, 1, 0, perforated, 3);
    pd_dir_lookup_prefix(dir, h, 6, prefix);
    cr_assert_eq(prefix[0], 6);
    cr_assert_eq(prefix[5], 2);
    cr_assert_eq(prefix[63], 2);
    cr_assert_eq(prefix[1], 0);
    /* Moving to G2 keeps the block held; removing it from G2 ends the prefix there. */
    cr_assert_eq(event(0, 1, 1, PD_PROTO_EVENT_TIER, PD_PROTO_TIER_G2, h + 3, 1), PD_DIR_APPLIED);
    cr_assert_eq(pd_dir_holder_tiers(dir, h[3], 0), 1u << PD_PROTO_TIER_G2);
    pd_dir_lookup_prefix(dir, h, 6, prefix);
    cr_assert_eq(prefix[0], 6);
    cr_assert_eq(event(0, 1, 2, PD_PROTO_EVENT_REMOVED, PD_PROTO_TIER_G2, h + 3, 1),
                 PD_DIR_APPLIED);
    pd_dir_lookup_prefix(dir, h, 6, prefix);
    cr_assert_eq(prefix[0], 3);
    cr_assert_eq(pd_dir_worker_n_hashes(dir, 0), 5);
    /* Removing from a tier that does not hold it changes nothing. */
    cr_assert_eq(event(0, 1, 3, PD_PROTO_EVENT_REMOVED, PD_PROTO_TIER_G3, h, 1), PD_DIR_APPLIED);
    pd_dir_lookup_prefix(dir, h, 6, prefix);
    cr_assert_eq(prefix[0], 3);
}

Test(directory, tenant_salt_separates_equal_text)
{
    int32_t tokens[64];
    for (int i = 0; i < 64; i++)
        tokens[i] = i * 7 + 1;
    uint64_t ha[4], hb[4];
    pd_block_hash_chain(pd_block_hash_root("tenant-a", "m"), tokens, 64, 16, ha, 4);
    pd_block_hash_chain(pd_block_hash_root("tenant-b", "m"), tokens, 64, 16, hb, 4);
    pd_dir_worker_reset(dir, 0, 1);
    snapshot(0, 1, 0, ha, 4);
    uint32_t prefix[PD_DIR_MAX_WORKERS];
    pd_dir_lookup_prefix(dir, ha, 4, prefix);
    cr_assert_eq(prefix[0], 4);
    pd_dir_lookup_prefix(dir, hb, 4, prefix);
    cr_assert_eq(prefix[0], 0);
}

/* Many workers and many hashes, random operations, checked against a plain model. */
Test(directory, matches_a_model_under_random_churn)
{
    enum { N_HASH = 3000, N_SLOT = 8 };
    static uint8_t model[N_SLOT][N_HASH]; /* tier bits */
    uint64_t seq[N_SLOT] = {0};
    srand(12345);
    for (uint32_t s = 0; s < N_SLOT; s++) {
        pd_dir_worker_reset(dir, s, 1);
        snapshot(s, 1, 0, NULL, 0);
    }
    for (int step = 0; step < 20000; step++) {
        uint32_t s = (uint32_t)rand() % N_SLOT;
        uint64_t h = (uint64_t)(rand() % N_HASH);
        uint64_t key = h * 0x9e3779b97f4a7c15ull; /* spread, and exercise the probing */
        int op = rand() % 10;
        pd_proto_tier_t t = (pd_proto_tier_t)(rand() % 3);
        if (op == 0 && step % 500 == 0) {
            pd_dir_worker_drop(dir, s);
            pd_dir_worker_reset(dir, s, 1);
            snapshot(s, 1, 0, NULL, 0);
            seq[s] = 0;
            memset(model[s], 0, sizeof(model[s]));
            continue;
        }
        pd_proto_event_kind_t kind = op < 5   ? PD_PROTO_EVENT_STORED
                                     : op < 8 ? PD_PROTO_EVENT_REMOVED
                                              : PD_PROTO_EVENT_TIER;
        cr_assert_eq(event(s, 1, ++seq[s], kind, t, &key, 1), PD_DIR_APPLIED);
        if (kind == PD_PROTO_EVENT_STORED)
            model[s][h] |= (uint8_t)(1u << t);
        else if (kind == PD_PROTO_EVENT_REMOVED)
            model[s][h] &= (uint8_t) ~(1u << t);
        else
            model[s][h] = (uint8_t)(1u << t);
    }
    uint64_t distinct = 0;
    for (uint64_t h = 0; h < N_HASH; h++) {
        bool any = false;
        for (uint32_t s = 0; s < N_SLOT; s++) {
            uint64_t key = h * 0x9e3779b97f4a7c15ull;
            cr_assert_eq(pd_dir_holder_tiers(dir, key, s), model[s][h], "slot %u hash %llu", s,
                         (unsigned long long)h);
            any |= model[s][h] != 0;
        }
        distinct += any;
    }
    cr_assert_eq(pd_dir_n_hashes(dir), distinct);
    for (uint32_t s = 0; s < N_SLOT; s++) {
        uint64_t n = 0;
        for (uint64_t h = 0; h < N_HASH; h++)
            n += model[s][h] != 0;
        cr_assert_eq(pd_dir_worker_n_hashes(dir, s), n);
    }
}

Test(directory, respects_max_entries)
{
    pd_dir_t *small = NULL;
    cr_assert_eq(pd_dir_create(10, &small), PD_OK);
    uint64_t h[20];
    for (int i = 0; i < 20; i++)
        h[i] = 77 + (uint64_t)i;
    pd_dir_worker_reset(small, 0, 1);
    pd_proto_kv_snapshot_t s = {.epoch = 1, .seq = 0};
    s.hashes[0] = h;
    s.n_hashes[0] = 20;
    cr_assert_eq(pd_dir_apply_snapshot(small, 0, &s), PD_ERR_LIMIT);
    cr_assert_eq(pd_dir_n_hashes(small), 10);
    pd_dir_destroy(&small);
}
