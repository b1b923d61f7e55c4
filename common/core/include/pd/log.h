/* Levelled logging to stderr. The macros test the level before formatting anything. */
#ifndef PD_LOG_H
#define PD_LOG_H

typedef enum pd_log_level {
    PD_LOG_LEVEL_ERROR = 0,
    PD_LOG_LEVEL_WARN,
    PD_LOG_LEVEL_INFO,
    PD_LOG_LEVEL_DEBUG,
    PD_LOG_LEVEL_TRACE
} pd_log_level_t;

extern pd_log_level_t pd_log_level_current;

/* Set the level; PD_LOG_LEVEL=error|warn|info|debug|trace in the environment is read by
 * pd_log_init(), which also takes the component name printed on every line. */
void pd_log_init(const char *component);
void pd_log_set_level(pd_log_level_t level);
/* Plain lines ("component: message") instead of time, level and source location: for
 * command-line tools, whose users read one error style. */
void pd_log_set_plain(int plain);
/* Parse "error".."trace"; returns -1 for anything else. */
int pd_log_level_parse(const char *name);

void pd_log_write(pd_log_level_t level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define PD_LOG_(level, ...)                                                                        \
    do {                                                                                           \
        if ((level) <= pd_log_level_current)                                                       \
            pd_log_write((level), __FILE__, __LINE__, __VA_ARGS__);                                \
    } while (0)

#define pd_log_error(...) PD_LOG_(PD_LOG_LEVEL_ERROR, __VA_ARGS__)
#define pd_log_warn(...)  PD_LOG_(PD_LOG_LEVEL_WARN, __VA_ARGS__)
#define pd_log_info(...)  PD_LOG_(PD_LOG_LEVEL_INFO, __VA_ARGS__)
#define pd_log_debug(...) PD_LOG_(PD_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define pd_log_trace(...) PD_LOG_(PD_LOG_LEVEL_TRACE, __VA_ARGS__)

#endif
