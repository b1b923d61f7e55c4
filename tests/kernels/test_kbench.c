/* pd-kbench --gemm, run as a user runs it: pdkv's prompt matmuls must give what OpenBLAS
 * sgemm gives on the same matrices (to f32 rounding with f32 weights, to the weights' own
 * rounding with bf16 and int8), for every shape and thread count; a build without OpenBLAS
 * says so. Its speed is not tested here (docs/PERFORMANCE.md). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Run pd-kbench with args; its stdout into out (cap bytes); returns the exit status. */
static int kbench(const char *args, char *out, size_t cap)
{
    const char *bin = getenv("PD_BIN_DIR");
    cr_assert_not_null(bin, "PD_BIN_DIR is set by ctest");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/pd-kbench %s 2>/dev/null", bin, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Every "max_diff_of_max" of the JSON below limit; returns how many there were. */
static int check_diffs(const char *json, double limit)
{
    int n = 0;
    for (const char *p = strstr(json, "\"max_diff_of_max\":"); p != NULL;
         p = strstr(p + 1, "\"max_diff_of_max\":")) {
        double d = strtod(p + strlen("\"max_diff_of_max\":"), NULL);
        cr_assert(d < limit, "shape %d: pdkv differs from sgemm by %g of the largest output", n, d);
        n++;
    }
    return n;
}

static void gemm_case(const char *weights, double limit)
{
    static char out[65536];
    char args[256];
    snprintf(args, sizeof(args),
             "--gemm --preset tiny --prompt 37 --runs 1 --threads 1,2 --json --weights %s",
             weights);
    cr_assert_eq(kbench(args, out, sizeof(out)), 0, "pd-kbench %s failed", args);
#ifdef PD_WITH_OPENBLAS
    cr_assert_not_null(strstr(out, "\"openblas\":true"), "%s", out);
    /* 8 products (q k v o gate up down lm_head) at 1 and 2 threads */
    cr_assert_eq(check_diffs(out, limit), 16, "%s", out);
#else
    (void)limit;
    cr_assert_not_null(strstr(out, "\"openblas\":false"), "%s", out);
#endif
    cr_assert_not_null(strstr(out, "\"layer_pdkv_gflops\":"), "%s", out);
}

Test(kbench, gemm_f32_equals_sgemm_to_rounding)
{
    gemm_case("f32", 1e-5);
}

Test(kbench, gemm_bf16_and_int8_within_their_rounding)
{
    gemm_case("bf16", 1e-2);
    gemm_case("int8", 2e-2);
}

Test(kbench, refuses_an_unknown_dtype)
{
    char out[4096];
    cr_assert_eq(kbench("--gemm --weights f12", out, sizeof(out)), 2);
}
