#include "cli/common.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "link/url.h"
#include "net/tls.h"
#include "proto/proxy.h"

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

int cli_log_setup(const struct up_opt *tab, size_t n, struct up_opt_val *vals, const char *role)
{
    enum up_log_level lvl = UP_LOG_INFO;
    const struct up_opt_val *v = cli_val(tab, n, vals, "log-level");
    if (v && v->str && up_log_parse_level(v->str, &lvl) < 0) {
        return cli_fail(role, "%s: unknown log level '%s' (error, warn, info, debug, trace)",
                        v->source, v->str);
    }
    up_log_setup(lvl, role, NULL, NULL);
    return 0;
}

int cli_link_cfg(const char *cmd, const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                 struct up_link_cfg *lc)
{
    up_link_cfg_defaults(lc);
    const struct up_opt_val *w = cli_val(tab, n, vals, "window");
    const struct up_opt_val *mw = cli_val(tab, n, vals, "max-window");
    const struct up_opt_val *pi = cli_val(tab, n, vals, "ping-interval");
    const struct up_opt_val *pm = cli_val(tab, n, vals, "ping-misses");
    if (w->num < 4096 || w->num > UP_MUX_MAX_WINDOW) {
        return cli_fail(cmd, "%s: window must be between 4k and 2g-1", w->source);
    }
    if (mw->num < w->num || mw->num > UP_MUX_MAX_WINDOW) {
        return cli_fail(cmd, "%s: max-window must be >= window and < 2g", mw->source);
    }
    if (pm->num < 1 || pm->num > 1000) {
        return cli_fail(cmd, "%s: ping-misses must be 1..1000", pm->source);
    }
    lc->window = (uint32_t)w->num;
    lc->max_window = (uint32_t)mw->num;
    lc->ping_interval_ms = pi->num;
    lc->ping_misses = (uint32_t)pm->num;
    return 0;
}

static const char *env_lookup(const char *name, void *ud)
{
    (void)ud;
    return getenv(name);
}

/* Pick the proxy (flag, then the conventional variables) and say which one is used. */
static int cli_proxy_cfg(const char *cmd, const struct up_opt *tab, size_t n,
                         struct up_opt_val *vals, bool tls, const char *host, uint16_t port,
                         struct up_uplink_cfg *uc)
{
    static struct up_proxy proxy; /* lives for the process */
    const struct up_opt_val *pv = cli_val(tab, n, vals, "proxy");
    const struct up_opt_val *pca = cli_val(tab, n, vals, "proxy-ca");
    bool use = false;
    const char *source = NULL, *why = NULL;
    if (up_proxy_choose(tls, host, port, pv->str, env_lookup, NULL, &proxy, &use, &source, &why) <
        0) {
        return cli_fail(cmd, "%s: %s", source ? source : pv->source, why ? why : "bad proxy URL");
    }
    if (!use) {
        if (pca->str) {
            return cli_fail(cmd, "--proxy-ca given but no proxy is in use");
        }
        return 0;
    }
    if (proxy.tls) {
        char err[512];
        uc->proxy_tls = up_tls_client_ctx(pca->str, false, err, sizeof err);
        if (!uc->proxy_tls) {
            return cli_fail(cmd, "%s", err);
        }
    } else if (pca->str) {
        return cli_fail(cmd, "--proxy-ca only applies to an https:// proxy");
    }
    uc->proxy = &proxy;
    bool v6 = strchr(proxy.host, ':') != NULL;
    UP_LOGI(v6 ? "going out through proxy %s://[%s]:%u%s (from %s)"
               : "going out through proxy %s://%s:%u%s (from %s)",
            proxy.tls ? "https" : "http", proxy.host, proxy.port,
            proxy.has_auth ? " with credentials" : "", source);
    return 0;
}

int cli_dial_cfg(const char *cmd, const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                 struct up_uplink_cfg *uc, char *base_path, size_t cap)
{
    static struct up_url url; /* lives for the process */
    static char host_header[300];
    const struct up_opt_val *relay = cli_val(tab, n, vals, "relay");
    const struct up_opt_val *token = cli_val(tab, n, vals, "token");
    const struct up_opt_val *ca = cli_val(tab, n, vals, "ca");
    const struct up_opt_val *insecure = cli_val(tab, n, vals, "insecure");
    if (!relay->str) {
        return cli_fail(cmd, "--relay is required (or UNDERPASS_RELAY), e.g. "
                             "wss://relay.example.com");
    }
    const char *why = NULL;
    if (up_url_parse(relay->str, &url, &why) < 0 ||
        (strcmp(url.scheme, "ws") != 0 && strcmp(url.scheme, "wss") != 0)) {
        return cli_fail(cmd, "%s: '%s': %s", relay->source, relay->str,
                        why ? why : "the relay URL must be ws:// or wss://");
    }
    if (strchr(url.path, '?')) {
        return cli_fail(cmd, "%s: no query string in the relay URL", relay->source);
    }
    if (!token->str) {
        return cli_fail(cmd, "--token is required (or --token-file, UNDERPASS_TOKEN); "
                             "mint one with `underpass token`");
    }
    memset(uc, 0, sizeof(*uc));
    uc->host = url.host;
    uc->port = url.port;
    bool v6 = strchr(url.host, ':') != NULL;
    bool defport = (url.tls && url.port == 443) || (!url.tls && url.port == 80);
    if (defport) {
        snprintf(host_header, sizeof host_header, v6 ? "[%s]" : "%s", url.host);
    } else {
        snprintf(host_header, sizeof host_header, v6 ? "[%s]:%u" : "%s:%u", url.host, url.port);
    }
    uc->host_header = host_header;
    uc->token = token->str;
    snprintf(base_path, cap, "%s", url.path);
    if (url.tls) {
        char err[512];
        uc->tls = up_tls_client_ctx(ca->str, insecure->num != 0, err, sizeof err);
        if (!uc->tls) {
            return cli_fail(cmd, "%s", err);
        }
    } else if (ca->str || insecure->num) {
        return cli_fail(cmd, "--ca and --insecure only apply to wss:// relays");
    }
    if (cli_proxy_cfg(cmd, tab, n, vals, url.tls, url.host, url.port, uc) != 0) {
        return 2;
    }
    uc->dial_timeout_ms = cli_val(tab, n, vals, "dial-timeout")->num;
    return 0;
}

int cli_uplink_cfg(const char *cmd, const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                   struct up_uplink_cfg *uc, char *base_path, size_t cap)
{
    int rv = cli_dial_cfg(cmd, tab, n, vals, uc, base_path, cap);
    if (rv != 0) {
        return rv;
    }
    if (cli_link_cfg(cmd, tab, n, vals, &uc->link) != 0) {
        return 2;
    }
    uc->link.splice = cli_val(tab, n, vals, "no-splice")->num == 0;
    uc->backoff_min_ms = cli_val(tab, n, vals, "backoff-min")->num;
    uc->backoff_max_ms = cli_val(tab, n, vals, "backoff-max")->num;
    if (uc->backoff_min_ms == 0) {
        return cli_fail(cmd, "--backoff-min must be > 0");
    }
    uc->reconnect = true;
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
