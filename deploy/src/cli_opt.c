/* pdctl's option parser (see cli_opt.h). Written by hand rather than on getopt_long
 * because getopt_long cannot say which option a typo meant, cannot mark a spelling as
 * deprecated, and prints its own messages in its own style. */
#include "cli_opt.h"

#include "pd/strdist.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pd_cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pdctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void pd_cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pdctl: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void pd_cli_parser_init(pd_cli_parser_t *p, const char *cmd, int argc, char **argv,
                        const pd_cli_opt_t *opts)
{
    memset(p, 0, sizeof(*p));
    p->cmd = cmd;
    p->argc = argc;
    p->argv = argv;
    p->opts = opts;
    p->next = 1;
}

/* The option whose name is closest to name, if close enough to be a typo of it. */
static const pd_cli_opt_t *pd_cli_opt_closest(const pd_cli_opt_t *opts, const char *name)
{
    const char *names[128];
    size_t n = 0;
    for (const pd_cli_opt_t *o = opts; o->name != NULL && n < 128; o++)
        names[n++] = o->name;
    const char *best = pd_str_closest(name, names, n);
    for (const pd_cli_opt_t *o = opts; best != NULL && o->name != NULL; o++)
        if (o->name == best)
            return o;
    return NULL;
}

static const pd_cli_opt_t *pd_cli_opt_canonical(const pd_cli_opt_t *opts, const pd_cli_opt_t *o)
{
    if (o->alias_of == NULL)
        return o;
    for (const pd_cli_opt_t *c = opts; c->name != NULL; c++)
        if (c->alias_of == NULL && strcmp(c->name, o->alias_of) == 0)
            return c;
    return o;
}

/* Accept o as spelled (how the user wrote it); warn for deprecated spellings and take
 * its value from inline (after '=' or a short letter) or the next argv element. */
static int pd_cli_opt_take(pd_cli_parser_t *p, const pd_cli_opt_t *o, const char *spelled,
                           const char *inline_val)
{
    const pd_cli_opt_t *c = pd_cli_opt_canonical(p->opts, o);
    static char canon[80];
    snprintf(canon, sizeof(canon), "--%s", c->name);
    p->opt = canon;
    p->arg = NULL;
    if (o->alias_of != NULL)
        pd_cli_warn("%s: '%s' is deprecated and will be removed in the next release; use '%s'",
                    p->cmd, spelled, canon);
    if (!o->has_arg) {
        if (inline_val != NULL) {
            pd_cli_error("%s: %s takes no value (got '%s')", p->cmd, spelled, inline_val);
            return PD_CLI_OPT_ERROR;
        }
        return c->id;
    }
    if (inline_val != NULL) {
        p->arg = inline_val;
    } else if (p->next < p->argc) {
        p->arg = p->argv[p->next++];
    } else {
        pd_cli_error("%s: %s needs a value (see 'pdctl %s --help')", p->cmd, spelled, p->cmd);
        return PD_CLI_OPT_ERROR;
    }
    return c->id;
}

static int pd_cli_opt_long(pd_cli_parser_t *p, const char *word)
{
    char name[80];
    const char *eq = strchr(word + 2, '=');
    size_t len = eq ? (size_t)(eq - (word + 2)) : strlen(word + 2);
    if (len >= sizeof(name))
        len = sizeof(name) - 1;
    memcpy(name, word + 2, len);
    name[len] = '\0';
    const char *inline_val = eq ? eq + 1 : NULL;

    const pd_cli_opt_t *match = NULL;
    for (const pd_cli_opt_t *o = p->opts; o->name != NULL; o++)
        if (strcmp(o->name, name) == 0)
            match = o;
    if (match == NULL) {
        /* A unique prefix of a current name, as getopt_long allowed ("--temp"). */
        int n_prefix = 0;
        for (const pd_cli_opt_t *o = p->opts; o->name != NULL; o++)
            if (o->alias_of == NULL && len > 0 && strncmp(o->name, name, len) == 0) {
                match = o;
                n_prefix++;
            }
        if (n_prefix > 1) {
            pd_cli_error("%s: --%s is ambiguous (see 'pdctl %s --help')", p->cmd, name, p->cmd);
            return PD_CLI_OPT_ERROR;
        }
    }
    if (match == NULL) {
        const pd_cli_opt_t *close = pd_cli_opt_closest(p->opts, name);
        if (close != NULL)
            pd_cli_error("%s: unknown option --%s; did you mean --%s?", p->cmd, name,
                         pd_cli_opt_canonical(p->opts, close)->name);
        else
            pd_cli_error("%s: unknown option --%s (see 'pdctl %s --help')", p->cmd, name, p->cmd);
        return PD_CLI_OPT_ERROR;
    }
    char spelled[84];
    snprintf(spelled, sizeof(spelled), "--%s", name);
    return pd_cli_opt_take(p, match, spelled, inline_val);
}

static int pd_cli_opt_short(pd_cli_parser_t *p, const char *word)
{
    const pd_cli_opt_t *match = NULL;
    for (const pd_cli_opt_t *o = p->opts; o->name != NULL; o++)
        if (o->short_name == word[1])
            match = o;
    char spelled[3] = {'-', word[1], '\0'};
    if (match == NULL) {
        /* "-max-tokens" for "--max-tokens" */
        for (const pd_cli_opt_t *o = p->opts; o->name != NULL; o++)
            if (strcmp(o->name, word + 1) == 0) {
                pd_cli_error("%s: unknown option %s; did you mean --%s?", p->cmd, word, o->name);
                return PD_CLI_OPT_ERROR;
            }
        pd_cli_error("%s: unknown option %s (see 'pdctl %s --help')", p->cmd, spelled, p->cmd);
        return PD_CLI_OPT_ERROR;
    }
    const char *inline_val = word[2] != '\0' ? word + 2 : NULL;
    if (inline_val != NULL && !match->has_arg) {
        pd_cli_error("%s: %s takes no value (got '%s'); write one option per word", p->cmd, spelled,
                     inline_val);
        return PD_CLI_OPT_ERROR;
    }
    return pd_cli_opt_take(p, match, spelled, inline_val);
}

int pd_cli_opt_next(pd_cli_parser_t *p)
{
    while (p->next < p->argc) {
        const char *w = p->argv[p->next++];
        if (!p->only_pos && strcmp(w, "--") == 0) {
            p->only_pos = true;
            continue;
        }
        if (p->only_pos || w[0] != '-' || w[1] == '\0') {
            if (p->n_pos == PD_CLI_OPT_MAX_POS) {
                pd_cli_error("%s: too many arguments", p->cmd);
                return PD_CLI_OPT_ERROR;
            }
            p->pos[p->n_pos++] = w;
            continue;
        }
        if (w[1] == '-')
            return pd_cli_opt_long(p, w);
        return pd_cli_opt_short(p, w);
    }
    return PD_CLI_OPT_END;
}

bool pd_cli_parser_want_pos(const pd_cli_parser_t *p, int min, int max, const char *what)
{
    if (p->n_pos < min) {
        pd_cli_error("%s: missing %s (see 'pdctl %s --help')", p->cmd, what, p->cmd);
        return false;
    }
    if (p->n_pos > max) {
        pd_cli_error("%s: unexpected argument '%s'", p->cmd, p->pos[max]);
        return false;
    }
    return true;
}

bool pd_cli_parse_endpoint(const char *opt, const char *s, char *out, size_t n)
{
    if (strncmp(s, "ipc://", 6) == 0 || strncmp(s, "inproc://", 9) == 0) {
        if (strlen(s) >= n)
            goto bad;
        snprintf(out, n, "%s", s);
        return true;
    }
    const char *hp = strncmp(s, "tcp://", 6) == 0 ? s + 6 : s;
    if (strstr(hp, "://") != NULL)
        goto bad;
    const char *colon = strrchr(hp, ':');
    if (colon == NULL)
        goto bad;
    char *end = NULL;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || errno != 0 || *end != '\0' || port == 0 || port > 65535)
        goto bad;
    size_t host_len = (size_t)(colon - hp);
    const char *host = host_len ? hp : "127.0.0.1";
    if (host_len == 0)
        host_len = strlen(host);
    if (host_len > 255 || memchr(host, ' ', host_len) != NULL)
        goto bad;
    if ((size_t)snprintf(out, n, "tcp://%.*s:%lu", (int)host_len, host, port) >= n)
        goto bad;
    return true;
bad:
    pd_cli_error("%s: '%s' is not an endpoint (write tcp://HOST:PORT, HOST:PORT or :PORT)", opt, s);
    return false;
}
