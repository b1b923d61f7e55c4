/* Mutated and truncated checkpoints: whatever the bytes, loading returns a status and
 * never crashes (run under -DPD_SANITIZE="address;undefined" to catch reads out of range). */
#include "pd/loader.h"
#include "pd/log.h"
#include "pd/model.h"
#include "pd/presets.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned char *read_all(const char *path, size_t *len_p)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len);
    cr_assert_eq(fread(buf, 1, len, f), len);
    fclose(f);
    *len_p = len;
    return buf;
}

static void write_all(const char *path, const unsigned char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* Load dir; count how often it succeeded. */
static void try_load(const char *dir, int *n_ok)
{
    pd_model_t *m = NULL;
    pd_status_t st = pd_model_load(dir, &m);
    if (st == PD_OK) {
        cr_assert_not_null(m);
        (*n_ok)++;
        pd_model_destroy(&m);
    } else {
        cr_assert_null(m);
        cr_assert_lt(st, 0);
    }
}

Test(load_fuzz, mutated_safetensors_headers_never_crash)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    snprintf(dir, sizeof(dir), "/tmp/pd_test_fuzz_%d", (int)getpid());
    pd_model_config_t c;
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    pd_model_init_random(m, 2);
    cr_assert_eq(pd_model_save_hf(m, dir, PD_DTYPE_F16, NULL, NULL), PD_OK);
    pd_model_destroy(&m);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    size_t len;
    unsigned char *orig = read_all(path, &len);
    uint64_t hlen;
    memcpy(&hlen, orig, 8);
    unsigned char *buf = malloc(len);
    uint64_t seed = 42;
    int n_ok = 0;
    pd_log_set_level(PD_LOG_LEVEL_ERROR);
    for (int iter = 0; iter < 400; iter++) {
        memcpy(buf, orig, len);
        int n_mut = 1 + (int)(rng_next(&seed) % 4);
        for (int k = 0; k < n_mut; k++) {
            size_t at = (size_t)(rng_next(&seed) % (8 + hlen));
            uint64_t r = rng_next(&seed);
            /* Half the time a structural character, else any byte. */
            static const char structural[] = "{}[]\",:0123456789 -e.";
            buf[at] = (r & 1) ? (unsigned char)structural[(r >> 8) % (sizeof(structural) - 1)]
                              : (unsigned char)(r >> 16);
        }
        write_all(path, buf, len);
        try_load(dir, &n_ok);
    }
    for (int iter = 0; iter < 60; iter++) {
        size_t cut = (size_t)(rng_next(&seed) % len);
        write_all(path, orig, cut);
        try_load(dir, &n_ok);
    }
    write_all(path, orig, len);
    try_load(dir, &n_ok);
    cr_assert_geq(n_ok, 1);
    free(buf);
    free(orig);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
