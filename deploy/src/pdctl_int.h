/* pdctl internals: the subcommand table's entry type, the subcommands, and the small
 * argument helpers they share. Exit codes: 0 success, 1 failure, 2 usage error. */
#ifndef PD_PDCTL_INT_H
#define PD_PDCTL_INT_H

#include <stdbool.h>
#include <stdint.h>

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
int pd_cmd_generate(int argc, char **argv);
int pd_cmd_size(int argc, char **argv);
int pd_cmd_bench(int argc, char **argv);

/* Parse a whole decimal integer in [min, max]; on failure print "pdctl: OPT: ..." to
 * stderr and return false. */
bool pd_cli_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *v_p);
bool pd_cli_parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *v_p);
/* Parse a finite number in [min, max]. */
bool pd_cli_parse_f32(const char *opt, const char *s, float min, float max, float *v_p);

#endif
