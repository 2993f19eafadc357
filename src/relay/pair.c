/* Pairing tokens and POST /api/pairings (see pair.h). */
#include "relay/pair.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/crypto.h"
#include "base/log.h"
#include "relay/auth.h"
#include "relay/conn.h"
#include "relay/registry.h"

#define PAIR_MAX 10000 /* pairings waiting at once (429 above) */
#define PAIR_TTL_DEFAULT_S 60
#define PAIR_TTL_MAX_S 86400
#define PAIR_SWEEP_MS 250

static void pairing_free(struct up_relay *r, struct pairing *p)
{
    struct pairing **pp = &r->pairings;
    while (*pp && *pp != p) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = p->next;
        r->n_pairings--;
    }
    if (p->host) {
        p->host->ws.pair = NULL;
    }
    if (p->browser) {
        p->browser->ws.pair = NULL;
    }
    up_free(p);
}

static void pair_timer_closed(uv_handle_t *h)
{
    (void)h;
}

static void pair_sweep(uv_timer_t *t)
{
    struct up_relay *r = t->data;
    uint64_t now = uv_now(r->loop);
    struct pairing *p = r->pairings;
    while (p) {
        struct pairing *next = p->next;
        if (now >= p->expires_ms) {
            struct hconn *h = p->host, *b = p->browser;
            bool waited = !p->joined && (h || b);
            if (waited) {
                UP_LOGI("pairing expired before both sides joined%s%s",
                        p->service[0] ? " for " : "", p->service);
            }
            pairing_free(r, p);
            if (waited && h) {
                r->pair_expired(h);
            }
            if (waited && b) {
                r->pair_expired(b);
            }
        }
        p = next;
    }
    if (!r->pairings) {
        uv_timer_stop(t);
    }
}

void pair_shutdown(struct up_relay *r)
{
    while (r->pairings) {
        pairing_free(r, r->pairings);
    }
    if (r->pair_timer_init) {
        uv_timer_stop(&r->pair_timer);
        uv_close((uv_handle_t *)&r->pair_timer, pair_timer_closed);
        r->pair_timer_init = false;
    }
}

struct pairing *pair_find(struct up_relay *r, const char *tok, size_t len)
{
    if (len != PAIR_TOKEN_LEN) {
        return NULL;
    }
    for (struct pairing *p = r->pairings; p; p = p->next) {
        if (up_ct_equal(p->token, tok, PAIR_TOKEN_LEN)) {
            return p;
        }
    }
    return NULL;
}

void pair_api(struct hconn *c, const struct up_h1_msg *m)
{
    struct up_relay *r = c->relay;
    if (!(m->method_len == 4 && memcmp(m->method, "POST", 4) == 0)) {
        hc_error(c, 405, "Method Not Allowed", "use POST");
        return;
    }
    const char *tok = NULL;
    size_t tl = 0;
    if (!relay_bearer(m, &tok, &tl)) {
        hc_error(c, 401, "Unauthorized", "missing admin token (Authorization: Bearer ...)");
        return;
    }
    struct up_token_claims cl;
    const char *reason = NULL;
    if (relay_verify(r, tok, tl, &cl, &reason) < 0) {
        char w[160];
        snprintf(w, sizeof w, "invalid token: %s", reason ? reason : "refused");
        hc_error(c, 401, "Unauthorized", w);
        return;
    }
    if (cl.role != UP_ROLE_ADMIN) {
        hc_error(c, 403, "Forbidden", "/api needs a token with role admin");
        return;
    }
    if (m->chunked) {
        hc_error(c, 411, "Length Required", "send the JSON body with a Content-Length");
        return;
    }
    const char *service = "";
    json_int_t ttl = PAIR_TTL_DEFAULT_S;
    json_t *body = NULL;
    if (m->content_length > 0) {
        json_error_t je;
        body = json_loadb((const char *)up_buf_rptr(&c->in) + m->head_len,
                          (size_t)m->content_length, 0, &je);
        if (!json_is_object(body)) {
            json_decref(body);
            hc_error(c, 400, "Bad Request", "the body must be a JSON object");
            return;
        }
        json_t *sv = json_object_get(body, "service");
        json_t *tv = json_object_get(body, "ttl");
        if ((sv && !json_is_string(sv) && !json_is_null(sv)) || (tv && !json_is_integer(tv))) {
            json_decref(body);
            hc_error(c, 400, "Bad Request",
                     "\"service\" must be a string and \"ttl\" an integer (seconds)");
            return;
        }
        if (json_is_string(sv)) {
            service = json_string_value(sv);
        }
        if (tv) {
            ttl = json_integer_value(tv);
        }
    }
    char svc[UP_TOKEN_MAX_NAME + 1];
    size_t sl = strlen(service);
    snprintf(svc, sizeof svc, "%s", service);
    json_decref(body);
    if (ttl < 1 || ttl > PAIR_TTL_MAX_S) {
        hc_error(c, 400, "Bad Request", "\"ttl\" must be 1..86400 seconds");
        return;
    }
    if (sl) {
        if (sl > UP_TOKEN_MAX_NAME || !up_token_valid_service_name(svc, sl)) {
            hc_error(c, 400, "Bad Request", "invalid service name");
            return;
        }
        if (!up_token_allows(&cl, svc, sl)) {
            char w[160];
            snprintf(w, sizeof w, "token does not allow service '%s'", svc);
            hc_error(c, 403, "Forbidden", w);
            return;
        }
        if (!relay_find_agent(r, svc, sl, NULL)) {
            char w[160];
            snprintf(w, sizeof w, "no agent online for service '%s'", svc);
            hc_error(c, 404, "Not Found", w);
            return;
        }
    }
    if (r->n_pairings >= PAIR_MAX) {
        hc_error(c, 429, "Too Many Requests", "too many pairings waiting");
        return;
    }
    struct pairing *p = up_calloc(1, sizeof *p);
    uint8_t raw[24];
    if (!p || up_random_bytes(raw, sizeof raw) < 0) {
        up_free(p);
        hc_error(c, 503, "Service Unavailable", "cannot mint a pairing now");
        return;
    }
    up_b64_encode(raw, sizeof raw, p->token, true);
    snprintf(p->service, sizeof p->service, "%s", svc);
    p->expires_ms = uv_now(r->loop) + (uint64_t)ttl * 1000u;
    p->next = r->pairings;
    r->pairings = p;
    r->n_pairings++;
    if (!r->pair_timer_init) {
        uv_timer_init(r->loop, &r->pair_timer);
        r->pair_timer.data = r;
        r->pair_timer_init = true;
    }
    if (!uv_is_active((uv_handle_t *)&r->pair_timer)) {
        uv_timer_start(&r->pair_timer, pair_sweep, PAIR_SWEEP_MS, PAIR_SWEEP_MS);
    }
    /* The URLs, as this client reached us. */
    const struct up_h1_header *hh = up_h1_find(m, "host");
    char host[300];
    snprintf(host, sizeof host, "%.*s", hh ? (int)(hh->value_len < 256 ? hh->value_len : 256) : 0,
             hh ? hh->value : "");
    if (!host[0] || strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                 ".-:[]") != strlen(host)) {
        snprintf(host, sizeof host, "%s", c->local);
    }
    bool secure = r->tls || strcmp(c->proto, "https") == 0;
    char url[480], host_url[512], relay_url[400];
    snprintf(relay_url, sizeof relay_url, "%s://%s", secure ? "wss" : "ws", host);
    snprintf(url, sizeof url, "%s/pair/%s", relay_url, p->token);
    snprintf(host_url, sizeof host_url, "%s?side=host", url);
    json_t *o =
        json_pack("{s:s,s:I,s:I,s:s,s:s}", "token", p->token, "expires_in", ttl, "expires_at",
                  (json_int_t)time(NULL) + ttl, "url", url, "relay", relay_url);
    if (o && svc[0]) {
        json_object_set_new(o, "service", json_string(svc));
    } else if (o) {
        json_object_set_new(o, "host_url", json_string(host_url));
    }
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        hc_error(c, 500, "Internal Server Error", "out of memory");
        return;
    }
    char out[1500];
    snprintf(out, sizeof out, "%s\n", s);
    free(s); /* jansson's */
    UP_LOGI("pairing minted by %s%s%s, ttl %llds", cl.sub[0] ? cl.sub : c->client,
            svc[0] ? " for service " : " (rendezvous)", svc, (long long)ttl);
    hc_respond(c, 201, "Created", out, "application/json", NULL);
}
