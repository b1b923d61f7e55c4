/* A driver for fuzz targets where libFuzzer is not at hand (gcc builds, ctest): runs the
 * target on each file named, or on the seed corpus the target's harness provides and
 * ITERATIONS deterministic mutations of it (byte changes, truncations, insertions,
 * splices of two seeds). --write-corpus DIR writes the seeds as files for libFuzzer. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seeds, from the harness: fills *data_p (malloc'd) for seed k; 0 past the last. */
size_t pd_fuzz_seed(int k, uint8_t **data_p);

static uint64_t pd_fuzz_rng = 0x2545f4914f6cdd1dull;

static uint64_t pd_fuzz_next(void)
{
    pd_fuzz_rng ^= pd_fuzz_rng << 13;
    pd_fuzz_rng ^= pd_fuzz_rng >> 7;
    pd_fuzz_rng ^= pd_fuzz_rng << 17;
    return pd_fuzz_rng;
}

/* Bytes msgpack gives meaning to: type tags at the edges of their ranges. */
static const uint8_t pd_fuzz_tags[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
                                       0xc1, 0xc2, 0xc3, 0xc4, 0xca, 0xcb, 0xcc, 0xcf, 0xd3,
                                       0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff};

static size_t pd_fuzz_mutate(uint8_t *buf, size_t n, size_t cap, const uint8_t *other,
                             size_t n_other)
{
    int n_edits = 1 + (int)(pd_fuzz_next() % 4);
    for (int e = 0; e < n_edits && n > 0; e++) {
        size_t at = pd_fuzz_next() % n;
        switch (pd_fuzz_next() % 5) {
        case 0:
            buf[at] = pd_fuzz_tags[pd_fuzz_next() % sizeof(pd_fuzz_tags)];
            break;
        case 1:
            buf[at] = (uint8_t)pd_fuzz_next();
            break;
        case 2: /* truncate */
            n = at;
            break;
        case 3: /* insert a byte */
            if (n < cap) {
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = (uint8_t)pd_fuzz_next();
                n++;
            }
            break;
        default: { /* splice the tail of another seed */
            size_t from = n_other ? pd_fuzz_next() % n_other : 0;
            size_t len = n_other - from;
            if (at + len > cap)
                len = cap - at;
            memcpy(buf + at, other + from, len);
            n = at + len;
            break;
        }
        }
    }
    return n;
}

static int pd_fuzz_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (n == cap && (buf = realloc(buf, cap = cap ? 2 * cap : 4096)) == NULL)
            abort();
        buf[n++] = (uint8_t)c;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    long iterations = 100000;
    uint8_t *seeds[256];
    size_t lens[256];
    int n_seeds = 0;

    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) {
        for (int k = 0; (lens[0] = pd_fuzz_seed(k, &seeds[0])) > 0; k++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/seed-%03d", argv[2], k);
            FILE *f = fopen(path, "wb");
            if (f == NULL || fwrite(seeds[0], 1, lens[0], f) != lens[0]) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return 1;
            }
            fclose(f);
            free(seeds[0]);
        }
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--iterations") == 0) {
        iterations = strtol(argv[2], NULL, 10);
    } else if (argc > 1) {
        int rc = 0;
        for (int i = 1; i < argc; i++)
            rc |= pd_fuzz_file(argv[i]);
        return rc;
    }
    while (n_seeds < 256 && (lens[n_seeds] = pd_fuzz_seed(n_seeds, &seeds[n_seeds])) > 0)
        n_seeds++;
    if (n_seeds == 0)
        return 1;
    size_t cap = 1 << 16;
    uint8_t *buf = malloc(cap);
    for (int k = 0; k < n_seeds; k++)
        LLVMFuzzerTestOneInput(seeds[k], lens[k]);
    for (long i = 0; i < iterations; i++) {
        int k = (int)(pd_fuzz_next() % (uint64_t)n_seeds);
        int o = (int)(pd_fuzz_next() % (uint64_t)n_seeds);
        size_t n = lens[k] < cap ? lens[k] : cap;
        memcpy(buf, seeds[k], n);
        n = pd_fuzz_mutate(buf, n, cap, seeds[o], lens[o]);
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("%ld inputs from %d seeds: no crash, every decoded frame re-encodes\n",
           iterations + n_seeds, n_seeds);
    free(buf);
    for (int k = 0; k < n_seeds; k++)
        free(seeds[k]);
    return 0;
}
