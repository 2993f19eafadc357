/* underpass: one binary, several subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/common.h"

static void usage(FILE *f)
{
    fprintf(f,
            "underpass %s: reach services behind firewalls and NAT without opening a port.\n\n"
            "Usage: underpass COMMAND [options]\n\n"
            "Commands:\n"
            "  relay     run the public relay (agents and clients dial in)\n"
            "  agent     run beside private services; dials out and registers them\n"
            "  connect   reach a service through the relay (local port or stdio)\n"
            "  pair      host side of a one-time pairing: join a browser to a local target\n"
            "  turn      run a STUN/TURN server (UDP relaying for WebRTC and VPN clients)\n"
            "  token     mint a token signed with the relay's secret\n"
            "  version   print the version\n\n"
            "Run `underpass COMMAND --help` for the options of each command. Every option can\n"
            "also be set with an UNDERPASS_<OPTION> environment variable.\n",
            UP_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    up_log_setup(UP_LOG_INFO, "-", cli_log_stderr, NULL); /* until the command sets its own */
    const char *cmd = argv[1];
    if (strcmp(cmd, "relay") == 0) {
        return cmd_relay(argc, argv);
    }
    if (strcmp(cmd, "agent") == 0) {
        return cmd_agent(argc, argv);
    }
    if (strcmp(cmd, "connect") == 0) {
        return cmd_connect(argc, argv);
    }
    if (strcmp(cmd, "pair") == 0) {
        return cmd_pair(argc, argv);
    }
    if (strcmp(cmd, "turn") == 0) {
        return cmd_turn(argc, argv);
    }
    if (strcmp(cmd, "token") == 0) {
        return cmd_token(argc, argv);
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("underpass %s\n", UP_VERSION);
        return 0;
    }
    fprintf(stderr, "underpass: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
