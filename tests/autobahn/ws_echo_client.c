/* WebSocket echo client for Autobahn's fuzzingserver. Dials with up_dial (the agent's path:
 * resolve, TCP, WebSocket upgrade), reads the case count from /getCaseCount, runs
 * /runCase?case=I&agent=NAME for I = 1..N echoing every message, then asks for
 * /updateReports. Exits 0 when every step could be made (the verdicts are in the report).
 *
 *   ws_echo_client [-v] [-a AGENT] [ws://HOST:PORT]     (default: $AUTOBAHN_URL) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo_conn.h"
#include "link/dial.h"
#include "net/addr.h"

#define CLIENT_DIAL_TIMEOUT_MS 10000
#define CLIENT_MAX_CASES 100000

enum phase {
    PH_COUNT,  /* /getCaseCount */
    PH_CASE,   /* /runCase?case=I */
    PH_REPORT, /* /updateReports */
    PH_DONE,
};

struct client {
    uv_loop_t *loop;
    char host[256];
    uint16_t port;
    char host_header[300];
    const char *agent;
    bool verbose;
    enum phase phase;
    unsigned n_cases;
    unsigned cur; /* 1-based case number while in PH_CASE */
    unsigned dial_failures;
    int exit_code;
    struct up_pmd_cfg pmd_cfg;       /* what we offer */
    struct up_pmd_params pmd_params; /* what the server accepted, per connection */
    bool pmd_on;
};

static void next_step(void *ud);

static void on_count(void *ud, uint8_t opcode, const uint8_t *data, size_t len)
{
    struct client *cl = ud;
    char num[16];
    if (opcode != UP_WS_OP_TEXT || len == 0 || len >= sizeof num) {
        return;
    }
    memcpy(num, data, len);
    num[len] = '\0';
    char *end = NULL;
    unsigned long n = strtoul(num, &end, 10);
    if (*end == '\0' && n <= CLIENT_MAX_CASES) {
        cl->n_cases = (unsigned)n;
    }
}

static void on_dialed(void *ud, int err, const char *reason, int http_status, int fd,
                      struct ssl_st *ssl, const uint8_t *leftover, size_t leftover_len)
{
    struct client *cl = ud;
    (void)http_status;
    if (err != 0) {
        fprintf(stderr, "ws_echo_client: %s: %s\n",
                cl->phase == PH_COUNT    ? "getCaseCount"
                : cl->phase == PH_REPORT ? "updateReports"
                                         : "runCase",
                reason ? reason : "dial failed");
        cl->dial_failures++;
        if (cl->phase == PH_COUNT) {
            cl->exit_code = 1;
            cl->phase = PH_DONE;
            return;
        }
        next_step(cl);
        return;
    }
    struct echo_conn_cfg cfg = {
        .role = UP_WS_CLIENT,
        .echo = cl->phase == PH_CASE,
        .on_msg = on_count,
        .on_done = next_step,
        .ud = cl,
        .verbose = cl->verbose,
        .pmd = cl->pmd_on ? &cl->pmd_params : NULL,
    };
    if (echo_conn_start(cl->loop, fd, ssl, leftover, leftover_len, &cfg) < 0) {
        fprintf(stderr, "ws_echo_client: cannot start the connection\n");
        cl->dial_failures++;
        next_step(cl);
    }
}

static void dial(struct client *cl, const char *path)
{
    struct up_dial_cfg cfg = {
        .host = cl->host,
        .port = cl->port,
        .websocket = true,
        .path = path,
        .host_header = cl->host_header,
        .timeout_ms = CLIENT_DIAL_TIMEOUT_MS,
        .pmd = &cl->pmd_cfg,
        .pmd_out = &cl->pmd_params,
        .pmd_on_out = &cl->pmd_on,
    };
    cl->pmd_on = false;
    if (cl->verbose) {
        fprintf(stderr, "ws_echo_client: GET %s\n", path);
    }
    if (!up_dial_start(cl->loop, &cfg, on_dialed, cl)) {
        fprintf(stderr, "ws_echo_client: cannot start dialing %s\n", path);
        cl->exit_code = 1;
        cl->phase = PH_DONE;
    }
}

/* The previous connection is done (or could not be made): go on with the next one. */
static void next_step(void *ud)
{
    struct client *cl = ud;
    char path[512];
    switch (cl->phase) {
    case PH_COUNT:
        if (cl->n_cases == 0) {
            fprintf(stderr, "ws_echo_client: no case count from /getCaseCount\n");
            cl->exit_code = 1;
            cl->phase = PH_DONE;
            return;
        }
        fprintf(stderr, "ws_echo_client: %u cases\n", cl->n_cases);
        cl->phase = PH_CASE;
        cl->cur = 0;
        /* fall through */
    case PH_CASE:
        if (cl->cur < cl->n_cases) {
            cl->cur++;
            snprintf(path, sizeof path, "/runCase?case=%u&agent=%s", cl->cur, cl->agent);
            dial(cl, path);
            return;
        }
        cl->phase = PH_REPORT;
        snprintf(path, sizeof path, "/updateReports?agent=%s", cl->agent);
        dial(cl, path);
        return;
    case PH_REPORT:
        cl->phase = PH_DONE;
        return;
    case PH_DONE:
        return;
    }
}

/* Accept ws://HOST:PORT with an optional trailing slash. */
static int parse_url(struct client *cl, const char *url)
{
    static const char scheme[] = "ws://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        return -1;
    }
    char hostport[300];
    snprintf(hostport, sizeof hostport, "%s", url + sizeof scheme - 1);
    size_t n = strlen(hostport);
    if (n && hostport[n - 1] == '/') {
        hostport[n - 1] = '\0';
    }
    if (up_addr_split(hostport, cl->host, sizeof cl->host, &cl->port) < 0 || cl->port == 0) {
        return -1;
    }
    snprintf(cl->host_header, sizeof cl->host_header, "%s", hostport);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: ws_echo_client [-v] [-a AGENT] [ws://HOST:PORT]  "
                    "(default: $AUTOBAHN_URL)\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct client cl = {.loop = uv_default_loop(), .agent = "underpass"};
    echo_pmd_cfg(&cl.pmd_cfg);
    const char *url = getenv("AUTOBAHN_URL");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            cl.verbose = true;
        } else if (strcmp(argv[i], "-a") == 0 && i + 1 < argc) {
            cl.agent = argv[++i];
        } else if (argv[i][0] != '-') {
            url = argv[i];
        } else {
            return usage();
        }
    }
    for (const char *p = cl.agent; *p; p++) {
        /* The agent name goes into a query string unescaped. */
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.')) {
            fprintf(stderr, "ws_echo_client: agent name may use only [A-Za-z0-9._-]\n");
            return 2;
        }
    }
    if (!url || parse_url(&cl, url) < 0) {
        fprintf(stderr, "ws_echo_client: need ws://HOST:PORT (argument or AUTOBAHN_URL)\n");
        return usage();
    }
    signal(SIGPIPE, SIG_IGN);
    cl.phase = PH_COUNT;
    dial(&cl, "/getCaseCount");
    uv_run(cl.loop, UV_RUN_DEFAULT);
    if (cl.dial_failures) {
        fprintf(stderr, "ws_echo_client: %u connections could not be made\n", cl.dial_failures);
        cl.exit_code = 1;
    }
    fprintf(stderr, "ws_echo_client: ran %u of %u cases\n", cl.cur, cl.n_cases);
    return cl.exit_code;
}
