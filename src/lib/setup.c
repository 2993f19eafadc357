#include "lib/setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "net/tls.h"
#include "proto/token.h"

const struct up_opt up_agent_opts[] = {
    UP_DIAL_OPTS,
    {"service", UP_OPT_LIST, NULL, "NAME=tcp|http://HOST:PORT[?proxy-protocol=v1|v2]",
     "a service to offer through the relay (repeat for more). tcp:// services are reached with a "
     "client token (underpass connect, wss://relay/s/NAME); http:// services also through the "
     "relay's HTTP reverse proxy, without a token unless --protect names them. ?proxy-protocol=v1 "
     "or =v2 sends the backend a PROXY protocol header (haproxy's) with the client's address "
     "first"},
    {"protect", UP_OPT_LIST, NULL, "NAME",
     "an http service that needs a client token on the relay's reverse proxy too (Authorization: "
     "Bearer, or once ?underpass_token=TOKEN, which sets a cookie); repeat for more"},
    {"backend-timeout", UP_OPT_DURATION, "10s", "DURATION", "limit for connecting to a backend"},
    {"links", UP_OPT_U64, "1", "N",
     "independent links to the relay (1-16), each serving every service; the relay spreads new "
     "streams over them"},
    {"drain-timeout", UP_OPT_DURATION, "30s", "DURATION",
     "on SIGTERM/SIGINT, time streams get to finish before the agent exits (0 = exit at once)"},
    UP_LINK_OPTS,
    {"no-splice", UP_OPT_FLAG, NULL, NULL,
     "copy relayed bytes through user space instead of moving them with splice(2) "
     "(plain ws:// links only; for kernels or sockets where splice misbehaves)"},
};
const size_t up_agent_nopts = sizeof up_agent_opts / sizeof up_agent_opts[0];

const struct up_opt up_connect_opts[] = {
    UP_DIAL_OPTS,
    {"listen", UP_OPT_STR, NULL, "IP:PORT", "accept local connections here, one stream each"},
    {"stdio", UP_OPT_FLAG, NULL, NULL,
     "use stdin/stdout as the one stream (ssh -o ProxyCommand=...)"},
    {"hold", UP_OPT_DURATION, "10s", "DURATION",
     "how long a local connection may wait while the relay link is down (and, when the "
     "relay comes back before the agent, for the agent)"},
    UP_LINK_OPTS,
    {"no-splice", UP_OPT_FLAG, NULL, NULL,
     "copy relayed bytes through user space instead of moving them with splice(2) "
     "(plain ws:// links only; for kernels or sockets where splice misbehaves)"},
};
const size_t up_connect_nopts = sizeof up_connect_opts / sizeof up_connect_opts[0];

const struct up_opt_val *up_setup_val(const struct up_opt *tab, size_t n,
                                      const struct up_opt_val *vals, const char *name)
{
    int i = up_opts_find(tab, n, name);
    UP_ASSERT(i >= 0);
    return &vals[i];
}

#define VAL(name) up_setup_val(tab, n, vals, name)

int up_setup_link(const struct up_opt *tab, size_t n, const struct up_opt_val *vals,
                  struct up_link_cfg *lc, char *err, size_t cap)
{
    up_link_cfg_defaults(lc);
    const struct up_opt_val *w = VAL("window");
    const struct up_opt_val *mw = VAL("max-window");
    const struct up_opt_val *mb = VAL("max-buffer-memory");
    const struct up_opt_val *pi = VAL("ping-interval");
    const struct up_opt_val *pm = VAL("ping-misses");
    if (w->num < 4096 || w->num > UP_MUX_MAX_WINDOW) {
        snprintf(err, cap, "%s: window must be between 4k and 2g-1", w->source);
        return -1;
    }
    if (mw->num < w->num || mw->num > UP_MUX_MAX_WINDOW) {
        snprintf(err, cap, "%s: max-window must be >= window and < 2g", mw->source);
        return -1;
    }
    if (pm->num < 1 || pm->num > 1000) {
        snprintf(err, cap, "%s: ping-misses must be 1..1000", pm->source);
        return -1;
    }
    lc->window = (uint32_t)w->num;
    lc->max_window = (uint32_t)mw->num;
    lc->max_buffer = (size_t)mb->num;
    lc->ping_interval_ms = pi->num;
    lc->ping_misses = (uint32_t)pm->num;
    return 0;
}

static const char *env_lookup(const char *name, void *ud)
{
    (void)ud;
    return getenv(name);
}

/* Pick the proxy (option, then the conventional variables) and say which one is used. */
static int setup_proxy(const struct up_opt *tab, size_t n, const struct up_opt_val *vals,
                       struct up_setup_store *st, struct up_uplink_cfg *uc, char *err, size_t cap)
{
    const struct up_opt_val *pv = VAL("proxy");
    const struct up_opt_val *pca = VAL("proxy-ca");
    bool use = false;
    const char *source = NULL, *why = NULL;
    if (up_proxy_choose(st->url.tls, st->url.host, st->url.port, pv->str, env_lookup, NULL,
                        &st->proxy, &use, &source, &why) < 0) {
        snprintf(err, cap, "%s: %s", source ? source : pv->source, why ? why : "bad proxy URL");
        return -1;
    }
    if (!use) {
        if (pca->str) {
            snprintf(err, cap, "--proxy-ca given but no proxy is in use");
            return -1;
        }
        return 0;
    }
    if (st->proxy.tls) {
        uc->proxy_tls = up_tls_client_ctx(pca->str, false, err, cap);
        if (!uc->proxy_tls) {
            return -1;
        }
    } else if (pca->str) {
        snprintf(err, cap, "--proxy-ca only applies to an https:// proxy");
        return -1;
    }
    uc->proxy = &st->proxy;
    bool v6 = strchr(st->proxy.host, ':') != NULL;
    UP_LOGI(v6 ? "going out through proxy %s://[%s]:%u%s (from %s)"
               : "going out through proxy %s://%s:%u%s (from %s)",
            st->proxy.tls ? "https" : "http", st->proxy.host, st->proxy.port,
            st->proxy.has_auth ? " with credentials" : "", source);
    return 0;
}

int up_setup_dial(const struct up_opt *tab, size_t n, const struct up_opt_val *vals,
                  struct up_setup_store *st, struct up_uplink_cfg *uc, char *err, size_t cap)
{
    const struct up_opt_val *relay = VAL("relay");
    const struct up_opt_val *token = VAL("token");
    const struct up_opt_val *ca = VAL("ca");
    const struct up_opt_val *insecure = VAL("insecure");
    memset(uc, 0, sizeof(*uc));
    if (!relay->str) {
        snprintf(err, cap,
                 "--relay is required (or UNDERPASS_RELAY), e.g. wss://relay.example.com");
        return -1;
    }
    const char *why = NULL;
    struct up_url *url = &st->url;
    if (up_url_parse(relay->str, url, &why) < 0 ||
        (strcmp(url->scheme, "ws") != 0 && strcmp(url->scheme, "wss") != 0)) {
        snprintf(err, cap, "%s: '%s': %s", relay->source, relay->str,
                 why ? why : "the relay URL must be ws:// or wss://");
        return -1;
    }
    if (strchr(url->path, '?')) {
        snprintf(err, cap, "%s: no query string in the relay URL", relay->source);
        return -1;
    }
    if (!token->str) {
        snprintf(err, cap,
                 "--token is required (or --token-file, UNDERPASS_TOKEN); mint one "
                 "with `underpass token`");
        return -1;
    }
    uc->host = url->host;
    uc->port = url->port;
    bool v6 = strchr(url->host, ':') != NULL;
    bool defport = (url->tls && url->port == 443) || (!url->tls && url->port == 80);
    if (defport) {
        snprintf(st->host_header, sizeof st->host_header, v6 ? "[%s]" : "%s", url->host);
    } else {
        snprintf(st->host_header, sizeof st->host_header, v6 ? "[%s]:%u" : "%s:%u", url->host,
                 url->port);
    }
    uc->host_header = st->host_header;
    uc->token = token->str;
    snprintf(st->base_path, sizeof st->base_path, "%s", url->path);
    if (url->tls) {
        uc->tls = up_tls_client_ctx(ca->str, insecure->num != 0, err, cap);
        if (!uc->tls) {
            return -1;
        }
    } else if (ca->str || insecure->num) {
        snprintf(err, cap, "--ca and --insecure only apply to wss:// relays");
        return -1;
    }
    if (setup_proxy(tab, n, vals, st, uc, err, cap) < 0) {
        up_setup_uplink_fini(uc);
        return -1;
    }
    uc->dial_timeout_ms = VAL("dial-timeout")->num;
    return 0;
}

int up_setup_uplink(const struct up_opt *tab, size_t n, const struct up_opt_val *vals,
                    struct up_setup_store *st, struct up_uplink_cfg *uc, char *err, size_t cap)
{
    if (up_setup_dial(tab, n, vals, st, uc, err, cap) < 0) {
        return -1;
    }
    if (up_setup_link(tab, n, vals, &uc->link, err, cap) < 0) {
        goto undo_dial;
    }
    uc->link.splice = VAL("no-splice")->num == 0;
    uc->backoff_min_ms = VAL("backoff-min")->num;
    uc->backoff_max_ms = VAL("backoff-max")->num;
    if (uc->backoff_min_ms == 0) {
        snprintf(err, cap, "--backoff-min must be > 0");
        goto undo_dial;
    }
    uc->reconnect = true;
    return 0;
undo_dial:
    up_setup_uplink_fini(uc);
    return -1;
}

void up_setup_uplink_fini(struct up_uplink_cfg *uc)
{
    up_tls_ctx_free(uc->tls);
    up_tls_ctx_free(uc->proxy_tls);
    uc->tls = uc->proxy_tls = NULL;
}

#undef VAL
#define VAL(name) up_setup_val(up_agent_opts, up_agent_nopts, vals, name)

static int agent_services(const struct up_opt_val *vals, struct up_agent_cfg *cfg, size_t n_extra,
                          char *err, size_t cap)
{
    const struct up_opt_val *svc = VAL("service");
    size_t nsvc = n_extra + svc->nlist;
    if (nsvc == 0) {
        snprintf(err, cap, "at least one --service NAME=tcp://HOST:PORT is required");
        return -1;
    }
    if (nsvc > UP_AGENT_MAX_SERVICES) {
        snprintf(err, cap, "at most %d services", UP_AGENT_MAX_SERVICES);
        return -1;
    }
    for (size_t i = n_extra; i < nsvc; i++) {
        if (up_agent_parse_service(svc->list[i - n_extra], &cfg->services[i], err, cap) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < nsvc; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->services[i].name, cfg->services[j].name) == 0) {
                snprintf(err, cap, "service '%s' given twice", cfg->services[i].name);
                return -1;
            }
        }
    }
    cfg->n_services = nsvc;
    const struct up_opt_val *prot = VAL("protect");
    for (size_t i = 0; i < prot->nlist; i++) {
        size_t j = 0;
        while (j < cfg->n_services && strcmp(cfg->services[j].name, prot->list[i]) != 0) {
            j++;
        }
        if (j == cfg->n_services) {
            snprintf(err, cap, "--protect %s: no such --service", prot->list[i]);
            return -1;
        }
        if (!cfg->services[j].http) {
            snprintf(err, cap,
                     "--protect %s: only http:// services are protected this way (a tcp service "
                     "always needs a client token)",
                     prot->list[i]);
            return -1;
        }
        cfg->services[j].protect = true;
    }
    cfg->backend_timeout_ms = VAL("backend-timeout")->num;
    uint64_t links = VAL("links")->num;
    if (links < 1 || links > UP_AGENT_MAX_LINKS) {
        snprintf(err, cap, "--links must be 1..%d", UP_AGENT_MAX_LINKS);
        return -1;
    }
    cfg->links = (size_t)links;
    cfg->drain_timeout_ms = VAL("drain-timeout")->num;
    return 0;
}

int up_setup_agent(const struct up_opt_val *vals, struct up_setup_store *st,
                   struct up_agent_cfg *cfg, size_t n_extra, char *err, size_t cap)
{
    /* The relay and token first: the same order of complaints as ever. */
    if (up_setup_uplink(up_agent_opts, up_agent_nopts, vals, st, &cfg->up, err, cap) < 0) {
        return -1;
    }
    if (agent_services(vals, cfg, n_extra, err, cap) < 0) {
        up_setup_uplink_fini(&cfg->up);
        return -1;
    }
    return 0;
}

#undef VAL
#define VAL(name) up_setup_val(up_connect_opts, up_connect_nopts, vals, name)

int up_setup_client(const struct up_opt_val *vals, const char *service, struct up_setup_store *st,
                    struct up_client_cfg *cfg, char *err, size_t cap)
{
    if (service &&
        (!up_token_valid_service_name(service, strlen(service)) || strcmp(service, "*") == 0)) {
        snprintf(err, cap, "'%s' is not a valid service name", service);
        return -1;
    }
    cfg->service = service;
    cfg->listen = VAL("listen")->str;
    cfg->stdio = VAL("stdio")->num != 0;
    cfg->hold_ms = VAL("hold")->num;
    return up_setup_uplink(up_connect_opts, up_connect_nopts, vals, st, &cfg->up, err, cap);
}
