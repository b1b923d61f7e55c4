/* pd-proto-doc: docs/PROTOCOL.md's field tables, written from the protocol's schemas
 * (src/proto_schema.c): a row per field, nested keys as `usage.input_tokens` and
 * `workers[].id`, the type column from the kind and limits.
 *   pd-proto-doc                      print every table
 *   pd-proto-doc --update FILE        replace each table between its markers in FILE
 *   pd-proto-doc --check FILE         exit 1 (and print the table) if one differs */
#include "proto_int.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "uint", "uint >= 1", "uint <= 16", "uint 1..4096". */
static void pd_proto_doc_range(FILE *out, const char *what, uint64_t min, uint64_t max,
                               uint64_t type_max)
{
    fputs(what, out);
    if (min > 0 && max < type_max)
        fprintf(out, " %" PRIu64 "..%" PRIu64, min, max);
    else if (min > 0)
        fprintf(out, " >= %" PRIu64, min);
    else if (max < type_max)
        fprintf(out, " <= %" PRIu64, max);
}

static void pd_proto_doc_names(FILE *out, const char *const *names, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        fprintf(out, "%s`\"%s\"`", i ? " \\| " : "", names[i]);
}

static void pd_proto_doc_type(FILE *out, const pd_proto_field_t *f)
{
    static const char *const ttls[] = {"5m", "1h"};
    switch (f->kind) {
    case PD_PROTO_K_U64:
        pd_proto_doc_range(out, "uint64", f->min, f->max, UINT64_MAX);
        break;
    case PD_PROTO_K_U32:
        pd_proto_doc_range(out, "uint", f->min, f->max, UINT32_MAX);
        break;
    case PD_PROTO_K_TOKEN:
        fputs("token id", out);
        break;
    case PD_PROTO_K_F64:
        fprintf(out, "float %c%.10g, %.10g]", (f->flags & PD_PROTO_XMIN) ? '(' : '[', f->fmin,
                f->fmax);
        break;
    case PD_PROTO_K_BOOL:
        fputs("bool", out);
        break;
    case PD_PROTO_K_STR:
        pd_proto_doc_range(out, "str", f->min, f->size - 1, UINT64_MAX);
        break;
    case PD_PROTO_K_TEXT:
        pd_proto_doc_range(out, "str", f->min, f->max, UINT64_MAX);
        break;
    case PD_PROTO_K_BIN:
        pd_proto_doc_range(out, "bin", f->min, f->max, UINT64_MAX);
        break;
    case PD_PROTO_K_ENUM:
        pd_proto_doc_names(out, f->names, f->n_names);
        break;
    case PD_PROTO_K_CODE:
        fputs((f->flags & PD_PROTO_ERR) ? "error name" : "status name", out);
        break;
    case PD_PROTO_K_TTL:
        pd_proto_doc_names(out, ttls, 2);
        break;
    case PD_PROTO_K_TOKENS:
        pd_proto_doc_range(out, "[token id]", f->min, f->max, UINT64_MAX);
        break;
    case PD_PROTO_K_U64S:
        pd_proto_doc_range(out, "[uint64]", f->min, f->max, UINT64_MAX);
        break;
    case PD_PROTO_K_U32S:
        pd_proto_doc_range(out, "[uint]", f->min, f->max, UINT64_MAX);
        break;
    case PD_PROTO_K_MAP:
    case PD_PROTO_K_INLINE:
        fputs("map", out);
        break;
    case PD_PROTO_K_MAPS:
        pd_proto_doc_range(out, "[map]", f->min, f->max, UINT64_MAX);
        break;
    }
}

/* "yes", or "no" with the default an absent field takes. */
static void pd_proto_doc_required(FILE *out, const pd_proto_field_t *f)
{
    if (f->flags & PD_PROTO_REQ) {
        fputs("yes", out);
        return;
    }
    fputs("no", out);
    switch (f->kind) {
    case PD_PROTO_K_U64:
    case PD_PROTO_K_U32:
        fprintf(out, " (%" PRIu64 ")", f->def);
        break;
    case PD_PROTO_K_F64:
        fprintf(out, " (%.10g)", f->fdef);
        break;
    case PD_PROTO_K_BOOL:
        fputs(f->def ? " (true)" : " (false)", out);
        break;
    case PD_PROTO_K_ENUM:
        fprintf(out, " (`\"%s\"`)", f->names[f->def]);
        break;
    case PD_PROTO_K_TTL:
        fputs(f->def == PD_PROTO_TTL_1H_S ? " (`\"1h\"`)" : " (`\"5m\"`)", out);
        break;
    case PD_PROTO_K_STR:
    case PD_PROTO_K_TEXT:
        if (!(f->flags & PD_PROTO_OMIT))
            fputs(" (`\"\"`)", out);
        break;
    default:
        break;
    }
}

static void pd_proto_doc_rows(FILE *out, const pd_proto_schema_t *s, const char *prefix)
{
    for (uint32_t i = 0; i < s->n_fields; i++) {
        const pd_proto_field_t *f = &s->fields[i];
        char key[128];
        if (f->kind == PD_PROTO_K_INLINE) {
            pd_proto_doc_rows(out, f->sub, prefix);
            continue;
        }
        snprintf(key, sizeof(key), "%s%s", prefix, f->key);
        fprintf(out, "| `%s` | ", key);
        pd_proto_doc_type(out, f);
        fputs(" | ", out);
        pd_proto_doc_required(out, f);
        fprintf(out, " | %s |\n", f->doc ? f->doc : "");
        if (f->kind == PD_PROTO_K_MAP || f->kind == PD_PROTO_K_MAPS) {
            char sub[160];
            snprintf(sub, sizeof(sub), "%s%s", key, f->kind == PD_PROTO_K_MAPS ? "[]." : ".");
            pd_proto_doc_rows(out, f->sub, sub);
        }
    }
}

/* The table of one type, between the markers docs/PROTOCOL.md holds it in. */
static pd_status_t pd_proto_doc_table(pd_proto_type_t type, FILE *out)
{
    if ((int)type <= PD_PROTO_TYPE_NONE || type >= PD_PROTO_TYPE_COUNT_)
        return PD_ERR_INVALID_PARAM;
    const pd_proto_type_def_t *t = &pd_proto_type_defs[type];
    fprintf(out, "<!-- fields: %s %s -->\n", pd_proto_chan_name(t->chan), t->name);
    if (t->schema == NULL) {
        fputs("No fields.\n", out);
    } else {
        fputs("| field | type | required | meaning |\n|---|---|---|---|\n", out);
        pd_proto_doc_rows(out, t->schema, "");
    }
    if (t->rule != NULL)
        fprintf(out, "\nAnd: %s.\n", t->rule);
    fputs("<!-- end -->\n", out);
    return PD_OK;
}

static char *pd_proto_doc_render(pd_proto_type_t type, size_t *len_p)
{
    char *buf = NULL;
    FILE *out = open_memstream(&buf, len_p);
    if (out == NULL)
        return NULL;
    pd_status_t st = pd_proto_doc_table(type, out);
    fclose(out);
    if (st != PD_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Replace (write) or compare (!write) every table between its markers in the file at path.
 * Returns 0, or 1 when a table is missing or differs (compare) or the file cannot be
 * read or written. */
static int pd_proto_doc_update(const char *path, bool write)
{
    char *doc = NULL, *table = NULL;
    size_t doc_len = 0, len;
    int rc = 1, n_bad = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL || getdelim(&doc, &doc_len, '\0', f) < 0) {
        perror(path);
        goto out;
    }
    fclose(f);
    f = NULL;
    for (int t = PD_PROTO_TYPE_NONE + 1; t < PD_PROTO_TYPE_COUNT_; t++) {
        if ((table = pd_proto_doc_render((pd_proto_type_t)t, &len)) == NULL)
            goto out;
        /* The marker is the table's first line; the block ends after "<!-- end -->\n". */
        size_t marker = (size_t)(strchr(table, '\n') - table);
        char *start = strstr(doc, "<!-- fields: ");
        while (start != NULL && (strncmp(start, table, marker) != 0 || start[marker] != '\n'))
            start = strstr(start + 1, "<!-- fields: ");
        char *end = start ? strstr(start, "<!-- end -->\n") : NULL;
        if (end == NULL) {
            fprintf(stderr, "pd-proto-doc: %s has no block %.*s\n", path, (int)marker, table);
            n_bad++;
        } else if (!write) {
            end += strlen("<!-- end -->\n");
            if ((size_t)(end - start) != len || memcmp(start, table, len) != 0) {
                fprintf(stderr, "pd-proto-doc: %s differs from the schema here:\n%s", path, table);
                n_bad++;
            }
        } else {
            end += strlen("<!-- end -->\n");
            size_t head = (size_t)(start - doc), tail = strlen(end);
            char *next = malloc(head + len + tail + 1);
            if (next == NULL)
                goto out;
            memcpy(next, doc, head);
            memcpy(next + head, table, len);
            memcpy(next + head + len, end, tail + 1);
            free(doc);
            doc = next;
        }
        free(table);
        table = NULL;
    }
    if (write && ((f = fopen(path, "wb")) == NULL || fputs(doc, f) < 0)) {
        perror(path);
        goto out;
    }
    rc = n_bad ? 1 : 0;
out:
    if (f != NULL)
        fclose(f);
    free(doc);
    free(table);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && (strcmp(argv[1], "--update") == 0 || strcmp(argv[1], "--check") == 0))
        return pd_proto_doc_update(argv[2], strcmp(argv[1], "--update") == 0);
    if (argc != 1) {
        fprintf(stderr, "usage: pd-proto-doc [--update | --check] [docs/PROTOCOL.md]\n"
                        "Prints the field table of every message type as docs/PROTOCOL.md "
                        "holds it; --update replaces each one between its markers in the "
                        "file, --check exits 1 when one differs.\n");
        return 2;
    }
    for (int t = PD_PROTO_TYPE_NONE + 1; t < PD_PROTO_TYPE_COUNT_; t++) {
        pd_proto_doc_table((pd_proto_type_t)t, stdout);
        fputc('\n', stdout);
    }
    return 0;
}
