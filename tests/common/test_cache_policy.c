#include "pd/cache_policy.h"
#include "pd/proto.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static const uint64_t M5 = PD_CACHE_RETENTION_5M_MS;
static const uint64_t H1 = PD_CACHE_RETENTION_1H_MS;

static pd_cache_plan_t plan_of(const pd_cache_control_t *cc, uint32_t n_tokens, uint32_t b)
{
    pd_cache_plan_t plan;
    cr_assert_eq(pd_cache_plan_make(cc, n_tokens, b, &plan), PD_OK);
    return plan;
}

Test(cache_policy, defaults_are_auto_1024_tokens_5_minutes)
{
    pd_cache_control_t cc;
    memset(&cc, 0x5a, sizeof(cc));
    pd_cache_control_init(&cc);
    cr_assert_eq(cc.mode, PD_CACHE_MODE_AUTO);
    cr_assert_eq(cc.min_cached_prefix_tokens, 1024);
    cr_assert_eq(cc.retention_ms, 300000);
    cr_assert_eq(cc.n_breakpoints, 0);
    cr_assert_eq(pd_cache_control_validate(&cc), PD_OK);
}

Test(cache_policy, auto_writes_every_full_block_from_the_threshold_on)
{
    pd_cache_control_t cc;
    pd_cache_control_init(&cc);
    pd_cache_plan_t p = plan_of(&cc, 1023, 16);
    cr_assert_eq(p.read, 1);
    cr_assert_eq(p.n_full_blocks, 63);
    cr_assert_eq(p.n_write_blocks, 0);
    cr_assert_eq(pd_cache_plan_block_retention_ms(&p, 0), 0);
    p = plan_of(&cc, 1024, 16);
    cr_assert_eq(p.n_write_blocks, 64);
    cr_assert_eq(pd_cache_plan_block_retention_ms(&p, 0), M5);
    cr_assert_eq(pd_cache_plan_block_retention_ms(&p, 63), M5);
    cr_assert_eq(pd_cache_plan_block_retention_ms(&p, 64), 0);
    /* A partial last block is never written. */
    p = plan_of(&cc, 1030, 16);
    cr_assert_eq(p.n_write_blocks, 64);
    cc.min_cached_prefix_tokens = 32;
    cc.retention_ms = H1;
    p = plan_of(&cc, 40, 16);
    cr_assert_eq(p.n_write_blocks, 2);
    cr_assert_eq(pd_cache_plan_block_retention_ms(&p, 1), H1);
}

Test(cache_policy, off_reads_and_writes_nothing)
{
    pd_cache_control_t cc;
    pd_cache_control_init(&cc);
    cc.mode = PD_CACHE_MODE_OFF;
    pd_cache_plan_t p = plan_of(&cc, 5000, 16);
    cr_assert_eq(p.read, 0);
    cr_assert_eq(p.n_write_blocks, 0);
    for (uint32_t i = 0; i < 400; i++)
        cr_assert_eq(pd_cache_plan_block_retention_ms(&p, i), 0);
}

Test(cache_policy, explicit_breakpoints_write_only_their_prefixes)
{
    pd_cache_control_t cc;
    pd_cache_control_init(&cc);
    cc.mode = PD_CACHE_MODE_EXPLICIT;
    /* Out of order; 100 tokens = 6 full blocks at 1h, 40 tokens = 2 blocks at 5m, 250 =
     * 15 blocks at 5m, one in the middle of block 7 (120 / 16 = 7 blocks) at 1h. */
    cc.n_breakpoints = 4;
    cc.breakpoints[0] = (pd_cache_breakpoint_t){.offset_tokens = 250, .retention_ms = M5};
    cc.breakpoints[1] = (pd_cache_breakpoint_t){.offset_tokens = 100, .retention_ms = H1};
    cc.breakpoints[2] = (pd_cache_breakpoint_t){.offset_tokens = 40, .retention_ms = M5};
    cc.breakpoints[3] = (pd_cache_breakpoint_t){.offset_tokens = 120, .retention_ms = H1};
    pd_cache_plan_t p = plan_of(&cc, 300, 16); /* 18 full blocks; no threshold */
    cr_assert_eq(p.read, 1);
    cr_assert_eq(p.n_full_blocks, 18);
    cr_assert_eq(p.n_write_blocks, 15);
    for (uint32_t i = 0; i < 18; i++) {
        uint64_t want = (i < 7) ? H1 : (i < 15) ? M5 : 0;
        cr_assert_eq(pd_cache_plan_block_retention_ms(&p, i), want, "block %u", i);
    }
    /* A prompt shorter than a breakpoint caches its full blocks up to its end. */
    p = plan_of(&cc, 70, 16);
    cr_assert_eq(p.n_write_blocks, 4);
    for (uint32_t i = 0; i < 4; i++)
        cr_assert_eq(pd_cache_plan_block_retention_ms(&p, i), H1);
    /* A breakpoint inside the first block writes nothing. */
    cc.n_breakpoints = 1;
    cc.breakpoints[0] = (pd_cache_breakpoint_t){.offset_tokens = 15, .retention_ms = H1};
    p = plan_of(&cc, 300, 16);
    cr_assert_eq(p.n_write_blocks, 0);
    cr_assert_eq(p.read, 1);
    /* Two breakpoints on the same block count take the longer retention. */
    cc.n_breakpoints = 2;
    cc.breakpoints[0] = (pd_cache_breakpoint_t){.offset_tokens = 32, .retention_ms = M5};
    cc.breakpoints[1] = (pd_cache_breakpoint_t){.offset_tokens = 40, .retention_ms = H1};
    p = plan_of(&cc, 300, 16);
    cr_assert_eq(p.n_write_blocks, 2);
    cr_assert_eq(p.n_segments, 1);
    cr_assert_eq(pd_cache_plan_block_retention_ms(&p, 0), H1);
    cr_assert_eq(pd_cache_plan_block_retention_ms(&p, 1), H1);
}

Test(cache_policy, rejects_bad_controls)
{
    pd_cache_control_t cc;
    pd_cache_plan_t p;
    memset(&p, 0x77, sizeof(p));
    pd_cache_control_init(&cc);
    cc.mode = PD_CACHE_MODE_EXPLICIT; /* no breakpoints */
    cr_assert_eq(pd_cache_plan_make(&cc, 100, 16, &p), PD_ERR_INVALID_PARAM);
    cr_assert_eq(p.n_write_blocks, 0x77777777u, "plan written on failure");
    cc.n_breakpoints = 5;
    cr_assert_eq(pd_cache_control_validate(&cc), PD_ERR_INVALID_PARAM);
    cc.n_breakpoints = 1;
    cc.breakpoints[0] = (pd_cache_breakpoint_t){.offset_tokens = 32, .retention_ms = 1234};
    cr_assert_eq(pd_cache_control_validate(&cc), PD_ERR_INVALID_PARAM);
    cc.breakpoints[0].retention_ms = H1;
    cr_assert_eq(pd_cache_control_validate(&cc), PD_OK);
    cr_assert_eq(pd_cache_plan_make(&cc, 100, 0, &p), PD_ERR_INVALID_PARAM);
    cc.mode = (pd_cache_mode_t)9;
    cr_assert_eq(pd_cache_control_validate(&cc), PD_ERR_INVALID_PARAM);
}

Test(cache_policy, parses_modes_and_retentions)
{
    pd_cache_mode_t m = PD_CACHE_MODE_OFF;
    cr_assert_eq(pd_cache_mode_parse("explicit", &m), PD_OK);
    cr_assert_eq(m, PD_CACHE_MODE_EXPLICIT);
    cr_assert_eq(pd_cache_mode_parse("auto", &m), PD_OK);
    cr_assert_eq(m, PD_CACHE_MODE_AUTO);
    cr_assert_eq(pd_cache_mode_parse("Off", &m), PD_ERR_INVALID_PARAM);
    cr_assert_eq(m, PD_CACHE_MODE_AUTO);
    cr_assert_str_eq(pd_cache_mode_name(PD_CACHE_MODE_OFF), "off");
    uint64_t ms = 0;
    cr_assert_eq(pd_cache_retention_parse("1h", &ms), PD_OK);
    cr_assert_eq(ms, 3600000);
    cr_assert_eq(pd_cache_retention_parse("5m", &ms), PD_OK);
    cr_assert_eq(ms, 300000);
    cr_assert_eq(pd_cache_retention_parse("10m", &ms), PD_ERR_INVALID_PARAM);
    cr_assert_eq(ms, 300000);
}

Test(cache_policy, usage_numbers_are_exact)
{
    pd_usage_t u;
    /* 100 tokens, 3 blocks of 16 read, 2 new blocks written, 7 generated. */
    pd_usage_compute(100, 16, 3, 2, 7, &u);
    cr_assert_eq(u.cache_read_input_tokens, 48);
    cr_assert_eq(u.input_tokens, 52);
    cr_assert_eq(u.cache_creation_input_tokens, 32);
    cr_assert_eq(u.output_tokens, 7);
    /* Nothing cached. */
    pd_usage_compute(100, 16, 0, 0, 1, &u);
    cr_assert_eq(u.input_tokens, 100);
    cr_assert_eq(u.cache_read_input_tokens, 0);
    cr_assert_eq(u.cache_creation_input_tokens, 0);
    /* Reads capped at the prompt, writes at what was computed. */
    pd_usage_compute(32, 16, 3, 5, 0, &u);
    cr_assert_eq(u.cache_read_input_tokens, 32);
    cr_assert_eq(u.input_tokens, 0);
    cr_assert_eq(u.cache_creation_input_tokens, 0);
    pd_usage_compute(40, 16, 1, 5, 0, &u);
    cr_assert_eq(u.input_tokens, 24);
    cr_assert_eq(u.cache_creation_input_tokens, 24);
    cr_assert_eq(u.input_tokens + u.cache_read_input_tokens, 40);
}

/* The router resolves plans with pd_proto_cache_plan_make; both must give every block the
 * same retention. */
static uint64_t proto_block_ms(const pd_proto_cache_plan_t *plan, uint32_t i)
{
    uint64_t ms = 0;
    for (uint32_t w = 0; w < plan->n_writes; w++)
        if (i < plan->writes[w].n_blocks && plan->writes[w].ttl_s * 1000ull > ms)
            ms = plan->writes[w].ttl_s * 1000ull;
    return ms;
}

Test(cache_policy, agrees_with_the_wire_plan)
{
    srand(99);
    for (int round = 0; round < 2000; round++) {
        uint32_t b = (rand() % 2) ? 16 : 4;
        uint32_t n_tokens = (uint32_t)(rand() % 400);
        uint32_t min_prefix = (uint32_t)(rand() % 300);
        pd_cache_control_t cc;
        pd_cache_control_init(&cc);
        cc.min_cached_prefix_tokens = min_prefix;
        pd_proto_cache_t pc;
        memset(&pc, 0, sizeof(pc));
        int mode = rand() % 3;
        cc.mode = (pd_cache_mode_t)mode;
        pc.mode = (mode == 0)   ? PD_PROTO_CACHE_AUTO
                  : (mode == 1) ? PD_PROTO_CACHE_EXPLICIT
                                : PD_PROTO_CACHE_OFF;
        if (mode == 1) {
            uint32_t n = 1 + (uint32_t)(rand() % 4), off = 0;
            for (uint32_t k = 0; k < n; k++) {
                off += 1 + (uint32_t)(rand() % 120);
                int hour = rand() % 2;
                cc.breakpoints[k].offset_tokens = pc.breakpoints[k].offset_tokens = off;
                cc.breakpoints[k].retention_ms = hour ? H1 : M5;
                pc.breakpoints[k].ttl_s = hour ? PD_PROTO_TTL_1H_S : PD_PROTO_TTL_5M_S;
            }
            cc.n_breakpoints = pc.n_breakpoints = n;
        }
        pd_cache_plan_t mine = plan_of(&cc, n_tokens, b);
        pd_proto_cache_plan_t wire;
        pd_proto_cache_plan_make(&pc, n_tokens, b, min_prefix, &wire);
        cr_assert_eq(mine.read, mode != 2);
        cr_assert_eq(wire.read_blocks, mine.read ? mine.n_full_blocks : 0);
        for (uint32_t i = 0; i < n_tokens / b + 2; i++)
            cr_assert_eq(pd_cache_plan_block_retention_ms(&mine, i), proto_block_ms(&wire, i),
                         "round %d block %u", round, i);
    }
}
