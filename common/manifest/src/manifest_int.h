/* What manifest.c and manifest_args.c share. */
#ifndef PD_MANIFEST_INT_H
#define PD_MANIFEST_INT_H

#include <stddef.h>

/* Write a message into errbuf (n bytes, may be NULL or 0: then nothing is written). */
void pd_mf_err(char *errbuf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
