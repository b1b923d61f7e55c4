/* "Did you mean": Damerau-Levenshtein distance (optimal string alignment) over names. */
#include "pd/strdist.h"

#include <string.h>

unsigned pd_str_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63)
        return 99;
    unsigned d[64][64];
    for (size_t i = 0; i <= na; i++)
        d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= nb; j++)
        d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= na; i++) {
        for (size_t j = 1; j <= nb; j++) {
            unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
            unsigned v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[na][nb];
}

const char *pd_str_closest(const char *name, const char *const *names, size_t n)
{
    const char *best = NULL;
    unsigned best_d = 0;
    size_t len = strlen(name);
    unsigned limit = len <= 4 ? 1 : (len <= 8 ? 2 : 3);
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL)
            continue;
        unsigned d = pd_str_distance(name, names[i]);
        /* "--timeout" for "--timeout-ms", "max_queue" for "router.max_queue". */
        if (d > limit && len >= 3 &&
            (strstr(names[i], name) != NULL || strstr(name, names[i]) != NULL))
            d = limit;
        if (d <= limit && (best == NULL || d < best_d)) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}
