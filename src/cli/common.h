/* Pieces shared by the subcommands: option groups, logging, signals. */
#ifndef UP_CLI_COMMON_H
#define UP_CLI_COMMON_H

#include <stdbool.h>
#include <uv.h>

#include "base/log.h"
#include "lib/opts.h"
#include "lib/setup.h"
#include "link/link.h"
#include "link/uplink.h"

#define UP_VERSION "0.1.0"

/* Look up a value by option name in a parsed table. */
const struct up_opt_val *cli_val(const struct up_opt *tab, size_t n, struct up_opt_val *vals,
                                 const char *name);
/* The CLI's log sink: one line to stderr. */
void cli_log_stderr(void *ud, enum up_log_level lvl, const char *line);
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
