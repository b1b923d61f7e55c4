/* API key files: parsing, refusal of bad files with the reason, lookup by hash, limits,
 * and reloads that keep a key's usage. */
#include "gw_int.h"

#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static void setup(void)
{
    cr_assert_geq(sodium_init(), 0);
    snprintf(path, sizeof(path), "/tmp/pd-gw-keys-%d", (int)getpid());
}

static void teardown(void)
{
    unlink(path);
}

TestSuite(gw_keys, .init = setup, .fini = teardown);

static void line(FILE *f, const char *key, const char *rest)
{
    uint8_t h[32];
    char hex[65];
    crypto_hash_sha256(h, (const unsigned char *)key, strlen(key));
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    fprintf(f, "sha256:%s %s\n", hex, rest);
}

static void write_file(const char *a_rest, const char *b_rest)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "# comment\n\n");
    line(f, "sk-a", a_rest);
    if (b_rest != NULL)
        line(f, "sk-b", b_rest);
    fclose(f);
}

static void write_raw(const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(gw_keys, lookup_tenants_and_options)
{
    write_file("alice admin concurrency=2", "bob rpm=60");
    pd_gw_keys_t *k = NULL;
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_OK);
    cr_assert_eq(k->n, 2);
    pd_gw_key_t *a = pd_gw_keys_find(k, "sk-a", 4), *b = pd_gw_keys_find(k, "sk-b", 4);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_str_eq(a->tenant, "alice");
    cr_assert(a->admin);
    cr_assert_eq(a->concurrency, 2);
    cr_assert_str_eq(b->tenant, "bob");
    cr_assert(!b->admin);
    cr_assert_eq(b->rpm, 60);
    cr_assert_null(pd_gw_keys_find(k, "sk-c", 4));
    cr_assert_null(pd_gw_keys_find(k, "sk-a ", 5));
    pd_gw_keys_destroy(&k);
    cr_assert_null(k);
}

Test(gw_keys, bad_files_are_refused)
{
    pd_gw_keys_t *k = NULL;
    write_raw("sha256:1234 alice\n");
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_ERR_FORMAT);
    write_raw("# only a comment\n");
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_ERR_FORMAT);
    write_file("alice colour=blue", NULL);
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_ERR_FORMAT);
    write_file("alice rpm=-1", NULL);
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_ERR_FORMAT);
    write_file("alice", "alice");
    FILE *f = fopen(path, "a");
    line(f, "sk-a", "again"); /* the same key twice */
    fclose(f);
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_ERR_FORMAT);
    char tenant[80];
    memset(tenant, 't', 65);
    tenant[65] = '\0';
    write_file(tenant, NULL);
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_ERR_FORMAT);
    unlink(path);
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_ERR_IO);
    cr_assert_null(k);
}

Test(gw_keys, concurrency_and_rate_limits)
{
    write_file("alice concurrency=2", "bob rpm=2");
    pd_gw_keys_t *k = NULL;
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_OK);
    pd_gw_key_t *a = pd_gw_keys_find(k, "sk-a", 4), *b = pd_gw_keys_find(k, "sk-b", 4);
    uint32_t retry = 0;
    cr_assert_eq(pd_gw_key_admit(a, 1000, &retry), PD_OK);
    cr_assert_eq(pd_gw_key_admit(a, 1000, &retry), PD_OK);
    cr_assert_eq(pd_gw_key_admit(a, 1000, &retry), PD_ERR_OVERLOADED);
    cr_assert_eq(retry, 1);
    pd_gw_key_release(a);
    cr_assert_eq(pd_gw_key_admit(a, 1000, &retry), PD_OK);

    /* 2 per minute: two at once, then one more after 30 s. */
    cr_assert_eq(pd_gw_key_admit(b, 1000, &retry), PD_OK);
    cr_assert_eq(pd_gw_key_admit(b, 1000, &retry), PD_OK);
    cr_assert_eq(pd_gw_key_admit(b, 1000, &retry), PD_ERR_OVERLOADED);
    cr_assert_eq(retry, 30);
    cr_assert_eq(pd_gw_key_admit(b, 21000, &retry), PD_ERR_OVERLOADED);
    cr_assert_eq(retry, 10);
    cr_assert_eq(pd_gw_key_admit(b, 31000, &retry), PD_OK);
    pd_gw_keys_destroy(&k);
}

Test(gw_keys, reload_keeps_usage_and_references)
{
    write_file("alice concurrency=1", "bob");
    pd_gw_keys_t *k = NULL, *k2 = NULL;
    cr_assert_eq(pd_gw_keys_load(path, NULL, &k), PD_OK);
    pd_gw_key_t *a = pd_gw_keys_find(k, "sk-a", 4), *b = pd_gw_keys_find(k, "sk-b", 4);
    uint32_t retry;
    cr_assert_eq(pd_gw_key_admit(a, 0, &retry), PD_OK);
    pd_gw_key_ref(a); /* a request in flight holds it */
    pd_gw_key_ref(b);
    /* bob is removed, alice gets a new tenant name and a higher limit. */
    write_file("alice2 concurrency=2", NULL);
    cr_assert_eq(pd_gw_keys_load(path, k, &k2), PD_OK);
    pd_gw_keys_destroy(&k);
    pd_gw_key_t *a2 = pd_gw_keys_find(k2, "sk-a", 4);
    cr_assert_eq(a2, a, "a key listed again keeps its object");
    cr_assert_str_eq(a2->tenant, "alice2");
    cr_assert_eq(a2->in_flight, 1);
    cr_assert_null(pd_gw_keys_find(k2, "sk-b", 4));
    cr_assert_str_eq(b->tenant, "bob"); /* still valid for its request */
    pd_gw_key_unref(&b);
    pd_gw_key_release(a);
    pd_gw_key_unref(&a);
    pd_gw_keys_destroy(&k2);
}
