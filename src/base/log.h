/* One-line logging: "ts level role msg key=value" to a sink (stderr by default). */
#ifndef UP_BASE_LOG_H
#define UP_BASE_LOG_H

enum up_log_level { UP_LOG_ERROR, UP_LOG_WARN, UP_LOG_INFO, UP_LOG_DEBUG, UP_LOG_TRACE };

typedef void (*up_log_sink_fn)(void *ud, enum up_log_level lvl, const char *line);

/* Set the process's minimum level that is written, the role printed on every line and the
 * sink (NULL: lines are dropped; the library never writes to stderr by itself, the CLI passes
 * a sink that does). Call once at start-up, before any thread exists. */
void up_log_setup(enum up_log_level level, const char *role, up_log_sink_fn sink, void *ud);
/* The same for the calling thread only (an embedded agent's own thread, or the thread of an
 * application's loop); it wins over up_log_setup there. A NULL sink clears it. */
void up_log_thread(enum up_log_level level, const char *role, up_log_sink_fn sink, void *ud);
/* Parse "error|warn|info|debug|trace". Returns 0 or -1. */
int up_log_parse_level(const char *s, enum up_log_level *out);
/* Whether lvl would be written. */
int up_log_enabled(enum up_log_level lvl);
void up_log(enum up_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define UP_LOGE(...) up_log(UP_LOG_ERROR, __VA_ARGS__)
#define UP_LOGW(...) up_log(UP_LOG_WARN, __VA_ARGS__)
#define UP_LOGI(...) up_log(UP_LOG_INFO, __VA_ARGS__)
#define UP_LOGD(...)                                                                               \
    do {                                                                                           \
        if (up_log_enabled(UP_LOG_DEBUG))                                                          \
            up_log(UP_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
