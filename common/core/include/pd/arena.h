/* Per-request memory: a bump arena with cleanup handlers, freed as one. */
#ifndef PD_ARENA_H
#define PD_ARENA_H

#include <stddef.h>

typedef struct pd_arena pd_arena_t;
typedef void (*pd_arena_cleanup_fn)(void *arg);

/* Create an arena whose chunks are at least chunk_bytes (0 picks 4 KiB). */
pd_arena_t *pd_arena_create(size_t chunk_bytes);

/* Run the cleanup handlers (last registered first), free every chunk, clear *arena_p.
 * Accepts NULL and a pointer to NULL. */
void pd_arena_destroy(pd_arena_t **arena_p);

/* Allocate bytes aligned to 16; NULL when out of memory. The arena owns the memory. */
void *pd_arena_alloc(pd_arena_t *arena, size_t bytes);

/* Copy a string into the arena; NULL when out of memory. */
char *pd_arena_strdup(pd_arena_t *arena, const char *s);

/* Register fn(arg) to run when the arena is destroyed. Returns 0, or -1 out of memory. */
int pd_arena_on_cleanup(pd_arena_t *arena, pd_arena_cleanup_fn fn, void *arg);

/* Bytes handed out so far (for accounting and tests). */
size_t pd_arena_used_bytes(const pd_arena_t *arena);

#endif
