/* The front door's connections (see conn.h). */
#include "relay/conn.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "net/sock.h"

#define LINGER_MS 2000

void hc_closed(uv_handle_t *h)
{
    struct hconn *c = h->data;
    if (--c->open_handles == 0) {
        up_buf_fini(&c->in);
        up_buf_fini(&c->out);
        up_free(c->pending);
        up_free(c);
    }
}

static void hc_sock_closed(struct up_sock *s)
{
    struct hconn *c = s->ud;
    up_free(s);
    hc_closed((uv_handle_t *)&c->timer);
}

static void hc_unlist(struct hconn *c)
{
    struct up_relay *r = c->relay;
    if (c->prev) {
        c->prev->next = c->next;
    } else if (r->conns == c) {
        r->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->next = c->prev = NULL;
}

void hc_list(struct hconn *c)
{
    struct up_relay *r = c->relay;
    c->prev = NULL;
    c->next = r->conns;
    if (r->conns) {
        r->conns->prev = c;
    }
    r->conns = c;
}

void hc_close(struct hconn *c, bool release)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (c->on_close) {
        c->on_close(c);
    }
    hc_unlist(c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, hc_closed);
    if (release) {
        up_sock_release(c->sock, hc_sock_closed);
    } else {
        up_sock_close(c->sock, hc_sock_closed);
    }
}

void hc_respond(struct hconn *c, int status, const char *text, const char *body, const char *ctype,
                const char *extra)
{
    char head[1024];
    size_t blen = strlen(body);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                     status, text, ctype, blen, extra ? extra : "");
    c->relay->n.http_requests++;
    if (status >= 400) {
        c->relay->n.http_errors++;
    }
    if (n < 0 || (size_t)n >= sizeof head || up_buf_append(&c->out, head, (size_t)n, 1 << 20) < 0 ||
        up_buf_append(&c->out, body, blen, 1 << 20) < 0) {
        hc_close(c, false);
        return;
    }
    c->state = HC_WRITE;
    c->upgrade_after = false;
    hc_flush(c);
}

const char *hc_desc(const struct hconn *c, char *buf, size_t cap)
{
    if (!c->via[0]) {
        snprintf(buf, cap, "%s", c->client);
    } else {
        snprintf(buf, cap, "%s (via proxy %s%s%s)", c->client, c->via, c->proto[0] ? ", " : "",
                 c->proto);
    }
    return buf;
}

void hc_error(struct hconn *c, int status, const char *text, const char *why)
{
    char body[300];
    snprintf(body, sizeof body, "%s\n", why);
    if (status == 401 || status == 403) {
        char who[160];
        c->relay->n.rejected++;
        UP_LOGI("rejected %s: %d %s", hc_desc(c, who, sizeof who), status, why);
    }
    hc_respond(c, status, text, body, "text/plain; charset=utf-8",
               status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL);
}

void hc_flush(struct hconn *c)
{
    while (up_buf_len(&c->out)) {
        size_t n = 0;
        int rv = up_sock_write(c->sock, up_buf_rptr(&c->out), up_buf_len(&c->out), &n);
        if (rv == UP_EAGAIN) {
            up_sock_want(c->sock, false, true);
            return;
        }
        if (rv < 0) {
            hc_close(c, false);
            return;
        }
        up_buf_skip(&c->out, n);
    }
    if (c->upgrade_after) {
        c->on_upgraded(c);
        return;
    }
    /* Lingering close: shut our side, drain theirs briefly, so the response is not lost to
     * an RST caused by unread input. */
    c->state = HC_LINGER;
    up_sock_shutdown_write(c->sock);
    up_sock_want(c->sock, true, false);
    uv_timer_start(&c->timer, hc_timeout, LINGER_MS, 0);
}

bool hc_write_owed(struct hconn *c, size_t *owed, struct up_lstream *st)
{
    while (up_buf_len(&c->out)) {
        size_t n = 0;
        int rv = up_sock_write(c->sock, up_buf_rptr(&c->out), up_buf_len(&c->out), &n);
        if (rv == UP_EAGAIN) {
            break;
        }
        if (rv < 0) {
            hc_close(c, false);
            return false;
        }
        up_buf_skip(&c->out, n);
        size_t k = n < *owed ? n : *owed;
        *owed -= k;
        if (k && st) {
            up_link_consumed(st, k);
        }
    }
    up_buf_release_if_empty(&c->out);
    return true;
}

void hc_timeout(uv_timer_t *t)
{
    struct hconn *c = t->data;
    if (c->state == HC_HEAD || c->state == HC_TLS) {
        if (c->state == HC_HEAD && up_buf_len(&c->in)) {
            hc_error(c, 408, "Request Timeout", "request head not complete in time");
            uv_timer_start(&c->timer, hc_timeout, LINGER_MS, 0);
            return;
        }
    }
    hc_close(c, false);
}
