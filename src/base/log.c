#include "base/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum up_log_level g_level = UP_LOG_INFO;
static const char *g_role = "-";
static up_log_sink_fn g_sink;
static void *g_ud;

struct log_cfg {
    bool set;
    enum up_log_level level;
    const char *role;
    up_log_sink_fn sink;
    void *ud;
};
static _Thread_local struct log_cfg tl;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void up_log_setup(enum up_log_level level, const char *role, up_log_sink_fn sink, void *ud)
{
    g_level = level;
    g_role = role ? role : "-";
    g_sink = sink;
    g_ud = ud;
}

void up_log_thread(enum up_log_level level, const char *role, up_log_sink_fn sink, void *ud)
{
    tl.set = sink != NULL;
    tl.level = level;
    tl.role = role ? role : "-";
    tl.sink = sink;
    tl.ud = ud;
}

int up_log_parse_level(const char *s, enum up_log_level *out)
{
    for (int i = 0; i <= UP_LOG_TRACE; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum up_log_level)i;
            return 0;
        }
    }
    return -1;
}

int up_log_enabled(enum up_log_level lvl)
{
    return tl.set ? lvl <= tl.level : g_sink && lvl <= g_level;
}

void up_log(enum up_log_level lvl, const char *fmt, ...)
{
    if (!up_log_enabled(lvl)) {
        return;
    }
    const char *role = tl.set ? tl.role : g_role;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[lvl], role);
    if (n < 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (tl.set) {
        tl.sink(tl.ud, lvl, line);
    } else {
        g_sink(g_ud, lvl, line);
    }
}
