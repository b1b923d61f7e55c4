/* pdctl's small shared helpers: number options with their ranges, and a growing text
 * buffer. */
#include "pdctl_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool pd_cli_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *v_p)
{
    char *end = NULL;
    errno = 0;
    if (s == NULL || s[0] < '0' || s[0] > '9') {
        fprintf(stderr, "pdctl: %s: '%s' is not a non-negative integer\n", opt, s ? s : "");
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        fprintf(stderr, "pdctl: %s: '%s' is not a non-negative integer\n", opt, s);
        return false;
    }
    if (v < min || v > max) {
        fprintf(stderr, "pdctl: %s: %llu is outside %llu..%llu\n", opt, v, (unsigned long long)min,
                (unsigned long long)max);
        return false;
    }
    *v_p = v;
    return true;
}

bool pd_cli_parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *v_p)
{
    uint64_t v;
    if (!pd_cli_parse_u64(opt, s, min, max, &v))
        return false;
    *v_p = (uint32_t)v;
    return true;
}

bool pd_cli_parse_f32(const char *opt, const char *s, float min, float max, float *v_p)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)) {
        fprintf(stderr, "pdctl: %s: '%s' is not a number\n", opt, s);
        return false;
    }
    if (v < min || v > max) {
        fprintf(stderr, "pdctl: %s: %g is outside %g..%g\n", opt, v, (double)min, (double)max);
        return false;
    }
    *v_p = (float)v;
    return true;
}

bool pd_cli_text_append(pd_cli_text_t *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *d = realloc(t->data, cap);
        if (d == NULL)
            return false;
        t->data = d;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
    return true;
}
