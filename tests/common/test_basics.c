#include "pd/arena.h"
#include "pd/hash.h"
#include "pd/status.h"
#include "pd/strdist.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

Test(status, names_and_messages_come_from_one_list)
{
    cr_assert_str_eq(pd_status_name(PD_ERR_TIMEOUT), "PD_ERR_TIMEOUT");
    cr_assert_str_eq(pd_status_str(PD_OK), "success");
    cr_assert_eq(pd_status_from_name("PD_ERR_OVERLOADED"), PD_ERR_OVERLOADED);
    cr_assert_eq(pd_status_from_name("garbage"), PD_ERR_INTERNAL);
    cr_assert_lt(PD_ERR_NO_MEMORY, 0);
    cr_assert_eq(PD_INPROGRESS, 1);
}

Test(status, errno_maps_to_its_own_status)
{
    cr_assert_eq(pd_status_from_errno(ENOENT), PD_ERR_NOT_FOUND);
    cr_assert_eq(pd_status_from_errno(ENOTDIR), PD_ERR_NOT_FOUND);
    cr_assert_eq(pd_status_from_errno(EACCES), PD_ERR_PERMISSION);
    cr_assert_eq(pd_status_from_errno(EPERM), PD_ERR_PERMISSION);
    cr_assert_eq(pd_status_from_errno(EEXIST), PD_ERR_EXISTS);
    cr_assert_eq(pd_status_from_errno(EADDRINUSE), PD_ERR_BUSY);
    cr_assert_eq(pd_status_from_errno(ECONNREFUSED), PD_ERR_UNREACHABLE);
    cr_assert_eq(pd_status_from_errno(ENOSPC), PD_ERR_NO_RESOURCE);
    cr_assert_eq(pd_status_from_errno(ENOMEM), PD_ERR_NO_MEMORY);
    cr_assert_eq(pd_status_from_errno(EIO), PD_ERR_IO);
    cr_assert_eq(pd_status_from_errno(0), PD_OK);
    cr_assert_str_eq(pd_status_str(PD_ERR_PERMISSION), "permission denied");
    cr_assert_eq(pd_status_from_name("PD_ERR_PERMISSION"), PD_ERR_PERMISSION);
}

Test(strdist, suggests_the_name_a_typo_meant)
{
    cr_assert_eq(pd_str_distance("max-tokens", "max-tokens"), 0);
    cr_assert_eq(pd_str_distance("max-tokes", "max-tokens"), 1);
    cr_assert_eq(pd_str_distance("temprature", "temperature"), 1);
    cr_assert_eq(pd_str_distance("sumbit", "submit"), 1); /* a swap is one edit */
    const char *names[] = {"max-tokens", "temperature", "top-p", "seed", "timeout-ms"};
    cr_assert_str_eq(pd_str_closest("max-tokns", names, 5), "max-tokens");
    cr_assert_str_eq(pd_str_closest("sede", names, 5), "seed");
    cr_assert_str_eq(pd_str_closest("timeout", names, 5), "timeout-ms");
    cr_assert_null(pd_str_closest("bogus", names, 5));
    cr_assert_null(pd_str_closest("x", names, 5));
}

static int cleanup_order[4];
static int cleanup_count;
static void record(void *arg)
{
    cleanup_order[cleanup_count++] = (int)(intptr_t)arg;
}

Test(arena, allocates_aligned_and_runs_cleanups_in_reverse)
{
    pd_arena_t *a = pd_arena_create(64);
    cr_assert_not_null(a);
    for (int i = 0; i < 100; i++) {
        void *p = pd_arena_alloc(a, (size_t)(i % 37) + 1);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)(i % 37) + 1);
    }
    void *big = pd_arena_alloc(a, 1 << 20);
    cr_assert_not_null(big);
    cr_assert_str_eq(pd_arena_strdup(a, "hello"), "hello");
    pd_arena_on_cleanup(a, record, (void *)1);
    pd_arena_on_cleanup(a, record, (void *)2);
    pd_arena_destroy(&a);
    cr_assert_null(a);
    cr_assert_eq(cleanup_count, 2);
    cr_assert_eq(cleanup_order[0], 2);
    cr_assert_eq(cleanup_order[1], 1);
    pd_arena_destroy(&a); /* NULL is fine */
}

Test(hash, chain_depends_on_tenant_and_every_earlier_block)
{
    int32_t toks[64];
    for (int i = 0; i < 64; i++)
        toks[i] = i * 7;
    pd_block_hash_t a[4], b[4], c[4];
    pd_block_hash_t ra = pd_block_hash_root("alice", "m");
    pd_block_hash_t rb = pd_block_hash_root("bob", "m");
    cr_assert_neq(ra, rb);
    cr_assert_eq(pd_block_hash_chain(ra, toks, 64, 16, a, 4), 4);
    cr_assert_eq(pd_block_hash_chain(rb, toks, 64, 16, b, 4), 4);
    for (int i = 0; i < 4; i++)
        cr_assert_neq(a[i], b[i]);
    toks[3] = 999; /* change block 0: every later link changes */
    pd_block_hash_chain(ra, toks, 64, 16, c, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_neq(a[i], c[i]);
    toks[3] = 21;
    pd_block_hash_chain(ra, toks, 64, 16, c, 4);
    cr_assert_arr_eq(a, c, sizeof(a));
    /* Partial blocks are not hashed. */
    cr_assert_eq(pd_block_hash_chain(ra, toks, 47, 16, c, 4), 2);
    cr_assert_neq(pd_block_hash_root("ab", "c"), pd_block_hash_root("a", "bc"));
}
