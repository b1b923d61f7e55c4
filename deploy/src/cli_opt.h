/* pdctl's one option parser. Every subcommand describes its options in a table of
 * pd_cli_opt_t (long name, optional short letter, whether it takes a value) and walks
 * argv with pd_cli_opt_next(), the way getopt_long is used, so that one spelling means
 * the same in every subcommand. Beyond getopt_long it knows deprecated spellings (kept
 * for one release, accepted with a warning), suggests the closest option for a typo,
 * and gathers positional arguments wherever they stand. The options that several
 * subcommands share come from the PD_CLI_OPT_* macros below, so they cannot drift. */
#ifndef PD_DEPLOY_CLI_OPT_H
#define PD_DEPLOY_CLI_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_CLI_OPT_END     0  /* no more options */
#define PD_CLI_OPT_ERROR   -1 /* a usage error, already printed */
#define PD_CLI_OPT_MAX_POS 16

typedef struct pd_cli_opt {
    const char *name;     /* the long name without "--"; NULL ends the table */
    int short_name;       /* a letter for "-x", or 0 */
    bool has_arg;         /* takes a value: "--name V", "--name=V", "-x V" or "-xV" */
    int id;               /* what pd_cli_opt_next() returns for it (> 0) */
    const char *alias_of; /* non-NULL: a deprecated spelling of --alias_of (warned) */
} pd_cli_opt_t;

typedef struct pd_cli_parser {
    const char *cmd; /* the subcommand, for messages: "submit" */
    int argc;
    char **argv; /* argv[0] is the subcommand's name */
    const pd_cli_opt_t *opts;
    int next;        /* the next argv index to read */
    bool only_pos;   /* after "--" */
    const char *arg; /* the current option's value (NULL if it takes none) */
    const char *opt; /* the current option's canonical spelling: "--max-tokens" */
    const char *pos[PD_CLI_OPT_MAX_POS]; /* positional arguments, in order */
    int n_pos;
} pd_cli_parser_t;

/* Start parsing argv[1..argc-1] of subcommand cmd against opts (borrowed). */
void pd_cli_parser_init(pd_cli_parser_t *p, const char *cmd, int argc, char **argv,
                        const pd_cli_opt_t *opts);
/* The next option's id, PD_CLI_OPT_END when argv is used up (positionals are then in
 * p->pos), or PD_CLI_OPT_ERROR after printing "pdctl: CMD: ..." with a suggestion. */
int pd_cli_opt_next(pd_cli_parser_t *p);
/* Fail (print and return false) unless there are between min and max positionals. */
bool pd_cli_parser_want_pos(const pd_cli_parser_t *p, int min, int max, const char *what);

/* Print "pdctl: " + the message to stderr: the one error style of pdctl. */
void pd_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "pdctl: warning: " + the message to stderr. */
void pd_cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A router endpoint as the user may write it, "tcp://H:P", "H:P" or ":P" (host
 * 127.0.0.1), into "tcp://H:P" (ipc:// and inproc:// pass unchanged). False after
 * printing why for anything else. */
bool pd_cli_parse_endpoint(const char *opt, const char *s, char *out, size_t n);

/* Shared options: same name, letter and value everywhere they appear. */
#define PD_CLI_OPT_HELP                                                                            \
    {                                                                                              \
        "help", 'h', false, 'h', NULL                                                              \
    }
#define PD_CLI_OPT_ROUTER                                                                          \
    {                                                                                              \
        "router", 'r', true, 'r', NULL                                                             \
    }
#define PD_CLI_OPT_PROMPT                                                                          \
    {                                                                                              \
        "prompt", 'p', true, 'p', NULL                                                             \
    }
#define PD_CLI_OPT_MAX_TOKENS                                                                      \
    {                                                                                              \
        "max-tokens", 'n', true, 'n', NULL                                                         \
    }
#define PD_CLI_OPT_MODEL_PATH                                                                      \
    {                                                                                              \
        "model", 'm', true, 'm', NULL                                                              \
    }
#define PD_CLI_OPT_JSON                                                                            \
    {                                                                                              \
        "json", 0, false, 'J', NULL                                                                \
    }
#define PD_CLI_OPT_SEED                                                                            \
    {                                                                                              \
        "seed", 0, true, 'S', NULL                                                                 \
    }
#define PD_CLI_OPT_TEMPERATURE                                                                     \
    {                                                                                              \
        "temperature", 0, true, 'T', NULL                                                          \
    }
#define PD_CLI_OPT_TOP_P                                                                           \
    {                                                                                              \
        "top-p", 0, true, 'P', NULL                                                                \
    }
#define PD_CLI_OPT_TIMEOUT_MS                                                                      \
    {                                                                                              \
        "timeout-ms", 0, true, 'O', NULL                                                           \
    }
#define PD_CLI_OPT_WAIT                                                                            \
    {                                                                                              \
        "wait", 'w', true, 'W', NULL                                                               \
    }
#define PD_CLI_OPT_CURVE_KEY                                                                       \
    {                                                                                              \
        "curve-server-key", 0, true, 'V', NULL                                                     \
    }
#define PD_CLI_OPT_CURVE_SECRET                                                                    \
    {                                                                                              \
        "curve-secret-file", 0, true, 'F', NULL                                                    \
    }
#define PD_CLI_OPT_SET                                                                             \
    {                                                                                              \
        "set", 's', true, 's', NULL                                                                \
    }
#define PD_CLI_OPT_TOKENS                                                                          \
    {                                                                                              \
        "tokens", 0, true, 'K', NULL                                                               \
    }
/* What a generation request is made of, the same options in generate and submit (each
 * parses them into its own request). */
#define PD_CLI_OPTS_REQUEST                                                                        \
    PD_CLI_OPT_PROMPT, PD_CLI_OPT_TOKENS, PD_CLI_OPT_MAX_TOKENS, PD_CLI_OPT_TEMPERATURE,           \
        PD_CLI_OPT_TOP_P, PD_CLI_OPT_SEED
#define PD_CLI_OPT_END_TABLE                                                                       \
    {                                                                                              \
        NULL, 0, false, 0, NULL                                                                    \
    }

#endif
