/* From option values to the configs of the agent, connect and pair: the one place that turns
 * what a user wrote (flags, environment, or the embedding API's key/value pairs) into the
 * internal structs, with the same checks and the same one-line errors for both. */
#ifndef UP_LIB_SETUP_H
#define UP_LIB_SETUP_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/agent.h"
#include "client/client.h"
#include "lib/opts.h"
#include "link/link.h"
#include "link/uplink.h"
#include "proto/url.h"
#include "proto/proxy.h"

/* Options every link-holding subcommand has (appended to each table). */
#define UP_LINK_OPTS                                                                               \
    {"window", UP_OPT_SIZE, "16k", "BYTES", "initial per-stream receive window"},                  \
        {"max-window", UP_OPT_SIZE, "4m", "BYTES", "largest per-stream window after auto-tuning"}, \
        {"max-buffer-memory", UP_OPT_SIZE, "64m", "BYTES",                                         \
         "what all streams may buffer and be granted beyond their first window; above it the "     \
         "streams holding the most wait (0 = no limit)"},                                          \
        {"ping-interval", UP_OPT_DURATION, "20s", "DURATION",                                      \
         "keep-alive ping period on the relay link (0 = off)"},                                    \
        {"ping-misses", UP_OPT_U64, "3", "N", "declare the link dead after N unanswered pings"},   \
    {                                                                                              \
        "log-level", UP_OPT_STR, "info", "LEVEL", "error, warn, info, debug or trace"              \
    }

#define UP_DIAL_OPTS                                                                               \
    {"relay", UP_OPT_STR, NULL, "URL", "relay to dial: ws://HOST:PORT or wss://HOST:PORT"},        \
        {"token", UP_OPT_SECRET, NULL, "TOKEN", "bearer token minted by `underpass token`"},       \
        {"ca", UP_OPT_STR, NULL, "FILE",                                                           \
         "trust this CA (PEM) for wss:// instead of the system's"},                                \
        {"insecure", UP_OPT_FLAG, NULL, NULL,                                                      \
         "do not verify the relay's certificate (testing only)"},                                  \
        {"dial-timeout", UP_OPT_DURATION, "10s", "DURATION",                                       \
         "limit for connect + TLS + upgrade to the relay"},                                        \
        {"proxy", UP_OPT_STR, NULL, "URL",                                                         \
         "HTTP proxy to go out through: http://[USER:PASS@]HOST:PORT or https://...; "             \
         "default from https_proxy/HTTPS_PROXY (wss://) or http_proxy/HTTP_PROXY (ws://), "        \
         "minus no_proxy/NO_PROXY; 'none' ignores them"},                                          \
        {"proxy-ca", UP_OPT_STR, NULL, "FILE",                                                     \
         "trust this CA (PEM) for an https:// proxy instead of the system's"},                     \
        {"backoff-min", UP_OPT_DURATION, "500ms", "DURATION", "first reconnect delay"},            \
    {                                                                                              \
        "backoff-max", UP_OPT_DURATION, "30s", "DURATION", "reconnect delay cap"                   \
    }

/* The option tables of `underpass agent` and `underpass connect`; the embedding API takes the
 * same names. */
extern const struct up_opt up_agent_opts[];
extern const size_t up_agent_nopts;
extern const struct up_opt up_connect_opts[];
extern const size_t up_connect_nopts;

/* What an uplink config points into: one per agent or client, living as long as it. */
struct up_setup_store {
    struct up_url url;
    char host_header[300];
    struct up_proxy proxy;
    char base_path[512];
};

/* The value of option name (which must be in tab). */
const struct up_opt_val *up_setup_val(const struct up_opt *tab, size_t n,
                                      const struct up_opt_val *vals, const char *name);

/* Each of these fills its config from the option values, or returns -1 with a one-line
 * message in err that names the option. TLS contexts they create go into the config
 * (uc->tls, uc->proxy_tls) and are freed with up_setup_uplink_fini(). */
int up_setup_link(const struct up_opt *tab, size_t n, const struct up_opt_val *vals,
                  struct up_link_cfg *lc, char *err, size_t cap);
/* The dial part (relay URL, token, TLS, proxy, dial timeout); st->base_path gets the URL's
 * path. For one-shot dialers (pair) whose table has no link or back-off options. */
int up_setup_dial(const struct up_opt *tab, size_t n, const struct up_opt_val *vals,
                  struct up_setup_store *st, struct up_uplink_cfg *uc, char *err, size_t cap);
/* up_setup_dial, then the link settings and the reconnect back-off. */
int up_setup_uplink(const struct up_opt *tab, size_t n, const struct up_opt_val *vals,
                    struct up_setup_store *st, struct up_uplink_cfg *uc, char *err, size_t cap);
void up_setup_uplink_fini(struct up_uplink_cfg *uc);
/* The agent from up_agent_opts values. extra names in-process services (n_extra of them,
 * already in cfg->services[0..n_extra)) that count against the limit and must not clash with
 * --service names. */
int up_setup_agent(const struct up_opt_val *vals, struct up_setup_store *st,
                   struct up_agent_cfg *cfg, size_t n_extra, char *err, size_t cap);
/* connect from up_connect_opts values, for service (checked here). */
int up_setup_client(const struct up_opt_val *vals, const char *service, struct up_setup_store *st,
                    struct up_client_cfg *cfg, char *err, size_t cap);

#endif
