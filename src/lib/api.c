/* libunderpass: the public API (include/underpass/underpass.h) over the same layer the CLI
 * uses. Options go through the CLI's option tables (lib/setup.c), agents start in
 * up_agent_start_cfg(), connects in up_client_new(): one code path for both. */
#include "underpass/underpass.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "client/client.h"
#include "lib/opts.h"
#include "lib/setup.h"
#include "net/sock.h"
#include "proto/token.h"

_Static_assert(UP_E_AGAIN == UP_EAGAIN && UP_E_INVAL == UP_EINVAL && UP_E_STATE == UP_ESTATE &&
                   UP_E_SYS == UP_ESYS && UP_E_TLS == UP_ETLS && UP_E_NOMEM == UP_ENOMEM,
               "public error codes are the internal ones");

struct serve {
    char name[UP_TOKEN_MAX_NAME + 1];
    up_stream_fn fn;
    void *ud;
};

struct up_options {
    enum up_options_kind role;
    const struct up_opt *tab;
    size_t n;
    struct up_opt_val vals[UP_OPT_MAX_TABLE];
    char **owned; /* every string vals point to */
    size_t nowned, capowned;
    struct serve serve[UP_AGENT_MAX_SERVICES];
    size_t nserve;
    up_log_fn log;
    void *log_ud;
    int log_level;
    up_event_fn ev;
    void *ev_ud;
};

UP_API const char *up_version(void)
{
    return UNDERPASS_VERSION;
}

UP_API int up_abi_version(void)
{
    return UNDERPASS_VERSION_MAJOR;
}

UP_API const char *up_error_name(int err)
{
    return up_strerror(err);
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) {
        snprintf(err, errlen, "%s", msg);
    }
}

/* ---- options ---- */

static char *own(struct up_options *o, char *s)
{
    if (!s) {
        return NULL;
    }
    if (o->nowned == o->capowned) {
        size_t cap = o->capowned ? 2 * o->capowned : 16;
        char **n = up_realloc(o->owned, cap * sizeof(*n));
        if (!n) {
            up_free(s);
            return NULL;
        }
        o->owned = n;
        o->capowned = cap;
    }
    o->owned[o->nowned++] = s;
    return s;
}

UP_API struct up_options *up_options_new(enum up_options_kind role)
{
    if (role != UP_OPTIONS_AGENT && role != UP_OPTIONS_CONNECT) {
        return NULL;
    }
    struct up_options *o = up_calloc(1, sizeof(*o));
    if (!o) {
        return NULL;
    }
    o->role = role;
    o->tab = role == UP_OPTIONS_AGENT ? up_agent_opts : up_connect_opts;
    o->n = role == UP_OPTIONS_AGENT ? up_agent_nopts : up_connect_nopts;
    o->log_level = UP_LOG_INFO;
    char err[256];
    if (up_opts_defaults(o->tab, o->n, o->vals, err, sizeof err) < 0) {
        up_free(o);
        return NULL;
    }
    return o;
}

UP_API void up_options_free(struct up_options *o)
{
    if (!o) {
        return;
    }
    for (size_t i = 0; i < o->nowned; i++) {
        up_free(o->owned[i]);
    }
    up_free(o->owned);
    up_free(o);
}

UP_API int up_options_set(struct up_options *o, const char *key, const char *value, char *err,
                          size_t errlen)
{
    char msg[512];
    if (!o || !key || !value) {
        set_err(err, errlen, "up_options_set: NULL argument");
        return UP_E_INVAL;
    }
    size_t kl = strlen(key);
    char name[80];
    if (kl > 5 && kl < sizeof name && strcmp(key + kl - 5, "-file") == 0) {
        memcpy(name, key, kl - 5);
        name[kl - 5] = '\0';
        int i = up_opts_find(o->tab, o->n, name);
        if (i >= 0 && o->tab[i].kind == UP_OPT_SECRET) {
            char *secret = up_opts_read_secret(value, msg, sizeof msg);
            if (!secret) {
                set_err(err, errlen, msg);
                return UP_E_INVAL;
            }
            if (!own(o, secret)) {
                set_err(err, errlen, "out of memory");
                return UP_E_NOMEM;
            }
            return up_opts_set(o->tab, o->n, o->vals, name, secret, err, errlen) < 0 ? UP_E_INVAL
                                                                                     : 0;
        }
    }
    char *copy = own(o, up_strdup(value));
    if (!copy) {
        set_err(err, errlen, "out of memory");
        return UP_E_NOMEM;
    }
    if (up_opts_set(o->tab, o->n, o->vals, key, copy, msg, sizeof msg) < 0) {
        set_err(err, errlen, msg);
        return UP_E_INVAL;
    }
    enum up_log_level lvl;
    if (strcmp(key, "log-level") == 0 && up_log_parse_level(copy, &lvl) < 0) {
        snprintf(msg, sizeof msg,
                 "log-level: unknown level '%.40s' (error, warn, info, debug, trace)", copy);
        set_err(err, errlen, msg);
        return UP_E_INVAL;
    }
    return 0;
}

UP_API int up_options_serve(struct up_options *o, const char *name, up_stream_fn fn, void *ud,
                            char *err, size_t errlen)
{
    if (!o || !name || !fn || o->role != UP_OPTIONS_AGENT) {
        set_err(err, errlen, "up_options_serve: an agent's options, a name and a callback");
        return UP_E_INVAL;
    }
    size_t nl = strlen(name);
    if (!up_token_valid_service_name(name, nl) || strcmp(name, "*") == 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "service '%.80s': name must be 1-63 of [A-Za-z0-9._-]", name);
        set_err(err, errlen, msg);
        return UP_E_INVAL;
    }
    for (size_t i = 0; i < o->nserve; i++) {
        if (strcmp(o->serve[i].name, name) == 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "service '%s' given twice", name);
            set_err(err, errlen, msg);
            return UP_E_INVAL;
        }
    }
    if (o->nserve == UP_AGENT_MAX_SERVICES) {
        set_err(err, errlen, "too many services");
        return UP_E_INVAL;
    }
    struct serve *s = &o->serve[o->nserve++];
    memcpy(s->name, name, nl + 1);
    s->fn = fn;
    s->ud = ud;
    return 0;
}

UP_API void up_options_log(struct up_options *o, int level, up_log_fn fn, void *ud)
{
    o->log = fn;
    o->log_ud = ud;
    o->log_level = level < UP_LOG_ERROR   ? UP_LOG_ERROR
                   : level > UP_LOG_TRACE ? UP_LOG_TRACE
                                          : level;
}

UP_API void up_options_events(struct up_options *o, up_event_fn fn, void *ud)
{
    o->ev = fn;
    o->ev_ud = ud;
}

/* A deep copy: the handle keeps its options while the caller frees theirs. */
static struct up_options *options_clone(const struct up_options *src)
{
    struct up_options *o = up_calloc(1, sizeof(*o));
    if (!o) {
        return NULL;
    }
    *o = *src;
    o->owned = NULL;
    o->nowned = o->capowned = 0;
    for (size_t i = 0; i < o->n; i++) {
        struct up_opt_val *v = &o->vals[i];
        if (v->str && !(v->str = own(o, up_strdup(v->str)))) {
            goto undo;
        }
        for (size_t j = 0; j < v->nlist; j++) {
            if (!(v->list[j] = own(o, up_strdup(v->list[j])))) {
                goto undo;
            }
        }
    }
    return o;
undo:
    up_options_free(o);
    return NULL;
}

static void log_sink(void *ud, enum up_log_level lvl, const char *line)
{
    const struct up_options *o = ud;
    o->log(o->log_ud, (int)lvl, line);
}

/* The level: "log-level" when it was set, else up_options_log's. */
static enum up_log_level log_level(const struct up_options *o)
{
    const struct up_opt_val *v = up_setup_val(o->tab, o->n, o->vals, "log-level");
    enum up_log_level lvl = (enum up_log_level)o->log_level;
    if (v->set && v->str && up_log_parse_level(v->str, &lvl) < 0) {
        lvl = (enum up_log_level)o->log_level; /* checked in up_options_set */
    }
    return lvl;
}

static void log_here(const struct up_options *o, const char *role)
{
    if (o->log) {
        up_log_thread(log_level(o), role, log_sink, (void *)o);
    }
}

/* ---- agent ---- */

enum { CMD_STOP = 1, CMD_SHUTDOWN = 2, CMD_FREE = 4 };

struct embed_agent {
    struct up_options *o; /* owned copy */
    struct up_setup_store st;
    struct up_agent_cfg cfg;
    struct up_agent *a;
    /* On a thread of its own. */
    bool threaded;
    uv_loop_t *own_loop;
    uv_async_t async;
    uv_thread_t thread;
    atomic_int cmd;
};

static void agent_event(void *ud, enum up_agent_event ev, const char *detail, int status)
{
    struct embed_agent *e = ud;
    static const enum up_event map[] = {
        [UP_AGENT_EV_UP] = UP_EVENT_CONNECTED,
        [UP_AGENT_EV_REFUSED] = UP_EVENT_REFUSED,
        [UP_AGENT_EV_DOWN] = UP_EVENT_RECONNECTING,
        [UP_AGENT_EV_DRAIN] = UP_EVENT_DRAINING,
    };
    e->o->ev(e->o->ev_ud, map[ev], detail ? detail : "", status);
}

static void embed_agent_free(struct embed_agent *e)
{
    up_setup_uplink_fini(&e->cfg.up);
    up_options_free(e->o);
    up_free(e);
}

static int agent_make(uv_loop_t *loop, const struct up_options *o, struct embed_agent **out,
                      char *err, size_t errlen)
{
    char msg[512];
    if (!o || o->role != UP_OPTIONS_AGENT) {
        set_err(err, errlen, "up_agent: options made for UP_OPTIONS_AGENT are needed");
        return UP_E_INVAL;
    }
    struct embed_agent *e = up_calloc(1, sizeof(*e));
    if (!e || !(e->o = options_clone(o))) {
        up_free(e);
        set_err(err, errlen, "out of memory");
        return UP_E_NOMEM;
    }
    for (size_t i = 0; i < e->o->nserve; i++) {
        struct up_agent_service *s = &e->cfg.services[i];
        memcpy(s->name, e->o->serve[i].name, sizeof s->name);
        s->fn = e->o->serve[i].fn;
        s->fn_ud = e->o->serve[i].ud;
    }
    if (up_setup_agent(e->o->vals, &e->st, &e->cfg, e->o->nserve, msg, sizeof msg) < 0) {
        set_err(err, errlen, msg);
        up_options_free(e->o);
        up_free(e);
        return UP_E_INVAL;
    }
    if (e->o->ev) {
        e->cfg.on_event = agent_event;
        e->cfg.event_ud = e;
    }
    e->a = up_agent_start_cfg(loop, &e->cfg, e->st.base_path, msg, sizeof msg);
    if (!e->a) {
        set_err(err, errlen, msg);
        embed_agent_free(e);
        return UP_E_NOMEM;
    }
    up_agent_set_embed(e->a, e);
    *out = e;
    return 0;
}

UP_API int up_agent_new(uv_loop_t *loop, const struct up_options *o, struct up_agent **out,
                        char *err, size_t errlen)
{
    struct embed_agent *e;
    if (!loop || !out) {
        set_err(err, errlen, "up_agent_new: NULL argument");
        return UP_E_INVAL;
    }
    if (o && o->log) {
        log_here(o, "agent");
    }
    int rv = agent_make(loop, o, &e, err, errlen);
    if (rv < 0) {
        if (o && o->log) {
            up_log_thread(UP_LOG_INFO, NULL, NULL, NULL); /* it pointed at o */
        }
        return rv;
    }
    if (e->o->log) {
        log_here(e->o, "agent"); /* the handle's own copy: o may be freed now */
    }
    *out = e->a;
    return 0;
}

static void on_async(uv_async_t *h)
{
    struct embed_agent *e = h->data;
    int cmd = atomic_exchange(&e->cmd, 0);
    if (cmd & (CMD_STOP | CMD_FREE)) {
        up_agent_close(e->a);
    } else if (cmd & CMD_SHUTDOWN) {
        up_agent_drain(e->a);
    }
    if (cmd & CMD_FREE) {
        uv_close((uv_handle_t *)&e->async, NULL);
    }
}

static void agent_thread(void *arg)
{
    struct embed_agent *e = arg;
    /* Our thread never takes SIGPIPE: a write to a peer that went away gets EPIPE. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    (void)pthread_sigmask(SIG_BLOCK, &set, NULL);
    log_here(e->o, "agent");
    uv_run(e->own_loop, UV_RUN_DEFAULT);
}

/* The thread could not start: close what was made on its loop by running it here, once. */
static int thread_fail(struct embed_agent *e, bool async)
{
    up_agent_close(e->a);
    if (async) {
        uv_close((uv_handle_t *)&e->async, NULL);
    }
    uv_run(e->own_loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(e->own_loop);
    up_free(e->own_loop);
    up_agent_release(e->a);
    embed_agent_free(e);
    return UP_E_SYS;
}

UP_API int up_agent_start_thread(const struct up_options *o, struct up_agent **out, char *err,
                                 size_t errlen)
{
    if (!out) {
        set_err(err, errlen, "up_agent_start_thread: NULL argument");
        return UP_E_INVAL;
    }
    uv_loop_t *loop = up_calloc(1, sizeof(*loop));
    if (!loop || uv_loop_init(loop) != 0) {
        up_free(loop);
        set_err(err, errlen, "cannot make an event loop");
        return UP_E_SYS;
    }
    /* Built on a loop of its own, not yet run: no other thread touches it until the thread
     * starts. The loop then moves into the handle. */
    struct embed_agent *e;
    int rv = agent_make(loop, o, &e, err, errlen);
    if (rv < 0) {
        (void)uv_loop_close(loop);
        up_free(loop);
        return rv;
    }
    e->threaded = true;
    e->own_loop = loop;
    e->async.data = e;
    if (uv_async_init(loop, &e->async, on_async) != 0) {
        set_err(err, errlen, "cannot make an async handle");
        return thread_fail(e, false);
    }
    if (uv_thread_create(&e->thread, agent_thread, e) != 0) {
        set_err(err, errlen, "cannot start a thread");
        return thread_fail(e, true);
    }
    *out = e->a;
    return 0;
}

/* Stop or drain: at once on the agent's own loop, through the async handle on its thread. */
static void agent_command(struct up_agent *a, int cmd, void (*now)(struct up_agent *))
{
    struct embed_agent *e = a ? up_agent_embed(a) : NULL;
    if (!e) {
        return;
    }
    if (e->threaded) {
        atomic_fetch_or(&e->cmd, cmd);
        uv_async_send(&e->async);
        return;
    }
    now(a);
}

UP_API void up_agent_stop(struct up_agent *a)
{
    agent_command(a, CMD_STOP, up_agent_close);
}

UP_API void up_agent_shutdown(struct up_agent *a)
{
    agent_command(a, CMD_SHUTDOWN, up_agent_drain);
}

UP_API void up_agent_free(struct up_agent *a)
{
    struct embed_agent *e = a ? up_agent_embed(a) : NULL;
    if (!e) {
        return;
    }
    if (e->threaded) {
        atomic_fetch_or(&e->cmd, CMD_FREE);
        uv_async_send(&e->async);
        uv_thread_join(&e->thread);
        (void)uv_loop_close(e->own_loop);
        up_free(e->own_loop);
    } else if (e->o->log) {
        up_log_thread(UP_LOG_INFO, NULL, NULL, NULL); /* the sink points into e */
    }
    up_agent_release(a);
    embed_agent_free(e);
}

/* ---- connect ---- */

struct up_connect {
    struct up_options *o; /* owned copy */
    struct up_setup_store st;
    struct up_client_cfg cfg;
    struct up_client *c;
    char service[UP_TOKEN_MAX_NAME + 1];
    bool stopped;
};

static void connect_free(struct up_connect *k)
{
    up_setup_uplink_fini(&k->cfg.up);
    up_options_free(k->o);
    up_free(k);
}

UP_API int up_connect_new(uv_loop_t *loop, const struct up_options *o, const char *service,
                          struct up_connect **out, char *err, size_t errlen)
{
    char msg[512];
    if (!loop || !o || !service || !out || o->role != UP_OPTIONS_CONNECT) {
        set_err(err, errlen,
                "up_connect_new: a loop, options made for UP_OPTIONS_CONNECT, a service");
        return UP_E_INVAL;
    }
    const struct up_opt_val *lv = up_setup_val(o->tab, o->n, o->vals, "listen");
    const struct up_opt_val *sv = up_setup_val(o->tab, o->n, o->vals, "stdio");
    if (lv->str || sv->num) {
        set_err(err, errlen,
                "listen and stdio are for the command line: open streams with "
                "up_connect_open()");
        return UP_E_INVAL;
    }
    if (strlen(service) >= sizeof((struct up_connect *)0)->service) {
        set_err(err, errlen, "service name too long");
        return UP_E_INVAL;
    }
    struct up_connect *k = up_calloc(1, sizeof(*k));
    if (!k || !(k->o = options_clone(o))) {
        up_free(k);
        set_err(err, errlen, "out of memory");
        return UP_E_NOMEM;
    }
    snprintf(k->service, sizeof k->service, "%s", service);
    if (k->o->log) {
        log_here(k->o, "connect");
    }
    if (up_setup_client(k->o->vals, k->service, &k->st, &k->cfg, msg, sizeof msg) < 0) {
        set_err(err, errlen, msg);
        up_options_free(k->o);
        up_free(k);
        return UP_E_INVAL;
    }
    k->c = up_client_new(loop, &k->cfg, k->st.base_path, msg, sizeof msg);
    if (!k->c) {
        set_err(err, errlen, msg);
        connect_free(k);
        return UP_E_NOMEM;
    }
    *out = k;
    return 0;
}

UP_API int up_connect_open(struct up_connect *k, int *fd)
{
    int fds[2];
    if (!k || !fd) {
        return UP_E_INVAL;
    }
    if (k->stopped) {
        return UP_E_STATE;
    }
    if (up_sock_pair(fds) < 0) {
        return UP_E_SYS;
    }
    if (up_client_adopt(k->c, fds[0], "in-process") < 0) {
        close(fds[0]);
        close(fds[1]);
        return UP_E_STATE;
    }
    *fd = fds[1];
    return 0;
}

UP_API void up_connect_stop(struct up_connect *k)
{
    if (!k || k->stopped) {
        return;
    }
    k->stopped = true;
    up_client_stop(k->c);
}

UP_API void up_connect_free(struct up_connect *k)
{
    if (!k) {
        return;
    }
    if (k->o->log) {
        up_log_thread(UP_LOG_INFO, NULL, NULL, NULL);
    }
    up_client_free(k->c);
    connect_free(k);
}
