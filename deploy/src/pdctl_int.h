/* pdctl internals: the subcommand table's entry type, the subcommands, and the small
 * argument helpers they share. Exit codes: 0 success, 1 failure, 2 usage error. */
#ifndef PD_PDCTL_INT_H
#define PD_PDCTL_INT_H

#include "pd/model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PD_CLI_OK    0
#define PD_CLI_FAIL  1
#define PD_CLI_USAGE 2

/* A subcommand: argv[0] is its name, options follow (getopt_long with optind = 1). */
typedef struct pd_cli_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} pd_cli_cmd_t;

int pd_cmd_model(int argc, char **argv);
int pd_cmd_render(int argc, char **argv);
int pd_cmd_model_compare(int argc, char **argv);
int pd_cmd_generate(int argc, char **argv);
int pd_cmd_size(int argc, char **argv);
int pd_cmd_tokenize(int argc, char **argv);
int pd_cmd_detokenize(int argc, char **argv);
int pd_cmd_template(int argc, char **argv);

/* The prompt a tokenizer's chat template renders for a conversation, from a JSON file
 * (messages_path) or JSON text (messages_json); template_path overrides the tokenizer's
 * template. *prompt_p is malloc'd. PD_CLI_FAIL after printing why. (cmd_template.c) */
struct pd_tokenizer;
int pd_cli_chat_prompt(const struct pd_tokenizer *tok, const char *messages_path,
                       const char *messages_json, const char *template_path,
                       bool add_generation_prompt, char **prompt_p, size_t *len_p);
/* A JSON array of n messages {"role": roles[i], "content": texts[i]}; malloc'd, NULL. */
char *pd_cli_chat_messages_json(const char *const *roles, const char *const *texts, size_t n);

/* The chat options of generate and submit: --chat FILE (messages as for pdctl template),
 * or --system TEXT and --user TEXT (repeatable, in order), --template FILE. */
#define PD_CLI_CHAT_MAX_MESSAGES 64
enum { PD_CLI_OPT_CHAT = 1001, PD_CLI_OPT_SYSTEM, PD_CLI_OPT_USER, PD_CLI_OPT_TEMPLATE };
typedef struct pd_cli_chat {
    const char *file;
    const char *template_path;
    const char *roles[PD_CLI_CHAT_MAX_MESSAGES];
    const char *texts[PD_CLI_CHAT_MAX_MESSAGES];
    size_t n;
} pd_cli_chat_t;
#define PD_CLI_CHAT_OPTIONS                                                                        \
    {"chat", 0, true, PD_CLI_OPT_CHAT, NULL}, {"system", 0, true, PD_CLI_OPT_SYSTEM, NULL},        \
        {"user", 0, true, PD_CLI_OPT_USER, NULL},                                                  \
    {                                                                                              \
        "template", 0, true, PD_CLI_OPT_TEMPLATE, NULL                                             \
    }
/* Take option opt (one of PD_CLI_OPT_*); false after printing why it is refused. */
bool pd_cli_chat_option(pd_cli_chat_t *chat, int opt, const char *arg);
/* Whether any chat option was given. */
bool pd_cli_chat_given(const pd_cli_chat_t *chat);
/* Render the conversation with tok's template and encode it (special tokens as tokens,
 * none added: the template places BOS); *ids_p is malloc'd. PD_CLI_FAIL after printing. */
int pd_cli_chat_tokens(const pd_cli_chat_t *chat, const struct pd_tokenizer *tok, int32_t **ids_p,
                       size_t *n_p);

/* Read a whole file ("-": stdin) into a malloc'd NUL-terminated buffer; NULL after
 * printing why. */
char *pd_cli_read_all(const char *path, size_t *len_p);
/* A growable NUL-terminated byte buffer (generated text); free(data) when done. */
typedef struct pd_cli_text {
    char *data; /* (cap) */
    size_t len, cap;
} pd_cli_text_t;
/* Append n bytes of s; false when memory ran out (t keeps what it had). */
bool pd_cli_text_append(pd_cli_text_t *t, const char *s, size_t n);
/* Open the tokenizer at path (pd_tokenizer_open); PD_CLI_FAIL after printing why. */
int pd_cli_tokenizer_open(const char *path, struct pd_tokenizer **tok_p);
/* What the subcommands that work with one tokenizer (tokenize, detokenize, template)
 * share: -t PATH and -h are handled by pd_cli_tok_cmd_start, the other options by
 * the subcommand. */
struct pd_cli_opt;
typedef struct pd_cli_tok_cmd {
    const char *name;              /* the subcommand, for messages: "tokenize" */
    const struct pd_cli_opt *opts; /* its options, -t and -h among them */
    void (*usage)(FILE *out);
    void (*take)(void *arg, int opt, const char *value); /* any other option */
    bool (*ready)(const void *arg);                      /* the options taken are enough to run */
} pd_cli_tok_cmd_t;
/* Parse argv for cmd, its own options into arg, and open the tokenizer into *tok_p.
 * PD_CLI_OK with *tok_p set; PD_CLI_OK and *tok_p NULL after printing --help; otherwise
 * the exit code after printing why. (cmd_tokenize.c) */
int pd_cli_tok_cmd_start(const pd_cli_tok_cmd_t *cmd, int argc, char **argv, void *arg,
                         struct pd_tokenizer **tok_p);
/* Call fn on each line of the file at path ("-": stdin), without its newline, until one
 * returns other than PD_CLI_OK; returns that, or PD_CLI_FAIL when the file cannot be read. */
int pd_cli_each_line(const char *path, int (*fn)(void *arg, const char *line, size_t len),
                     void *arg);
int pd_cmd_bench(int argc, char **argv);

/* Weight figures of a model in one dtype (cmd_weights.c). */
typedef struct pd_cli_weights {
    pd_dtype_t dtype;
    uint64_t weight_bytes; /* all weights in memory */
    uint64_t decode_bytes; /* what one decode step reads */
    double gbps_1;         /* uncached read rate, 1 thread (GB/s) */
    double gbps_all;       /* the same with one thread per core */
    uint32_t n_cores;
    bool measured; /* false: both rates are the --read-gbps the user gave */
} pd_cli_weights_t;

/* Fill w for config c with matrices in dtype; read_gbps > 0 is used instead of measuring
 * (which takes about a second). */
void pd_cli_weights_measure(const pd_model_config_t *c, pd_dtype_t dtype, double read_gbps,
                            pd_cli_weights_t *w);
/* Two text lines (weights, decode bound), or JSON members starting with a comma. */
void pd_cli_weights_print(const pd_cli_weights_t *w);
void pd_cli_weights_print_json(const pd_cli_weights_t *w);

/* Parse a whole decimal integer in [min, max]; on failure print "pdctl: OPT: ..." to
 * stderr and return false. */
bool pd_cli_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *v_p);
bool pd_cli_parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *v_p);
/* Parse a finite number in [min, max]. */
bool pd_cli_parse_f32(const char *opt, const char *s, float min, float max, float *v_p);

/* The router endpoint every client subcommand uses unless told otherwise. */
#define PD_CLI_DEFAULT_ROUTER "tcp://127.0.0.1:7100"

/* A random sampling seed for a request that names none (printed, so it can be
 * repeated). */
uint64_t pd_cli_random_seed(void);
/* Check that something accepts connections at a router endpoint, retrying for wait_s
 * seconds; false after printing "pdctl: CMD: cannot reach router at EP: why". */
bool pd_cli_router_reach(const char *cmd, const char *endpoint, uint32_t wait_s);

#endif
