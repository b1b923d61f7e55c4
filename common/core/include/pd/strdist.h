/* How far apart two short names are, for "did you mean" after a typo in an option,
 * a manifest key or a command. */
#ifndef PD_STRDIST_H
#define PD_STRDIST_H

#include <stddef.h>

/* Edits (insert, delete, substitute, swap two neighbours) from a to b; names longer
 * than 63 bytes are 99 apart from everything. */
unsigned pd_str_distance(const char *a, const char *b);

/* The name of names[0..n) that a typo'd name most likely meant, or NULL when none is
 * close: within 1 edit for names up to 4 bytes, 2 up to 8, 3 beyond, or containing it
 * (or contained in it). */
const char *pd_str_closest(const char *name, const char *const *names, size_t n);

#endif
