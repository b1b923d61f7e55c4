/* Seeded sampling: greedy, temperature and nucleus (top-p), with a counter-based draw
 * so a token depends only on the logits and (seed, step). */
#include "pd/sample.h"

#include <math.h>
#include <string.h>

static uint64_t pd_sample_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float pd_sample_uniform(uint64_t seed, uint64_t step)
{
    uint64_t r = pd_sample_mix64(seed ^ pd_sample_mix64(step));
    return (float)(r >> 40) * (1.0f / 16777216.0f);
}

/* Highest logit, lowest id on ties; NaN never wins. */
static int32_t pd_sample_argmax(const float *logits, uint32_t vocab)
{
    int32_t best = -1;
    for (uint32_t i = 0; i < vocab; i++) {
        if (isnan(logits[i]))
            continue;
        if (best < 0 || logits[i] > logits[best])
            best = (int32_t)i;
    }
    return best < 0 ? 0 : best;
}

/* Order of the nucleus: higher probability first, lower id first on ties. */
static int pd_sample_before(const float *p, float a, float b)
{
    float pa = p[(uint32_t)a], pb = p[(uint32_t)b];
    return pa > pb || (pa == pb && a < b);
}

/* Restore the heap below node i of idx (n) whose root comes first in pd_sample_before. */
static void pd_sample_sift(const float *p, float *idx, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t best = i, l = 2 * i + 1, r = l + 1;
        if (l < n && pd_sample_before(p, idx[l], idx[best]))
            best = l;
        if (r < n && pd_sample_before(p, idx[r], idx[best]))
            best = r;
        if (best == i)
            return;
        float t = idx[i];
        idx[i] = idx[best];
        idx[best] = t;
        i = best;
    }
}

int32_t pd_sample_token(const pd_sampling_t *s, float *logits, uint32_t vocab, uint64_t step,
                        float *scratch)
{
    if (vocab == 0)
        return 0;
    int32_t best = pd_sample_argmax(logits, vocab);
    if (s == NULL || !(s->temperature > 0.0f) || !isfinite(logits[best]))
        return best;
    /* probs (vocab) in scratch[0 .. vocab), token ids (exact as floats below 2^24) after */
    float *probs = scratch;
    float *idx = scratch + vocab;
    const float inv_t = 1.0f / s->temperature;
    const float max = logits[best];
    double total = 0.0;
    for (uint32_t i = 0; i < vocab; i++) {
        float z = isnan(logits[i]) ? -INFINITY : (logits[i] - max) * inv_t;
        probs[i] = expf(z);
        total += probs[i];
    }
    const double u = (double)pd_sample_uniform(s->seed, step);
    if (!(s->top_p < 1.0f) || vocab > (1u << 24)) {
        double target = u * total, acc = 0.0;
        for (uint32_t i = 0; i < vocab; i++) {
            acc += probs[i];
            if (acc > target && probs[i] > 0.0f)
                return (int32_t)i;
        }
        return best;
    }
    /* Nucleus: pop tokens from a heap in probability order until they hold top_p of the
     * mass; the heap makes that O(vocab + k log vocab) for a nucleus of k tokens. */
    for (uint32_t i = 0; i < vocab; i++)
        idx[i] = (float)i;
    for (uint32_t i = vocab / 2; i-- > 0;)
        pd_sample_sift(probs, idx, vocab, i);
    const double want = (s->top_p > 0.0f ? (double)s->top_p : 0.0) * total;
    double mass = 0.0;
    uint32_t k = 0, heap_n = vocab;
    /* Popped tokens go to the end of idx in pop order: idx[vocab-1] is the first. */
    while (heap_n > 0) {
        float top = idx[0];
        mass += probs[(uint32_t)top];
        heap_n--;
        idx[0] = idx[heap_n];
        idx[heap_n] = top;
        pd_sample_sift(probs, idx, heap_n, 0);
        k++;
        if (mass >= want)
            break;
    }
    double target = u * mass, acc = 0.0;
    for (uint32_t j = 0; j < k; j++) {
        uint32_t id = (uint32_t)idx[vocab - 1 - j];
        acc += probs[id];
        if (acc > target)
            return (int32_t)id;
    }
    return (int32_t)(uint32_t)idx[vocab - 1];
}
