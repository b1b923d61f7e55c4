/* Cache control plans and usage accounting; see pd/cache_policy.h. */
#include "pd/cache_policy.h"

#include <stddef.h>
#include <string.h>

void pd_cache_control_init(pd_cache_control_t *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->mode = PD_CACHE_MODE_AUTO;
    cc->min_cached_prefix_tokens = PD_CACHE_MIN_PREFIX_TOKENS_DEFAULT;
    cc->retention_ms = PD_CACHE_RETENTION_5M_MS;
}

static int retention_ok(uint64_t ms)
{
    return ms == PD_CACHE_RETENTION_5M_MS || ms == PD_CACHE_RETENTION_1H_MS;
}

pd_status_t pd_cache_control_validate(const pd_cache_control_t *cc)
{
    if (cc == NULL)
        return PD_ERR_INVALID_PARAM;
    switch (cc->mode) {
    case PD_CACHE_MODE_AUTO:
        return retention_ok(cc->retention_ms) ? PD_OK : PD_ERR_INVALID_PARAM;
    case PD_CACHE_MODE_EXPLICIT:
        if (cc->n_breakpoints == 0 || cc->n_breakpoints > PD_CACHE_MAX_BREAKPOINTS)
            return PD_ERR_INVALID_PARAM;
        for (uint32_t i = 0; i < cc->n_breakpoints; i++)
            if (!retention_ok(cc->breakpoints[i].retention_ms))
                return PD_ERR_INVALID_PARAM;
        return PD_OK;
    case PD_CACHE_MODE_OFF:
        return PD_OK;
    }
    return PD_ERR_INVALID_PARAM;
}

pd_status_t pd_cache_mode_parse(const char *name, pd_cache_mode_t *mode_p)
{
    if (name == NULL || mode_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (strcmp(name, "auto") == 0)
        *mode_p = PD_CACHE_MODE_AUTO;
    else if (strcmp(name, "explicit") == 0)
        *mode_p = PD_CACHE_MODE_EXPLICIT;
    else if (strcmp(name, "off") == 0)
        *mode_p = PD_CACHE_MODE_OFF;
    else
        return PD_ERR_INVALID_PARAM;
    return PD_OK;
}

const char *pd_cache_mode_name(pd_cache_mode_t mode)
{
    switch (mode) {
    case PD_CACHE_MODE_AUTO:
        return "auto";
    case PD_CACHE_MODE_EXPLICIT:
        return "explicit";
    case PD_CACHE_MODE_OFF:
        return "off";
    }
    return "unknown";
}

pd_status_t pd_cache_retention_parse(const char *text, uint64_t *ms_p)
{
    if (text == NULL || ms_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (strcmp(text, "5m") == 0)
        *ms_p = PD_CACHE_RETENTION_5M_MS;
    else if (strcmp(text, "1h") == 0)
        *ms_p = PD_CACHE_RETENTION_1H_MS;
    else
        return PD_ERR_INVALID_PARAM;
    return PD_OK;
}

pd_status_t pd_cache_plan_make(const pd_cache_control_t *cc, uint32_t n_tokens,
                               uint32_t block_tokens, pd_cache_plan_t *plan_p)
{
    if (plan_p == NULL || block_tokens == 0 || pd_cache_control_validate(cc) != PD_OK)
        return PD_ERR_INVALID_PARAM;
    pd_cache_plan_t plan;
    memset(&plan, 0, sizeof(plan));
    plan.n_full_blocks = n_tokens / block_tokens;
    plan.read = cc->mode != PD_CACHE_MODE_OFF;

    if (cc->mode == PD_CACHE_MODE_AUTO && n_tokens >= cc->min_cached_prefix_tokens &&
        plan.n_full_blocks > 0) {
        plan.n_write_blocks = plan.n_full_blocks;
        plan.n_segments = 1;
        plan.segments[0].end_block = plan.n_full_blocks;
        plan.segments[0].retention_ms = cc->retention_ms;
    } else if (cc->mode == PD_CACHE_MODE_EXPLICIT) {
        /* Ends in blocks, sorted ascending (insertion sort of at most 4). */
        uint32_t end[PD_CACHE_MAX_BREAKPOINTS];
        uint64_t ret[PD_CACHE_MAX_BREAKPOINTS];
        uint32_t n = 0;
        for (uint32_t i = 0; i < cc->n_breakpoints; i++) {
            uint32_t t = cc->breakpoints[i].offset_tokens;
            uint32_t e = ((t < n_tokens) ? t : n_tokens) / block_tokens;
            if (e == 0)
                continue;
            uint32_t j = n++;
            while (j > 0 && end[j - 1] > e) {
                end[j] = end[j - 1];
                ret[j] = ret[j - 1];
                j--;
            }
            end[j] = e;
            ret[j] = cc->breakpoints[i].retention_ms;
        }
        /* A block takes the longest retention of the breakpoints that cover it: walk from
         * the largest end down, carrying the running maximum, merging equal ends. */
        uint64_t run_max = 0;
        uint32_t n_seg = 0;
        pd_cache_plan_t rev;
        memset(&rev, 0, sizeof(rev));
        for (uint32_t k = n; k-- > 0;) {
            if (ret[k] > run_max)
                run_max = ret[k];
            if (n_seg > 0 && rev.segments[n_seg - 1].end_block == end[k]) {
                rev.segments[n_seg - 1].retention_ms = run_max;
                continue;
            }
            rev.segments[n_seg].end_block = end[k];
            rev.segments[n_seg].retention_ms = run_max;
            n_seg++;
        }
        for (uint32_t k = 0; k < n_seg; k++)
            plan.segments[k] = rev.segments[n_seg - 1 - k];
        plan.n_segments = n_seg;
        plan.n_write_blocks = (n_seg > 0) ? plan.segments[n_seg - 1].end_block : 0;
    }
    *plan_p = plan;
    return PD_OK;
}

uint64_t pd_cache_plan_block_retention_ms(const pd_cache_plan_t *plan, uint32_t block_index)
{
    if (plan == NULL || block_index >= plan->n_write_blocks)
        return 0;
    for (uint32_t k = 0; k < plan->n_segments; k++)
        if (block_index < plan->segments[k].end_block)
            return plan->segments[k].retention_ms;
    return 0;
}

void pd_usage_compute(uint32_t n_prompt_tokens, uint32_t block_tokens, uint32_t n_read_blocks,
                      uint32_t n_created_blocks, uint32_t n_output_tokens, pd_usage_t *usage_p)
{
    uint64_t read = (uint64_t)n_read_blocks * block_tokens;
    if (read > n_prompt_tokens)
        read = n_prompt_tokens;
    uint32_t computed = n_prompt_tokens - (uint32_t)read;
    uint64_t created = (uint64_t)n_created_blocks * block_tokens;
    if (created > computed)
        created = computed;
    usage_p->input_tokens = computed;
    usage_p->cache_read_input_tokens = (uint32_t)read;
    usage_p->cache_creation_input_tokens = (uint32_t)created;
    usage_p->output_tokens = n_output_tokens;
}
