/* A driver for fuzz targets where libFuzzer is not at hand (gcc builds, ctest): runs the
 * target on each file named, or on the seed corpus (the files of --corpus DIR, kept in
 * tests/fuzz/corpus/NAME, plus any seeds the harness builds in code) and ITERATIONS
 * deterministic mutations of it (byte changes, truncations, insertions, splices of two
 * seeds). --write-corpus DIR writes the built-in seeds as files for libFuzzer. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seeds a harness may build in code: fills *data_p (malloc'd) for seed k; 0 past the
 * last. A harness without any (its corpus is files) leaves this default. */
size_t pd_fuzz_seed(int k, uint8_t **data_p) __attribute__((weak));
size_t pd_fuzz_seed(int k, uint8_t **data_p)
{
    (void)k;
    (void)data_p;
    return 0;
}

#define PD_FUZZ_MAX_SEEDS 1024

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

/* A whole file into *buf_p (malloc'd, at least one byte); -1 when it cannot be read. */
static int pd_fuzz_read(const char *path, uint8_t **buf_p, size_t *n_p)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(4096);
    size_t n = 0, cap = 4096;
    size_t got;
    if (buf == NULL)
        abort();
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap && (buf = realloc(buf, cap *= 2)) == NULL)
            abort();
    }
    fclose(f);
    *buf_p = buf;
    *n_p = n;
    return 0;
}

static int pd_fuzz_file(const char *path)
{
    uint8_t *buf;
    size_t n;
    if (pd_fuzz_read(path, &buf, &n) != 0)
        return 1;
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int pd_fuzz_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of dir (sorted by name, so that runs repeat) appended to the seeds. */
static int pd_fuzz_load_corpus(const char *dir, uint8_t **seeds, size_t *lens, int *n_p)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "%s: %s\n", dir, strerror(errno));
        return -1;
    }
    char *names[PD_FUZZ_MAX_SEEDS];
    int n_names = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n_names < PD_FUZZ_MAX_SEEDS) {
        if (de->d_name[0] != '.' && (names[n_names] = strdup(de->d_name)) != NULL)
            n_names++;
    }
    closedir(d);
    qsort(names, (size_t)n_names, sizeof(names[0]), pd_fuzz_name_cmp);
    int rc = 0;
    for (int i = 0; i < n_names; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (*n_p < PD_FUZZ_MAX_SEEDS && rc == 0) {
            if (pd_fuzz_read(path, &seeds[*n_p], &lens[*n_p]) == 0)
                (*n_p)++;
            else
                rc = -1;
        }
        free(names[i]);
    }
    return rc;
}

int main(int argc, char **argv)
{
    long iterations = 100000;
    static uint8_t *seeds[PD_FUZZ_MAX_SEEDS];
    static size_t lens[PD_FUZZ_MAX_SEEDS];
    int n_seeds = 0;
    const char *corpus = NULL;

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
    int argi = 1;
    while (argi + 1 < argc && argv[argi][0] == '-' && argv[argi][1] == '-') {
        if (strcmp(argv[argi], "--iterations") == 0) {
            char *end;
            iterations = strtol(argv[argi + 1], &end, 10);
            if (*end != '\0' || iterations < 0) {
                fprintf(stderr, "--iterations wants a count, not '%s'\n", argv[argi + 1]);
                return 2;
            }
        } else if (strcmp(argv[argi], "--corpus") == 0) {
            corpus = argv[argi + 1];
        } else {
            break;
        }
        argi += 2;
    }
    if (argi < argc) {
        int rc = 0;
        for (int i = argi; i < argc; i++)
            rc |= pd_fuzz_file(argv[i]);
        return rc;
    }
    while (n_seeds < PD_FUZZ_MAX_SEEDS &&
           (lens[n_seeds] = pd_fuzz_seed(n_seeds, &seeds[n_seeds])) > 0)
        n_seeds++;
    if (corpus != NULL && pd_fuzz_load_corpus(corpus, seeds, lens, &n_seeds) != 0)
        return 1;
    if (n_seeds == 0) {
        fprintf(stderr, "no seeds: give --corpus DIR\n");
        return 1;
    }
    size_t cap = 1 << 18;
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
    printf("%ld inputs from %d seeds: no crash\n", iterations + n_seeds, n_seeds);
    free(buf);
    for (int k = 0; k < n_seeds; k++)
        free(seeds[k]);
    return 0;
}
