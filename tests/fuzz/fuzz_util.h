/* Helpers the fuzz harnesses share: quiet logs, and the input as a file for the decoders
 * that read from a path (a memfd, named through /proc/self/fd: no disk, no cleanup). */
#ifndef PD_FUZZ_UTIL_H
#define PD_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoders log each refusal at error level; a fuzzer makes millions of them. Their
 * stdio stream goes to /dev/null (PD_FUZZ_LOG=1 keeps it); the sanitizers and libFuzzer
 * write to the file descriptor, so their reports still show. */
static inline void pd_fuzz_quiet(void)
{
    static int done;
    if (!done) {
        done = 1;
        FILE *null = getenv("PD_FUZZ_LOG") == NULL ? fopen("/dev/null", "w") : NULL;
        if (null != NULL)
            stderr = null;
    }
}

/* A path whose file holds exactly data[0 .. size) (rewritten on every call). */
static inline const char *pd_fuzz_as_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("pd-fuzz", MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("pd-fuzz: writing the input file");
        abort();
    }
    return path;
}

/* Split data at the first "\n----\n": the part before into *a, after into *b (NUL-ended
 * copies, malloc'd); *b is NULL without the separator. */
static inline void pd_fuzz_split(const uint8_t *data, size_t size, char **a, size_t *a_len,
                                 char **b, size_t *b_len)
{
    static const char sep[] = "\n----\n";
    size_t at = size;
    for (size_t i = 0; i + sizeof(sep) - 1 <= size; i++) {
        if (memcmp(data + i, sep, sizeof(sep) - 1) == 0) {
            at = i;
            break;
        }
    }
    *a = malloc(at + 1);
    if (*a == NULL)
        abort();
    memcpy(*a, data, at);
    (*a)[at] = '\0';
    *a_len = at;
    *b = NULL;
    *b_len = 0;
    if (at < size) {
        size_t off = at + sizeof(sep) - 1, n = size - off;
        *b = malloc(n + 1);
        if (*b == NULL)
            abort();
        memcpy(*b, data + off, n);
        (*b)[n] = '\0';
        *b_len = n;
    }
}

#endif
