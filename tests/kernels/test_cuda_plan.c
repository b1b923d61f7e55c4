/* The CUDA backend's host-side planning (kernels/cuda/plan.c), on any machine: launch
 * shapes, the step's flattened upload (ids, positions, KV offsets, block tables, partial
 * slots) and the attention work items. An emulation of the two attention kernels that
 * reads nothing but the planned buffer is checked against the CPU attention, so that an
 * indexing mistake in the plan shows here, without a GPU. */
#include "cuda/plan.h"
#include "pd/ops.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static pd_status_t grow_heap(void *arg, unsigned char **buf_p, size_t *cap_p, size_t want)
{
    (void)arg;
    void *p = realloc(*buf_p, want);
    if (p == NULL)
        return PD_ERR_NO_MEMORY;
    *buf_p = p;
    *cap_p = want;
    return PD_OK;
}

static pd_status_t grow_fail(void *arg, unsigned char **buf_p, size_t *cap_p, size_t want)
{
    (void)arg;
    (void)buf_p;
    (void)cap_p;
    (void)want;
    return PD_ERR_NO_MEMORY;
}

Test(cuda_plan, shapes_for_the_built_head_dims_and_nothing_else)
{
    const uint32_t ok[] = {16, 32, 64, 128, 256};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        pd_cuda_attn_shape_t s;
        cr_assert_eq(pd_cuda_attn_shape(ok[i], &s), PD_OK);
        /* a key's lanes cover its head exactly, in whole float4s */
        cr_assert_eq(s.lanes_per_key * s.vec_per_lane * 4, ok[i]);
        cr_assert_eq(32 % s.lanes_per_key, 0);
        cr_assert_eq(s.keys_per_warp * s.lanes_per_key, 32);
        /* P V: every (query, column) pair has a thread */
        cr_assert_eq(s.pv_cols * s.pv_q_lanes, PD_CUDA_ATTN_THREADS);
        cr_assert_geq(s.pv_q_per_thread * s.pv_q_lanes, PD_CUDA_ATTN_MAX_Q);
        /* static shared memory stays under the 48 KB every device gives without opt-in */
        cr_assert_leq(s.smem_bytes + PD_CUDA_ATTN_CHUNK * 8, 48u * 1024);
    }
    const uint32_t bad[] = {0, 8, 48, 80, 96, 512};
    pd_cuda_attn_shape_t s;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(pd_cuda_attn_shape(bad[i], &s), PD_ERR_UNSUPPORTED, "hd %u", bad[i]);
}

Test(cuda_plan, grid_of_a_size_covers_it)
{
    cr_assert_eq(pd_cuda_grid_1d(0, 256), 1);
    cr_assert_eq(pd_cuda_grid_1d(256, 256), 1);
    cr_assert_eq(pd_cuda_grid_1d(257, 256), 2);
    cr_assert_eq(pd_cuda_attn_n_chunks(1), 1);
    cr_assert_eq(pd_cuda_attn_n_chunks(PD_CUDA_ATTN_CHUNK), 1);
    cr_assert_eq(pd_cuda_attn_n_chunks(PD_CUDA_ATTN_CHUNK + 1), 2);
}

/* A step: sequences with their own block tables over a pool of n_blocks. */
typedef struct step {
    pd_kv_layout_t layout;
    uint32_t n_heads;
    uint32_t n_seqs, n_rows;
    pd_attn_seq_t seqs[8];
    uint32_t tables[8][160];
    int32_t ids[2048];
    uint32_t pos[2048];
    size_t kv_off[2048];
} step_t;

/* Sequences (pos, n_tokens) with scattered, distinct block ids. */
static void step_make(step_t *s, uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd, uint32_t bt,
                      const uint32_t (*shape)[2], uint32_t n_seqs, uint32_t seed)
{
    memset(s, 0, sizeof(*s));
    s->layout = (pd_kv_layout_t){1, n_kv_heads, hd, bt, 0};
    s->n_heads = n_heads;
    s->n_seqs = n_seqs;
    uint32_t next_block = 0, row = 0;
    for (uint32_t i = 0; i < n_seqs; i++) {
        const uint32_t pos = shape[i][0], n = shape[i][1];
        const uint32_t need = (pos + n + bt - 1) / bt;
        cr_assert_leq(need, 160);
        for (uint32_t b = 0; b < need; b++)
            s->tables[i][b] = next_block + (b * 7 + seed) % need; /* a permutation */
        next_block += need;
        s->seqs[i] = (pd_attn_seq_t){row, n, pos, s->tables[i]};
        const size_t kvd = (size_t)n_kv_heads * hd, blk = 2 * (size_t)bt * kvd;
        for (uint32_t t = 0; t < n; t++, row++) {
            const uint32_t p = pos + t;
            s->ids[row] = (int32_t)((row * 31 + seed) % 1000);
            s->pos[row] = p;
            s->kv_off[row] = s->tables[i][p / bt] * blk + (size_t)(p % bt) * kvd;
        }
    }
    s->n_rows = row;
    s->layout.n_blocks = next_block;
}

static void plan_of(const step_t *s, pd_cuda_step_plan_t *p)
{
    cr_assert_eq(pd_cuda_plan_build(p, s->ids, s->pos, s->kv_off, s->n_rows, s->seqs, s->n_seqs,
                                    &s->layout, s->n_heads, grow_heap, NULL),
                 PD_OK);
}

/* Every (row, head, chunk the row reaches) is in exactly one item, and nothing else is. */
static void check_cover(const step_t *s, const pd_cuda_step_plan_t *p)
{
    const uint32_t *part = (const uint32_t *)(p->buf + p->off_part);
    const pd_cuda_attn_item_t *it = (const pd_cuda_attn_item_t *)(p->buf + p->off_items);
    uint8_t *seen = calloc((size_t)p->n_parts * s->n_heads, 1);
    cr_assert_not_null(seen);
    const uint32_t group = s->n_heads / s->layout.n_kv_heads;
    for (uint32_t i = 0; i < p->n_items; i++) {
        cr_assert_leq((uint32_t)it[i].n_rows * it[i].n_q_heads, PD_CUDA_ATTN_MAX_Q);
        cr_assert_geq(it[i].n_rows, 1);
        /* the heads of an item share its KV head */
        cr_assert_eq(it[i].head0 / group, it[i].kv_head);
        cr_assert_eq((it[i].head0 + it[i].n_q_heads - 1) / group, it[i].kv_head);
        const uint32_t j0 = it[i].chunk * PD_CUDA_ATTN_CHUNK;
        /* the item's last row reaches its chunk, so the kernel has positions to read */
        cr_assert_gt(it[i].ctx0 + it[i].n_rows - 1, j0);
        for (uint32_t r = 0; r < it[i].n_rows; r++) {
            const uint32_t row = it[i].row0 + r, ctx = it[i].ctx0 + r;
            cr_assert_lt(row, s->n_rows);
            cr_assert_eq(ctx, s->pos[row] + 1, "row %u", row);
            if (ctx <= j0)
                continue; /* the kernel skips it */
            cr_assert_lt(it[i].chunk, part[row + 1] - part[row]);
            for (uint32_t h = 0; h < it[i].n_q_heads; h++) {
                size_t slot = ((size_t)part[row] + it[i].chunk) * s->n_heads + it[i].head0 + h;
                cr_assert_eq(seen[slot], 0, "slot %zu twice", slot);
                seen[slot] = 1;
            }
        }
    }
    for (uint32_t row = 0; row < s->n_rows; row++) {
        cr_assert_eq(part[row + 1] - part[row], pd_cuda_attn_n_chunks(s->pos[row] + 1));
        for (size_t k = (size_t)part[row] * s->n_heads; k < (size_t)part[row + 1] * s->n_heads; k++)
            cr_assert_eq(seen[k], 1, "row %u slot %zu never computed", row, k);
    }
    free(seen);
}

Test(cuda_plan, items_cover_every_row_head_and_chunk_once)
{
    /* decode rows, a long prefill chunk after a cached prefix, a prompt crossing chunks */
    const uint32_t shape[][2] = {{0, 1}, {700, 1}, {300, 300}, {0, 513}, {255, 2}, {1023, 1}};
    const uint32_t heads[][2] = {{8, 8}, {8, 2}, {32, 1}, {12, 4}};
    for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
        step_t *s = malloc(sizeof(*s));
        cr_assert_not_null(s);
        step_make(s, heads[h][0], heads[h][1], 64, 16, shape, 6, (uint32_t)h + 1);
        pd_cuda_step_plan_t p = {0};
        plan_of(s, &p);
        cr_assert_eq(p.n_rows, s->n_rows);
        cr_assert_eq(p.max_chunks, pd_cuda_attn_n_chunks(1024));
        check_cover(s, &p);
        /* the copies of the index arrays and the tables, in sequence order */
        cr_assert_eq(memcmp(p.buf + p.off_ids, s->ids, s->n_rows * sizeof(int32_t)), 0);
        cr_assert_eq(memcmp(p.buf + p.off_pos, s->pos, s->n_rows * sizeof(uint32_t)), 0);
        const uint64_t *kv = (const uint64_t *)(p.buf + p.off_kv);
        const uint32_t *tab = (const uint32_t *)(p.buf + p.off_tables);
        const pd_cuda_attn_item_t *it = (const pd_cuda_attn_item_t *)(p.buf + p.off_items);
        for (uint32_t r = 0; r < s->n_rows; r++)
            cr_assert_eq(kv[r], s->kv_off[r]);
        for (uint32_t i = 0; i < p.n_items; i++) {
            /* an item's table is its own sequence's */
            uint32_t q = 0;
            while (!(it[i].row0 >= s->seqs[q].first_row &&
                     it[i].row0 < s->seqs[q].first_row + s->seqs[q].n_tokens))
                q++;
            const uint32_t need = (s->seqs[q].pos + s->seqs[q].n_tokens + 15) / 16;
            cr_assert_eq(memcmp(tab + it[i].table_off, s->tables[q], need * 4), 0);
            cr_assert_leq(it[i].row0 + it[i].n_rows, s->seqs[q].first_row + s->seqs[q].n_tokens);
        }
        cr_assert_eq(p.off_items % 16, 0);
        cr_assert_leq(p.off_items + p.n_items * sizeof(pd_cuda_attn_item_t), p.bytes);
        free(p.buf);
        free(s);
    }
}

Test(cuda_plan, rejects_steps_that_do_not_fit)
{
    const uint32_t shape[][2] = {{0, 3}, {5, 1}};
    step_t *s = malloc(sizeof(*s));
    cr_assert_not_null(s);
    step_make(s, 4, 2, 32, 16, shape, 2, 1);
    pd_cuda_step_plan_t p = {0};
    /* heads not a multiple of the KV heads */
    cr_assert_eq(pd_cuda_plan_build(&p, s->ids, s->pos, s->kv_off, s->n_rows, s->seqs, 2,
                                    &s->layout, 3, grow_heap, NULL),
                 PD_ERR_INVALID_PARAM);
    /* rows that the sequences do not cover, or cover out of order */
    cr_assert_eq(pd_cuda_plan_build(&p, s->ids, s->pos, s->kv_off, s->n_rows + 1, s->seqs, 2,
                                    &s->layout, 4, grow_heap, NULL),
                 PD_ERR_INVALID_PARAM);
    pd_attn_seq_t swapped[2] = {s->seqs[1], s->seqs[0]};
    cr_assert_eq(pd_cuda_plan_build(&p, s->ids, s->pos, s->kv_off, s->n_rows, swapped, 2,
                                    &s->layout, 4, grow_heap, NULL),
                 PD_ERR_INVALID_PARAM);
    /* the allocator's failure comes back as is */
    cr_assert_eq(pd_cuda_plan_build(&p, s->ids, s->pos, s->kv_off, s->n_rows, s->seqs, 2,
                                    &s->layout, 4, grow_fail, NULL),
                 PD_ERR_NO_MEMORY);
    cr_assert_null(p.buf);
    free(s);
}

/* The kernels' arithmetic, in the same order, fed only by the plan's bytes. */
static void emulate(const pd_cuda_step_plan_t *p, const float *q, const float *pool,
                    const pd_kv_layout_t *l, uint32_t n_heads, float *out)
{
    const uint32_t hd = l->head_dim, bt = l->block_tokens, C = PD_CUDA_ATTN_CHUNK;
    const size_t kvd = (size_t)l->n_kv_heads * hd, blk = 2 * (size_t)bt * kvd;
    const uint32_t *part = (const uint32_t *)(p->buf + p->off_part);
    const uint32_t *tab = (const uint32_t *)(p->buf + p->off_tables);
    const pd_cuda_attn_item_t *it = (const pd_cuda_attn_item_t *)(p->buf + p->off_items);
    const size_t slots = (size_t)p->n_parts * n_heads;
    float *pm = malloc(slots * sizeof(float)), *pl = malloc(slots * sizeof(float));
    float *pa = malloc(slots * hd * sizeof(float)), *sc = malloc(C * sizeof(float));
    cr_assert(pm && pl && pa && sc);
    for (size_t k = 0; k < slots; k++)
        pm[k] = NAN; /* poison: every slot the combine reads must be written */
    const float scale = 1.0f / sqrtf((float)hd);
    for (uint32_t i = 0; i < p->n_items; i++) {
        const uint32_t j0 = it[i].chunk * C;
        for (uint32_t r = 0; r < it[i].n_rows; r++) {
            const uint32_t row = it[i].row0 + r, ctx = it[i].ctx0 + r;
            if (ctx <= j0)
                continue;
            const uint32_t nv = ctx - j0 < C ? ctx - j0 : C;
            for (uint32_t h = it[i].head0; h < it[i].head0 + it[i].n_q_heads; h++) {
                const float *qv = q + ((size_t)row * n_heads + h) * hd;
                float m = -INFINITY, s = 0.0f;
                for (uint32_t t = 0; t < nv; t++) {
                    const uint32_t pp = j0 + t;
                    const float *k = pool + tab[it[i].table_off + pp / bt] * blk +
                                     (size_t)(pp % bt) * kvd + (size_t)it[i].kv_head * hd;
                    float d = 0.0f;
                    for (uint32_t e = 0; e < hd; e++)
                        d = fmaf(qv[e], k[e], d);
                    sc[t] = d * scale;
                    m = fmaxf(m, sc[t]);
                }
                const size_t slot = ((size_t)part[row] + it[i].chunk) * n_heads + h;
                float *acc = pa + slot * hd;
                memset(acc, 0, hd * sizeof(float));
                for (uint32_t t = 0; t < nv; t++) {
                    const uint32_t pp = j0 + t;
                    const float *v = pool + tab[it[i].table_off + pp / bt] * blk +
                                     ((size_t)bt + pp % bt) * kvd + (size_t)it[i].kv_head * hd;
                    const float w = expf(sc[t] - m);
                    s += w;
                    for (uint32_t e = 0; e < hd; e++)
                        acc[e] = fmaf(w, v[e], acc[e]);
                }
                pm[slot] = m;
                pl[slot] = s;
            }
        }
    }
    for (uint32_t row = 0; row < p->n_rows; row++)
        for (uint32_t h = 0; h < n_heads; h++) {
            float m = -INFINITY, s = 0.0f;
            for (uint32_t j = part[row]; j < part[row + 1]; j++) {
                cr_assert(!isnan(pm[(size_t)j * n_heads + h]), "row %u head %u chunk unwritten",
                          row, h);
                m = fmaxf(m, pm[(size_t)j * n_heads + h]);
            }
            float *o = out + ((size_t)row * n_heads + h) * hd;
            memset(o, 0, hd * sizeof(float));
            for (uint32_t j = part[row]; j < part[row + 1]; j++) {
                const size_t slot = (size_t)j * n_heads + h;
                const float w = expf(pm[slot] - m);
                s = fmaf(pl[slot], w, s);
                for (uint32_t e = 0; e < hd; e++)
                    o[e] = fmaf(pa[slot * hd + e], w, o[e]);
            }
            for (uint32_t e = 0; e < hd; e++)
                o[e] *= 1.0f / s;
        }
    free(pm);
    free(pl);
    free(pa);
    free(sc);
}

static float frand(uint64_t *st)
{
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*st >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

Test(cuda_plan, emulated_kernels_over_the_plan_match_cpu_attention)
{
    const uint32_t shape[][2] = {{0, 1}, {600, 1}, {250, 20}, {0, 300}};
    step_t *s = malloc(sizeof(*s));
    cr_assert_not_null(s);
    step_make(s, 8, 2, 32, 16, shape, 4, 3);
    const pd_kv_layout_t *l = &s->layout;
    const size_t pool_n = pd_kv_pool_bytes(l) / sizeof(float);
    const size_t qn = (size_t)s->n_rows * s->n_heads * l->head_dim;
    float *pool = malloc(pool_n * sizeof(float)), *q = malloc(qn * sizeof(float));
    float *out = malloc(qn * sizeof(float)), *scores = malloc(1024 * sizeof(float));
    cr_assert(pool && q && out && scores);
    uint64_t st = 12345;
    for (size_t i = 0; i < pool_n; i++)
        pool[i] = frand(&st);
    for (size_t i = 0; i < qn; i++)
        q[i] = 2.0f * frand(&st);
    pd_cuda_step_plan_t p = {0};
    plan_of(s, &p);
    emulate(&p, q, pool, l, s->n_heads, out);
    const uint32_t hd = l->head_dim, group = s->n_heads / l->n_kv_heads;
    double err = 0.0, norm = 0.0;
    float ref[32];
    for (uint32_t i = 0; i < s->n_seqs; i++)
        for (uint32_t t = 0; t < s->seqs[i].n_tokens; t++) {
            const uint32_t row = s->seqs[i].first_row + t;
            for (uint32_t h = 0; h < s->n_heads; h++) {
                const size_t off = ((size_t)row * s->n_heads + h) * hd;
                pd_cpu_attention_head(q + off, pool, l, s->seqs[i].block_table,
                                      s->seqs[i].pos + t + 1, h / group, ref, scores);
                for (uint32_t e = 0; e < hd; e++) {
                    err += ((double)out[off + e] - ref[e]) * ((double)out[off + e] - ref[e]);
                    norm += (double)ref[e] * ref[e];
                }
            }
        }
    /* f32 arithmetic in another order: far under 1e-5 relative */
    cr_assert_lt(sqrt(err / norm), 1e-5, "relative error %g", sqrt(err / norm));
    free(p.buf);
    free(pool);
    free(q);
    free(out);
    free(scores);
    free(s);
}

Test(cuda_plan, a_row_gets_the_same_items_alone_as_in_a_batch)
{
    /* The numerics rule in plan form: the decode row of sequence 1 is cut into the same
     * chunks, with the same context, whatever else the step holds. */
    const uint32_t batch[][2] = {{40, 100}, {700, 1}, {3, 1}};
    const uint32_t alone[][2] = {{700, 1}};
    step_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    cr_assert(a && b);
    step_make(a, 8, 2, 64, 16, batch, 3, 1);
    step_make(b, 8, 2, 64, 16, alone, 1, 1);
    pd_cuda_step_plan_t pa = {0}, pb = {0};
    plan_of(a, &pa);
    plan_of(b, &pb);
    const pd_cuda_attn_item_t *ia = (const pd_cuda_attn_item_t *)(pa.buf + pa.off_items);
    const pd_cuda_attn_item_t *ib = (const pd_cuda_attn_item_t *)(pb.buf + pb.off_items);
    uint32_t n_a = 0;
    for (uint32_t i = 0; i < pa.n_items; i++)
        if (ia[i].row0 == 100) {
            cr_assert_lt(n_a, pb.n_items);
            cr_assert_eq(ia[i].ctx0, ib[n_a].ctx0);
            cr_assert_eq(ia[i].chunk, ib[n_a].chunk);
            cr_assert_eq(ia[i].head0, ib[n_a].head0);
            cr_assert_eq(ia[i].n_rows, ib[n_a].n_rows);
            n_a++;
        }
    cr_assert_eq(n_a, pb.n_items);
    free(pa.buf);
    free(pb.buf);
    free(a);
    free(b);
}
