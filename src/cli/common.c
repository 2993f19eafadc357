#include "cli/common.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

const struct up_opt_val *cli_val(const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                                 const char *name)
{
    int i = up_opts_find(tab, n, name);
    return i >= 0 ? &vals[i] : NULL;
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "underpass %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return 2;
}

void cli_log_stderr(void *ud, enum up_log_level lvl, const char *line)
{
    (void)ud;
    (void)lvl;
    fprintf(stderr, "%s\n", line);
}

int cli_log_setup(const struct up_opt *tab, size_t n, struct up_opt_val *vals, const char *role)
{
    enum up_log_level lvl = UP_LOG_INFO;
    const struct up_opt_val *v = cli_val(tab, n, vals, "log-level");
    if (v && v->str && up_log_parse_level(v->str, &lvl) < 0) {
        return cli_fail(role, "%s: unknown log level '%s' (error, warn, info, debug, trace)",
                        v->source, v->str);
    }
    up_log_setup(lvl, role, cli_log_stderr, NULL);
    return 0;
}

int cli_link_cfg(const char *cmd, const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                 struct up_link_cfg *lc)
{
    char err[512];
    if (up_setup_link(tab, n, vals, lc, err, sizeof err) < 0) {
        return cli_fail(cmd, "%s", err);
    }
    return 0;
}

/* What the subcommand's uplink config points into: it lives for the process. */
static struct up_setup_store store;

int cli_dial_cfg(const char *cmd, const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                 struct up_uplink_cfg *uc, char *base_path, size_t cap)
{
    char err[512];
    if (up_setup_dial(tab, n, vals, &store, uc, err, sizeof err) < 0) {
        return cli_fail(cmd, "%s", err);
    }
    snprintf(base_path, cap, "%s", store.base_path);
    return 0;
}

int cli_uplink_cfg(const char *cmd, const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                   struct up_uplink_cfg *uc, char *base_path, size_t cap)
{
    char err[512];
    if (up_setup_uplink(tab, n, vals, &store, uc, err, sizeof err) < 0) {
        return cli_fail(cmd, "%s", err);
    }
    snprintf(base_path, cap, "%s", store.base_path);
    return 0;
}

static struct {
    uv_signal_t sigint, sigterm;
    void (*stop)(void *);
    void *ud;
    bool fired;
} sig;

static void sig_cb(uv_signal_t *h, int signum)
{
    (void)h;
    if (sig.fired) {
        return;
    }
    sig.fired = true;
    UP_LOGI("%s received, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close((uv_handle_t *)&sig.sigint, NULL);
    uv_close((uv_handle_t *)&sig.sigterm, NULL);
    sig.stop(sig.ud);
}

void cli_signals(uv_loop_t *loop, void (*stop)(void *ud), void *ud)
{
    signal(SIGPIPE, SIG_IGN);
    sig.stop = stop;
    sig.ud = ud;
    uv_signal_init(loop, &sig.sigint);
    uv_signal_init(loop, &sig.sigterm);
    uv_signal_start(&sig.sigint, sig_cb, SIGINT);
    uv_signal_start(&sig.sigterm, sig_cb, SIGTERM);
    uv_unref((uv_handle_t *)&sig.sigint);
    uv_unref((uv_handle_t *)&sig.sigterm);
}
