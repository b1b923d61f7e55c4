/* API keys: a file of SHA-256 hashes, each mapped to a tenant and optional limits, read
 * at start and again on SIGHUP. The gateway never stores a key itself: it hashes what a
 * client presents and looks the hash up. Keys are random 32-character strings
 * (--keygen), so an unsalted hash is enough to make a leaked file useless.
 *
 *   # comment
 *   sha256:<64 hex digits> TENANT [admin] [rpm=N] [concurrency=N]
 *
 * The tenant salts every KV block hash of the key's requests (docs/API.md, "Keys"). */
#include "gw_int.h"

#include "pd/log.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PD_GW_MAX_KEYS       65536
#define PD_GW_KEY_LINE_BYTES 1024

static int pd_gw_key_cmp(const void *a, const void *b)
{
    const pd_gw_key_t *x = *(pd_gw_key_t *const *)a, *y = *(pd_gw_key_t *const *)b;
    return memcmp(x->hash, y->hash, PD_GW_KEY_HASH_BYTES);
}

static pd_gw_key_t *pd_gw_keys_lookup(const pd_gw_keys_t *keys, const uint8_t *hash)
{
    if (keys == NULL)
        return NULL;
    size_t lo = 0, hi = keys->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(keys->keys[mid]->hash, hash, PD_GW_KEY_HASH_BYTES);
        if (c == 0)
            return keys->keys[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void pd_gw_key_ref(pd_gw_key_t *key)
{
    key->refs++;
}

void pd_gw_key_unref(pd_gw_key_t **key_p)
{
    if (key_p == NULL || *key_p == NULL)
        return;
    if (--(*key_p)->refs == 0)
        free(*key_p);
    *key_p = NULL;
}

static bool pd_gw_keys_parse_limit(const char *word, const char *name, uint32_t *v_p)
{
    size_t n = strlen(name);
    if (strncmp(word, name, n) != 0 || word[n] != '=')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(word + n + 1, &end, 10);
    if (word[n + 1] < '0' || word[n + 1] > '9' || errno != 0 || *end != '\0' || v > 1000000000)
        return false;
    *v_p = (uint32_t)v;
    return true;
}

/* One line into key (not yet in a table). Returns PD_OK, PD_INPROGRESS for a blank or
 * comment line, PD_ERR_FORMAT with the reason logged. */
static pd_status_t pd_gw_keys_parse_line(const char *path, unsigned lineno, char *line,
                                         pd_gw_key_t *key)
{
    char *save = NULL;
    char *word = strtok_r(line, " \t\r\n", &save);
    if (word == NULL || word[0] == '#')
        return PD_INPROGRESS;
    memset(key, 0, sizeof(*key));
    if (strncmp(word, "sha256:", 7) != 0 || strlen(word + 7) != 2 * PD_GW_KEY_HASH_BYTES ||
        sodium_hex2bin(key->hash, sizeof(key->hash), word + 7, 2 * PD_GW_KEY_HASH_BYTES, NULL, NULL,
                       NULL) != 0) {
        pd_log_error("keys %s:%u: expected 'sha256:<64 hex digits> TENANT [admin] [rpm=N] "
                     "[concurrency=N]'",
                     path, lineno);
        return PD_ERR_FORMAT;
    }
    word = strtok_r(NULL, " \t\r\n", &save);
    if (word == NULL || strlen(word) >= PD_PROTO_NAME_CAP) {
        pd_log_error("keys %s:%u: a tenant name of 1..64 bytes must follow the hash", path, lineno);
        return PD_ERR_FORMAT;
    }
    memcpy(key->tenant, word, strlen(word) + 1);
    while ((word = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
        if (strcmp(word, "admin") == 0)
            key->admin = true;
        else if (!pd_gw_keys_parse_limit(word, "rpm", &key->rpm) &&
                 !pd_gw_keys_parse_limit(word, "concurrency", &key->concurrency)) {
            pd_log_error("keys %s:%u: unknown option '%s' (admin, rpm=N, concurrency=N)", path,
                         lineno, word);
            return PD_ERR_FORMAT;
        }
    }
    return PD_OK;
}

void pd_gw_keys_destroy(pd_gw_keys_t **keys_p)
{
    if (keys_p == NULL || *keys_p == NULL)
        return;
    pd_gw_keys_t *k = *keys_p;
    for (uint32_t i = 0; i < k->n; i++)
        pd_gw_key_unref(&k->keys[i]);
    free(k->keys);
    free(k);
    *keys_p = NULL;
}

pd_status_t pd_gw_keys_load(const char *path, const pd_gw_keys_t *old, pd_gw_keys_t **keys_p)
{
    pd_status_t st = PD_OK;
    char line[PD_GW_KEY_LINE_BYTES];
    unsigned lineno = 0;
    uint32_t cap = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        pd_log_error("keys %s: %s", path, strerror(errno));
        return PD_ERR_IO;
    }
    pd_gw_keys_t *keys = calloc(1, sizeof(*keys));
    if (keys == NULL) {
        fclose(f);
        return PD_ERR_NO_MEMORY;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            pd_log_error("keys %s:%u: line longer than %d bytes", path, lineno,
                         PD_GW_KEY_LINE_BYTES - 2);
            st = PD_ERR_FORMAT;
            goto out;
        }
        pd_gw_key_t parsed;
        st = pd_gw_keys_parse_line(path, lineno, line, &parsed);
        if (st == PD_INPROGRESS) {
            st = PD_OK;
            continue;
        }
        if (st != PD_OK)
            goto out;
        if (keys->n == PD_GW_MAX_KEYS) {
            pd_log_error("keys %s: more than %d keys", path, PD_GW_MAX_KEYS);
            st = PD_ERR_LIMIT;
            goto out;
        }
        if (keys->n == cap) {
            cap = cap ? 2 * cap : 64;
            pd_gw_key_t **grown = realloc(keys->keys, cap * sizeof(*grown));
            if (grown == NULL) {
                st = PD_ERR_NO_MEMORY;
                goto out;
            }
            keys->keys = grown;
        }
        /* A key listed before keeps its object, so its usage (in flight, rate) carries
         * over; only its settings change. */
        pd_gw_key_t *key = pd_gw_keys_lookup(old, parsed.hash);
        if (key != NULL) {
            pd_gw_key_ref(key);
            memcpy(key->tenant, parsed.tenant, sizeof(key->tenant));
            key->admin = parsed.admin;
            key->rpm = parsed.rpm;
            key->concurrency = parsed.concurrency;
        } else {
            key = malloc(sizeof(*key));
            if (key == NULL) {
                st = PD_ERR_NO_MEMORY;
                goto out;
            }
            *key = parsed;
            key->refs = 1;
            key->bucket = parsed.rpm;
        }
        keys->keys[keys->n++] = key;
    }
    qsort(keys->keys, keys->n, sizeof(*keys->keys), pd_gw_key_cmp);
    for (uint32_t i = 1; i < keys->n; i++) {
        if (memcmp(keys->keys[i - 1]->hash, keys->keys[i]->hash, PD_GW_KEY_HASH_BYTES) == 0) {
            pd_log_error("keys %s: a key is listed twice (tenants '%s' and '%s')", path,
                         keys->keys[i - 1]->tenant, keys->keys[i]->tenant);
            st = PD_ERR_FORMAT;
            goto out;
        }
    }
    if (keys->n == 0) {
        pd_log_error("keys %s: no key listed (an empty file would refuse every request)", path);
        st = PD_ERR_FORMAT;
    }
out:
    fclose(f);
    if (st != PD_OK) {
        pd_gw_keys_destroy(&keys);
        return st;
    }
    *keys_p = keys;
    return PD_OK;
}

pd_gw_key_t *pd_gw_keys_find(const pd_gw_keys_t *keys, const char *secret, size_t len)
{
    uint8_t hash[PD_GW_KEY_HASH_BYTES];
    crypto_hash_sha256(hash, (const unsigned char *)secret, len);
    return pd_gw_keys_lookup(keys, hash);
}

pd_status_t pd_gw_key_admit(pd_gw_key_t *key, uint64_t now_ms, uint32_t *retry_after_s_p)
{
    if (key->concurrency > 0 && key->in_flight >= key->concurrency) {
        *retry_after_s_p = 1;
        return PD_ERR_OVERLOADED;
    }
    if (key->rpm > 0) {
        /* A token bucket holding up to a minute's requests, refilled continuously. */
        double per_ms = key->rpm / 60000.0;
        if (key->bucket_ms != 0 && now_ms > key->bucket_ms)
            key->bucket += (double)(now_ms - key->bucket_ms) * per_ms;
        if (key->bucket > key->rpm)
            key->bucket = key->rpm;
        key->bucket_ms = now_ms;
        if (key->bucket < 1.0) {
            double wait_s = (1.0 - key->bucket) / per_ms / 1000.0;
            *retry_after_s_p = (uint32_t)ceil(wait_s) > 0 ? (uint32_t)ceil(wait_s) : 1;
            return PD_ERR_OVERLOADED;
        }
        key->bucket -= 1.0;
    }
    key->in_flight++;
    return PD_OK;
}

void pd_gw_key_release(pd_gw_key_t *key)
{
    if (key->in_flight > 0)
        key->in_flight--;
}

static void pd_gw_keys_print_line(const char *key, size_t len, const char *tenant)
{
    uint8_t hash[PD_GW_KEY_HASH_BYTES];
    char hex[2 * PD_GW_KEY_HASH_BYTES + 1];
    crypto_hash_sha256(hash, (const unsigned char *)key, len);
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    printf("sha256:%s %s\n", hex, tenant);
}

int pd_gw_keys_keygen(const char *tenant)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "pd-gateway: libsodium could not start\n");
        return 1;
    }
    if (tenant[0] == '\0' || strlen(tenant) >= PD_PROTO_NAME_CAP || strpbrk(tenant, " \t#")) {
        fprintf(stderr, "pd-gateway: --keygen TENANT: 1..64 bytes, no blanks or '#'\n");
        return 2;
    }
    uint8_t raw[24];
    char b64[sodium_base64_ENCODED_LEN(sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char key[64];
    snprintf(key, sizeof(key), "pdkv-%s", b64);
    printf("key %s\n", key);
    printf("# the key file line (the file holds only the hash):\n");
    pd_gw_keys_print_line(key, strlen(key), tenant);
    sodium_memzero(raw, sizeof(raw));
    sodium_memzero(key, sizeof(key));
    return 0;
}

int pd_gw_keys_hash_stdin(void)
{
    char line[PD_GW_KEY_LINE_BYTES];
    if (sodium_init() < 0 || fgets(line, sizeof(line), stdin) == NULL) {
        fprintf(stderr, "pd-gateway: --hash-key reads one key from stdin\n");
        return 1;
    }
    size_t n = strcspn(line, "\r\n");
    if (n == 0) {
        fprintf(stderr, "pd-gateway: --hash-key: empty key\n");
        return 1;
    }
    pd_gw_keys_print_line(line, n, "TENANT");
    sodium_memzero(line, sizeof(line));
    return 0;
}
