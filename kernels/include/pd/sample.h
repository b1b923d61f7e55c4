/* Seeded sampling. The random draw for the k-th generated token of a request depends only
 * on (seed, k), never on the process, the batch or the time, so prefill can sample token
 * 0 and decode the rest and still match a single process exactly. */
#ifndef PD_SAMPLE_H
#define PD_SAMPLE_H

#include <stdint.h>

typedef struct pd_sampling {
    float temperature; /* 0: greedy (argmax, lowest id on ties) */
    float top_p;       /* 1: off */
    uint64_t seed;
} pd_sampling_t;

/* A uniform draw in [0, 1) for (seed, step): splitmix64 of seed ^ step-mix, 24-bit. */
float pd_sample_uniform(uint64_t seed, uint64_t step);

/* Pick the token for generated index `step` from logits (vocab). scratch: (2 * vocab)
 * floats of caller storage (no allocation per token). logits may be modified. */
int32_t pd_sample_token(const pd_sampling_t *s, float *logits, uint32_t vocab, uint64_t step,
                        float *scratch);

#endif
