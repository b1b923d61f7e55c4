#include "pd/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct pd_arena_chunk {
    struct pd_arena_chunk *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char data[];
} pd_arena_chunk_t;

typedef struct pd_arena_handler {
    struct pd_arena_handler *next;
    pd_arena_cleanup_fn fn;
    void *arg;
} pd_arena_handler_t;

struct pd_arena {
    pd_arena_chunk_t *chunks;
    pd_arena_handler_t *handlers;
    size_t chunk_bytes;
    size_t used_bytes;
};

pd_arena_t *pd_arena_create(size_t chunk_bytes)
{
    pd_arena_t *arena = calloc(1, sizeof(*arena));
    if (arena == NULL)
        return NULL;
    arena->chunk_bytes = (chunk_bytes == 0) ? 4096 : chunk_bytes;
    return arena;
}

void pd_arena_destroy(pd_arena_t **arena_p)
{
    if (arena_p == NULL || *arena_p == NULL)
        return;
    pd_arena_t *arena = *arena_p;
    while (arena->handlers != NULL) {
        pd_arena_handler_t *h = arena->handlers;
        arena->handlers = h->next;
        h->fn(h->arg);
    }
    while (arena->chunks != NULL) {
        pd_arena_chunk_t *c = arena->chunks;
        arena->chunks = c->next;
        free(c);
    }
    free(arena);
    *arena_p = NULL;
}

void *pd_arena_alloc(pd_arena_t *arena, size_t bytes)
{
    size_t need = (bytes + 15u) & ~(size_t)15u;
    if (need < bytes)
        return NULL;
    pd_arena_chunk_t *c = arena->chunks;
    if (c == NULL || c->size - c->used < need) {
        size_t size = (need > arena->chunk_bytes) ? need : arena->chunk_bytes;
        if (size > SIZE_MAX - sizeof(*c))
            return NULL;
        c = malloc(sizeof(*c) + size);
        if (c == NULL)
            return NULL;
        c->size = size;
        c->used = 0;
        c->next = arena->chunks;
        arena->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    arena->used_bytes += bytes;
    return p;
}

char *pd_arena_strdup(pd_arena_t *arena, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = pd_arena_alloc(arena, n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

int pd_arena_on_cleanup(pd_arena_t *arena, pd_arena_cleanup_fn fn, void *arg)
{
    pd_arena_handler_t *h = pd_arena_alloc(arena, sizeof(*h));
    if (h == NULL)
        return -1;
    h->fn = fn;
    h->arg = arg;
    h->next = arena->handlers;
    arena->handlers = h;
    return 0;
}

size_t pd_arena_used_bytes(const pd_arena_t *arena)
{
    return arena->used_bytes;
}
