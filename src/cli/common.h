/* Pieces shared by the subcommands: option groups, logging, signals. */
#ifndef UP_CLI_COMMON_H
#define UP_CLI_COMMON_H

#include <stdbool.h>
#include <uv.h>

#include "cli/opts.h"
#include "link/link.h"
#include "link/uplink.h"

#define UP_VERSION "0.1.0"

/* Options every link-holding subcommand has (appended to each table). */
#define UP_LINK_OPTS                                                                               \
    {"window", UP_OPT_SIZE, "256k", "BYTES", "initial per-stream receive window"},                 \
        {"max-window", UP_OPT_SIZE, "4m", "BYTES", "largest per-stream window after auto-tuning"}, \
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

/* Look up a value by option name in a parsed table. */
const struct up_opt_val *cli_val(const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                                 const char *name);
/* Set up logging from --log-level; returns -1 with a message on a bad level. */
int cli_log_setup(const struct up_opt *tab, size_t n, struct up_opt_val *vals, const char *role);
/* Fill link settings from the UP_LINK_OPTS group. */
int cli_link_cfg(const char *cmd, const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                 struct up_link_cfg *lc);
/* Fill the dial part of an uplink config (relay URL, token, TLS, proxy, dial timeout) from
 * the options relay, token, ca, insecure, dial-timeout, proxy and proxy-ca; sets *base_path
 * from the URL. For one-shot dialers (pair) whose table has no link or back-off options. */
int cli_dial_cfg(const char *cmd, const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                 struct up_uplink_cfg *uc, char *base_path, size_t cap);
/* Fill an uplink config from the UP_DIAL_OPTS and UP_LINK_OPTS groups (cli_dial_cfg, then the
 * link settings and the reconnect back-off); sets *base_path from the URL. */
int cli_uplink_cfg(const char *cmd, const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                   struct up_uplink_cfg *uc, char *base_path, size_t cap);
/* Print "underpass CMD: msg" and return 2 (usage error). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Call stop(ud) on the first SIGINT/SIGTERM; the handlers are then removed so a second signal
 * ends the process at once. */
void cli_signals(uv_loop_t *loop, void (*stop)(void *ud), void *ud);

int cmd_relay(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_pair(int argc, char **argv);
int cmd_turn(int argc, char **argv);

#endif
