/* Per-tier slot tables and lists, and the byte movers between G1, G2 and G3.
 *
 * A G3 file is "<dir>/<16 hex digits of the salted hash>-<model id>.kvblk":
 *   header: magic "PDKVBLK1", u64 hash, u64 payload bytes, u64 XXH3 of the payload seeded
 *           with the hash (host byte order: the files never leave this machine)
 *   payload: one block, (n_layers, 2, B, n_kv_heads, head_dim) f32
 * The hash is tenant-salted, so two tenants never share a file name; each manager has its
 * own subdirectory, so two workers never share a file. */
#include "kvblock_int.h"

#include "pd/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PD_KVBM_FILE_MAGIC "PDKVBLK1"
#define PD_KVBM_DIR_PREFIX "kvbm-"
#define PD_KVBM_MODEL_MAX  64

typedef struct pd_kvbm_file_header {
    char magic[8];
    uint64_t hash;
    uint64_t n_bytes;
    uint64_t checksum;
} pd_kvbm_file_header_t;

pd_status_t pd_kvbm_tier_init(pd_kvbm_tier_t *t, pd_kv_tier_t tier, uint32_t n_slots)
{
    memset(t, 0, sizeof(*t));
    t->tier = tier;
    t->n_slots = n_slots;
    t->free_head = PD_KVBM_NIL;
    t->lru.head = t->lru.tail = PD_KVBM_NIL;
    if (n_slots == 0)
        return PD_OK;
    size_t n = n_slots;
    t->hash = calloc(n, sizeof(*t->hash));
    t->expiry_ms = calloc(n, sizeof(*t->expiry_ms));
    t->retention_ms = calloc(n, sizeof(*t->retention_ms));
    t->prev = calloc(n, sizeof(*t->prev));
    t->next = calloc(n, sizeof(*t->next));
    t->state = calloc(n, sizeof(*t->state));
    if (tier == PD_KV_TIER_G1)
        t->refcount = calloc(n, sizeof(*t->refcount));
    if (t->hash == NULL || t->expiry_ms == NULL || t->retention_ms == NULL || t->prev == NULL ||
        t->next == NULL || t->state == NULL || (tier == PD_KV_TIER_G1 && t->refcount == NULL)) {
        pd_kvbm_tier_cleanup(t);
        return PD_ERR_NO_MEMORY;
    }
    /* Push in reverse so that ids come out in ascending order. */
    for (uint32_t s = n_slots; s-- > 0;)
        pd_kvbm_free_push(t, s);
    return PD_OK;
}

void pd_kvbm_tier_cleanup(pd_kvbm_tier_t *t)
{
    free(t->hash);
    free(t->expiry_ms);
    free(t->retention_ms);
    free(t->prev);
    free(t->next);
    free(t->refcount);
    free(t->state);
    memset(t, 0, sizeof(*t));
}

void pd_kvbm_list_remove(pd_kvbm_tier_t *t, uint32_t slot)
{
    uint32_t p = t->prev[slot], n = t->next[slot];
    if (p == PD_KVBM_NIL)
        t->lru.head = n;
    else
        t->next[p] = n;
    if (n == PD_KVBM_NIL)
        t->lru.tail = p;
    else
        t->prev[n] = p;
    t->prev[slot] = t->next[slot] = PD_KVBM_NIL;
    t->lru.n--;
}

void pd_kvbm_list_push_tail(pd_kvbm_tier_t *t, uint32_t slot)
{
    t->prev[slot] = t->lru.tail;
    t->next[slot] = PD_KVBM_NIL;
    if (t->lru.tail == PD_KVBM_NIL)
        t->lru.head = slot;
    else
        t->next[t->lru.tail] = slot;
    t->lru.tail = slot;
    t->lru.n++;
}

uint32_t pd_kvbm_free_pop(pd_kvbm_tier_t *t)
{
    uint32_t s = t->free_head;
    if (s == PD_KVBM_NIL)
        return s;
    t->free_head = t->next[s];
    t->next[s] = t->prev[s] = PD_KVBM_NIL;
    t->n_free--;
    return s;
}

void pd_kvbm_free_push(pd_kvbm_tier_t *t, uint32_t slot)
{
    t->state[slot] = PD_KVBM_SLOT_FREE;
    t->prev[slot] = PD_KVBM_NIL;
    t->next[slot] = t->free_head;
    t->free_head = slot;
    t->n_free++;
}

void pd_kvbm_gather(pd_kvbm_t *bm, uint32_t block, void *dst)
{
    unsigned char *out = dst; /* (n_layers, 2, B, kvh, hd) f32 */
    for (uint32_t l = 0; l < bm->layout.n_layers; l++)
        bm->copy(bm->copy_arg, out + (size_t)l * bm->block_layer_bytes,
                 bm->pool_base + pd_kv_offset(&bm->layout, l, block), bm->block_layer_bytes);
}

void pd_kvbm_scatter(pd_kvbm_t *bm, const void *src, uint32_t block)
{
    const unsigned char *in = src; /* (n_layers, 2, B, kvh, hd) f32 */
    for (uint32_t l = 0; l < bm->layout.n_layers; l++)
        bm->copy(bm->copy_arg, bm->pool_base + pd_kv_offset(&bm->layout, l, block),
                 in + (size_t)l * bm->block_layer_bytes, bm->block_layer_bytes);
}

const char *pd_kvbm_disk_path(pd_kvbm_t *bm, pd_block_hash_t hash)
{
    snprintf(bm->path, bm->path_cap, "%s/%016llx-%s.kvblk", bm->disk_dir, (unsigned long long)hash,
             bm->model_id);
    return bm->path;
}

/* Write all n bytes of out to fd (out non-NULL), or read n bytes from fd into in,
 * retrying interrupted and short calls: 0, or -1 on an error or the end of the file. */
static int pd_kvbm_fd_all(int fd, const void *out, void *in, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = out != NULL ? write(fd, (const unsigned char *)out + done, n - done)
                                : read(fd, (unsigned char *)in + done, n - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        done += (size_t)k;
    }
    return 0;
}

pd_status_t pd_kvbm_disk_write(pd_kvbm_t *bm, pd_block_hash_t hash, const void *src)
{
    pd_kvbm_file_header_t hdr;
    memcpy(hdr.magic, PD_KVBM_FILE_MAGIC, sizeof(hdr.magic));
    hdr.hash = hash;
    hdr.n_bytes = bm->block_bytes;
    hdr.checksum = pd_hash_bytes(src, bm->block_bytes, hash);

    const char *path = pd_kvbm_disk_path(bm, hash);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        pd_log_warn("kvbm: cannot create %s: %s", path, strerror(errno));
        return PD_ERR_IO;
    }
    int rc = pd_kvbm_fd_all(fd, &hdr, NULL, sizeof(hdr));
    if (rc == 0)
        rc = pd_kvbm_fd_all(fd, src, NULL, bm->block_bytes);
    if (close(fd) != 0)
        rc = -1;
    if (rc != 0) {
        pd_log_warn("kvbm: cannot write %s: %s", path, strerror(errno));
        unlink(path);
        return PD_ERR_IO;
    }
    return PD_OK;
}

pd_status_t pd_kvbm_disk_read(pd_kvbm_t *bm, pd_block_hash_t hash, void *dst)
{
    pd_status_t status = PD_OK;
    pd_kvbm_file_header_t hdr;
    const char *path = pd_kvbm_disk_path(bm, hash);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pd_log_warn("kvbm: cannot open %s: %s", path, strerror(errno));
        return PD_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != sizeof(hdr) + bm->block_bytes) {
        status = PD_ERR_FORMAT;
        goto out_close;
    }
    if (pd_kvbm_fd_all(fd, NULL, &hdr, sizeof(hdr)) != 0 ||
        pd_kvbm_fd_all(fd, NULL, dst, bm->block_bytes) != 0) {
        status = PD_ERR_IO;
        goto out_close;
    }
    if (memcmp(hdr.magic, PD_KVBM_FILE_MAGIC, sizeof(hdr.magic)) != 0 || hdr.hash != hash ||
        hdr.n_bytes != bm->block_bytes) {
        status = PD_ERR_FORMAT;
        goto out_close;
    }
    if (pd_hash_bytes(dst, bm->block_bytes, hash) != hdr.checksum)
        status = PD_ERR_CHECKSUM;
out_close:
    close(fd);
    if (status != PD_OK)
        pd_log_warn("kvbm: %s: %s", path, pd_status_str(status));
    return status;
}

void pd_kvbm_disk_unlink(pd_kvbm_t *bm, pd_block_hash_t hash)
{
    const char *path = pd_kvbm_disk_path(bm, hash);
    if (unlink(path) != 0 && errno != ENOENT)
        pd_log_warn("kvbm: cannot delete %s: %s", path, strerror(errno));
}

static char *kvbm_sanitize(const char *s)
{
    /* The tail of a long id (a path's last part) is the telling bit; the hash already
     * depends on all of it. */
    size_t n = strlen(s);
    if (n > PD_KVBM_MODEL_MAX)
        s += n - PD_KVBM_MODEL_MAX;
    char *out = strdup(s);
    if (out == NULL)
        return NULL;
    for (char *p = out; *p != '\0'; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            *p = '_';
    }
    return out;
}

/* Delete the block files in dir, then dir itself (which fails, harmlessly, if anything
 * else is in it). */
static void kvbm_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 6, ".kvblk") != 0)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path))
            unlink(path);
    }
    closedir(d);
    if (rmdir(dir) != 0)
        pd_log_warn("kvbm: cannot remove %s: %s", dir, strerror(errno));
}

/* Remove kvbm-<pid>-* subdirectories whose process is gone (a crash left them). */
static void kvbm_sweep_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, PD_KVBM_DIR_PREFIX, strlen(PD_KVBM_DIR_PREFIX)) != 0)
            continue;
        char *end = NULL;
        long pid = strtol(e->d_name + strlen(PD_KVBM_DIR_PREFIX), &end, 10);
        if (end == NULL || *end != '-' || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
            continue;
        pd_log_info("kvbm: removing %s, left by process %ld", path, pid);
        kvbm_remove_dir(path);
    }
    closedir(d);
}

pd_status_t pd_kvbm_disk_open(pd_kvbm_t *bm, const char *dir, const char *model_id)
{
    pd_status_t status = PD_ERR_NO_MEMORY;
    size_t dir_cap = strlen(dir) + 64;
    char *own = malloc(dir_cap);
    bm->model_id = kvbm_sanitize((model_id != NULL) ? model_id : "model");
    bm->staging = malloc(bm->block_bytes);
    if (own == NULL || bm->model_id == NULL || bm->staging == NULL)
        goto err_free_own;
    bm->path_cap = dir_cap + strlen(bm->model_id) + 32;
    bm->path = malloc(bm->path_cap);
    if (bm->path == NULL)
        goto err_free_own;
    status = PD_ERR_IO;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        pd_log_error("kvbm: cannot create %s: %s", dir, strerror(errno));
        goto err_free_own;
    }
    kvbm_sweep_stale(dir);
    snprintf(own, dir_cap, "%s/" PD_KVBM_DIR_PREFIX "%ld-XXXXXX", dir, (long)getpid());
    if (mkdtemp(own) == NULL) {
        pd_log_error("kvbm: cannot create a directory in %s: %s", dir, strerror(errno));
        goto err_free_own;
    }
    bm->disk_dir = own;
    return PD_OK;

err_free_own:
    free(own);
    return status;
}

void pd_kvbm_disk_close(pd_kvbm_t *bm)
{
    if (bm->disk_dir != NULL && bm->path != NULL) {
        for (uint32_t s = 0; s < bm->g3.n_slots; s++)
            if (bm->g3.state[s] == PD_KVBM_SLOT_CACHED)
                pd_kvbm_disk_unlink(bm, bm->g3.hash[s]);
        if (rmdir(bm->disk_dir) != 0)
            pd_log_warn("kvbm: cannot remove %s: %s", bm->disk_dir, strerror(errno));
    }
    free(bm->disk_dir);
    free(bm->model_id);
    free(bm->path);
    bm->disk_dir = bm->model_id = bm->path = NULL;
}
