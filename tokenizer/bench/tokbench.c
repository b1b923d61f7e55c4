/* pd-tokbench: encode speed of a tokenizer on the lines of a text file, on one core.
 *
 *   pd-tokbench -t TOKENIZER -f FILE [--lines N] [--repeat R]
 *
 * Encodes each of the first N lines of FILE (all by default) as one text, with no special
 * tokens added, R times (default 5), and prints one JSON object: the bytes of one pass,
 * the median pass time, MB/s (10^6 bytes per second), tokens per pass and the passes. The
 * first pass starts with an empty word cache, as a fresh process would. Compare with
 * `node tests/js/tokenizers/reference.mjs bench DIR FILE R` on the same lines
 * (deploy/bench/tokenizer-bench.sh runs both). */
#include "pd/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double pd_tb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int pd_tb_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void pd_tb_usage(FILE *out)
{
    fprintf(out, "usage: pd-tokbench -t TOKENIZER -f FILE [--lines N] [--repeat R]\n");
}

int main(int argc, char **argv)
{
    const char *tok_path = NULL, *file = NULL;
    long max_lines = -1, repeat = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(a, "-t") == 0 || strcmp(a, "--tokenizer") == 0) && v)
            tok_path = v, i++;
        else if ((strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) && v)
            file = v, i++;
        else if (strcmp(a, "--lines") == 0 && v)
            max_lines = strtol(v, NULL, 10), i++;
        else if (strcmp(a, "--repeat") == 0 && v)
            repeat = strtol(v, NULL, 10), i++;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            pd_tb_usage(stdout);
            return 0;
        } else {
            pd_tb_usage(stderr);
            return 2;
        }
    }
    if (tok_path == NULL || file == NULL || repeat < 1 || repeat > 1000) {
        pd_tb_usage(stderr);
        return 2;
    }
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        perror(file);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (text == NULL || fread(text, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "pd-tokbench: cannot read %s\n", file);
        return 1;
    }
    fclose(f);
    /* line starts and lengths */
    size_t n = 0, cap = 1024;
    size_t *off = malloc(cap * sizeof(size_t)), *len = malloc(cap * sizeof(size_t));
    for (size_t a = 0; a < (size_t)size && (max_lines < 0 || (long)n < max_lines);) {
        char *nl = memchr(text + a, '\n', (size_t)size - a);
        size_t b = nl ? (size_t)(nl - text) : (size_t)size;
        if (n == cap) {
            cap *= 2;
            off = realloc(off, cap * sizeof(size_t));
            len = realloc(len, cap * sizeof(size_t));
        }
        off[n] = a;
        len[n++] = b - a;
        a = b + 1;
    }
    pd_tokenizer_t *tok = NULL;
    if (pd_tokenizer_open(tok_path, 0, &tok) != PD_OK) {
        fprintf(stderr, "pd-tokbench: cannot open tokenizer %s\n", tok_path);
        return 1;
    }
    size_t bytes = 0, max_len = 0;
    for (size_t i = 0; i < n; i++) {
        bytes += len[i];
        max_len = len[i] > max_len ? len[i] : max_len;
    }
    size_t id_cap = pd_tokenizer_max_tokens(tok, max_len) + 1;
    int32_t *ids = malloc(id_cap * sizeof(int32_t));
    double *runs = malloc((size_t)repeat * sizeof(double));
    size_t n_tokens = 0;
    for (long r = 0; r < repeat; r++) {
        size_t total = 0;
        double t0 = pd_tb_now();
        for (size_t i = 0; i < n; i++) {
            size_t got = 0;
            if (pd_tokenizer_encode(tok, text + off[i], len[i], 0, ids, id_cap, &got) != PD_OK) {
                fprintf(stderr, "pd-tokbench: line %zu failed to encode\n", i + 1);
                return 1;
            }
            total += got;
        }
        runs[r] = pd_tb_now() - t0;
        n_tokens = total;
    }
    double sorted[1000];
    memcpy(sorted, runs, (size_t)repeat * sizeof(double));
    qsort(sorted, (size_t)repeat, sizeof(double), pd_tb_cmp);
    double med = sorted[repeat / 2];
    printf("{\"tokenizer\": \"%s\", \"lines\": %zu, \"bytes\": %zu, \"tokens\": %zu, "
           "\"seconds\": %.6f, \"mb_per_s\": %.3f, \"runs\": [",
           tok_path, n, bytes, n_tokens, med, (double)bytes / 1e6 / med);
    for (long r = 0; r < repeat; r++)
        printf(r ? ", %.6f" : "%.6f", runs[r]);
    printf("]}\n");
    pd_tokenizer_destroy(&tok);
    free(ids);
    free(runs);
    free(off);
    free(len);
    free(text);
    return 0;
}
