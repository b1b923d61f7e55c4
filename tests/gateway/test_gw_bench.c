/* pdctl bench --http: the same load through the gateway's OpenAI API as through the
 * router's socket gives the same figures request by request (prompt, cache reads, output
 * tokens), so every cluster figure can be reproduced through the front door; and it
 * refuses what the HTTP API cannot express, or a key the gateway refuses. */
#include "gw_test_util.h"

TestSuite(gw_bench, .fini = gt_stop, .timeout = 120);

/* Run pdctl bench with args (timeout 60 s), output to the test's stderr; exit status. */
static int gb_bench(const char *args)
{
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "timeout 60 %s/pdctl bench -q %s 1>&2", gt.env.bin, args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static json_t *gb_load(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    cr_assert_not_null(j, "%s: %s", path, e.text);
    return j;
}

static json_int_t gb_int(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    if (b != NULL)
        v = json_object_get(v, b);
    cr_assert(json_is_integer(v), "no integer %s.%s", a, b != NULL ? b : "");
    return json_integer_value(v);
}

Test(gw_bench, http_run_matches_the_router_run_request_by_request)
{
    gt_init();
    char keys[PATH_MAX];
    snprintf(keys, sizeof(keys), "%s/keys", gt.env.dir);
    const char *lines[] = {"key-bench", "bench"};
    gt_write_keys(keys, lines, 2);
    char extra[PATH_MAX + 16];
    snprintf(extra, sizeof(extra), "--keys %s", keys);
    gt_start_router("--min-cached-prefix 64");
    gt_start_workers();
    gt_start_gateway("gateway", extra, gt.url, sizeof(gt.url));
    gt_wait_ready();

    /* One request at a time, so that each finds the cache the previous ones left: the
     * router run as tenant "", the HTTP run as the key's tenant, each starting cold. */
    const char *load = "-N 8 -c 1 --prompt-len 80:100 --max-tokens 4 --shared-prefix 64 "
                       "--prefix-groups 2 --seed 3";
    char args[2 * PATH_MAX + 256];
    snprintf(args, sizeof(args), "-r %s %s --json %s/router.json", gt.client_ep, load, gt.env.dir);
    cr_assert_eq(gb_bench(args), 0);
    snprintf(args, sizeof(args), "--http %s --api-key key-bench %s --json %s/http.json", gt.url,
             load, gt.env.dir);
    cr_assert_eq(gb_bench(args), 0);

    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/router.json", gt.env.dir);
    json_t *zr = gb_load(path);
    snprintf(path, sizeof(path), "%s/http.json", gt.env.dir);
    json_t *hr = gb_load(path);
    json_t *za = json_object_get(zr, "requests"), *ha = json_object_get(hr, "requests");
    cr_assert_eq(json_array_size(ha), 8);
    cr_assert_eq(json_array_size(za), 8);
    json_int_t cached = 0;
    for (size_t i = 0; i < 8; i++) {
        json_t *z = json_array_get(za, i), *h = json_array_get(ha, i);
        cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "done", "request %zu", i);
        cr_assert_eq(gb_int(h, "prompt_tokens", NULL), gb_int(z, "prompt_tokens", NULL));
        cr_assert_eq(gb_int(h, "usage", "cache_read_input_tokens"),
                     gb_int(z, "usage", "cache_read_input_tokens"), "request %zu", i);
        cr_assert_eq(gb_int(h, "usage", "input_tokens"), gb_int(z, "usage", "input_tokens"));
        cr_assert_eq(gb_int(h, "usage", "output_tokens"), gb_int(z, "usage", "output_tokens"));
        cr_assert_eq(gb_int(h, "tokens_received", NULL), gb_int(h, "usage", "output_tokens"),
                     "every token arrived as an event");
        cr_assert(json_is_number(json_object_get(h, "ttft_ms")));
        cr_assert(json_is_null(json_object_get(json_object_get(h, "server"), "ttft_ms")),
                  "the OpenAI API has no server timings");
        cached += gb_int(h, "usage", "cache_read_input_tokens");
    }
    /* Every group's 64-token prefix read by each of its requests but the first: the ideal
     * cache's count. */
    cr_assert_gt(cached, 0);
    cr_assert_eq(cached, gb_int(json_object_get(hr, "summary"), "ideal_cache_hit_tokens", NULL));
    json_decref(zr);
    json_decref(hr);

    /* A wrong key fails the run at once; a tenant spread or a cache switch the API cannot
     * express is bad usage. */
    snprintf(args, sizeof(args), "--http %s --api-key nope -N 1", gt.url);
    cr_assert_eq(gb_bench(args), 1);
    snprintf(args, sizeof(args), "--http %s --api-key key-bench -N 2 --tenants 2", gt.url);
    cr_assert_eq(gb_bench(args), 2);
    snprintf(args, sizeof(args), "--http %s --api-key key-bench -N 2 --cache off", gt.url);
    cr_assert_eq(gb_bench(args), 2);
}
