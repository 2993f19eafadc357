#include "net/tls.h"

#include <pthread.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

static void err_line(char *err, size_t cap, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
    }
    snprintf(err, cap, "%s%s%s", what, e ? ": " : "", buf);
    ERR_clear_error();
}

static void common_ctx(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No SSL_MODE_RELEASE_BUFFERS: freeing and reallocating the record buffers after every
     * drained record costs more on the bulk path than the ~34 KiB per connection it saves. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read ahead into a 64 KiB buffer: one read() yields several records instead of two
     * syscalls (header, then body) per 16 KiB record. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
    /* Prefer AES-GCM: AES-NI makes it the cheapest AEAD on servers. */
    (void)SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                        "TLS_CHACHA20_POLY1305_SHA256");
}

struct ssl_ctx_st *up_tls_server_ctx(const char *cert, const char *key, char *err, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        err_line(err, cap, "tls: cannot create context");
        return NULL;
    }
    common_ctx(ctx);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        char what[512];
        snprintf(what, sizeof what, "tls: cannot load certificate %s", cert);
        err_line(err, cap, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char what[512];
        snprintf(what, sizeof what, "tls: cannot load private key %s", key);
        err_line(err, cap, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct ssl_ctx_st *up_tls_client_ctx(const char *ca_file, bool insecure, char *err, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        err_line(err, cap, "tls: cannot create context");
        return NULL;
    }
    common_ctx(ctx);
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        char what[512];
        snprintf(what, sizeof what, "tls: cannot load CA file %s", ca_file ? ca_file : "(system)");
        err_line(err, cap, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void up_tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

/* OpenSSL's socket BIO writes with write(2), which raises SIGPIPE when the peer has gone: a
 * library must not kill its host for that (and must not install a handler either). This
 * method is the socket BIO with its write replaced by send(MSG_NOSIGNAL). Made once, then
 * only read: shared by every loop and thread. */
static BIO_METHOD *nosig_method;
static pthread_once_t nosig_once = PTHREAD_ONCE_INIT;

static int nosig_write(BIO *b, const char *buf, int len)
{
    int fd = -1;
    (void)BIO_get_fd(b, &fd);
    ssize_t r = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
    BIO_clear_retry_flags(b);
    if (r <= 0 && BIO_sock_should_retry((int)r)) {
        BIO_set_retry_write(b);
    }
    return (int)r;
}

static void nosig_init(void)
{
    const BIO_METHOD *sock = BIO_s_socket();
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOCKET, "socket (no SIGPIPE)");
    if (!m || BIO_meth_set_write(m, nosig_write) != 1 ||
        BIO_meth_set_read(m, BIO_meth_get_read(sock)) != 1 ||
        BIO_meth_set_puts(m, BIO_meth_get_puts(sock)) != 1 ||
        BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock)) != 1 ||
        BIO_meth_set_create(m, BIO_meth_get_create(sock)) != 1 ||
        BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock)) != 1) {
        BIO_meth_free(m);
        return;
    }
    nosig_method = m;
}

/* A socket BIO on fd that never raises SIGPIPE; NULL when out of memory. */
static BIO *nosig_bio(int fd)
{
    (void)pthread_once(&nosig_once, nosig_init);
    BIO *b = nosig_method ? BIO_new(nosig_method) : NULL;
    if (b) {
        BIO_set_fd(b, fd, BIO_NOCLOSE);
    }
    return b;
}

int up_tls_attach(struct up_sock *s, struct ssl_ctx_st *ctx, bool server, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        return UP_ENOMEM;
    }
    BIO *bio = nosig_bio(s->fd);
    if (!bio) {
        SSL_free(ssl);
        return UP_ENOMEM;
    }
    SSL_set_bio(ssl, bio, bio);
    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (host && host[0]) {
            (void)SSL_set_tlsext_host_name(ssl, host);
            /* IP literals are checked as IP SANs, names as DNS names. */
            if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)) {
                ERR_clear_error();
                (void)SSL_set1_host(ssl, host);
            }
        }
    }
    s->ssl = ssl;
    s->is_server = server;
    s->tls = UP_TLS_HANDSHAKE;
    return UP_OK;
}

int up_tls_attach_inner(struct up_sock *s, struct ssl_ctx_st *ctx, const char *host)
{
    SSL *inner = SSL_new(ctx);
    BIO *outer = inner ? BIO_new(BIO_f_ssl()) : NULL;
    if (!outer) {
        SSL_free(inner);
        return UP_ENOMEM;
    }
    /* The BIO owns the outer session from here; freeing the inner session frees both. */
    BIO_set_ssl(outer, s->ssl, BIO_CLOSE);
    SSL_set_bio(inner, outer, outer);
    SSL_set_connect_state(inner);
    if (host && host[0]) {
        (void)SSL_set_tlsext_host_name(inner, host);
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(inner), host)) {
            ERR_clear_error();
            (void)SSL_set1_host(inner, host);
        }
    }
    s->ssl = inner;
    s->tls = UP_TLS_HANDSHAKE;
    return UP_OK;
}

int up_tls_handshake(struct up_sock *s)
{
    ERR_clear_error();
    int ret = SSL_do_handshake(s->ssl);
    if (ret == 1) {
        s->tls = UP_TLS_OPEN;
        s->tls_want_r = s->tls_want_w = false;
        up_sock_update(s);
        return UP_OK;
    }
    int e = SSL_get_error(s->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        s->tls_want_r = e == SSL_ERROR_WANT_READ;
        s->tls_want_w = e == SSL_ERROR_WANT_WRITE;
        up_sock_update(s);
        return UP_EAGAIN;
    }
    s->tls = UP_TLS_FAILED;
    return UP_ETLS;
}

const char *up_tls_error(struct up_sock *s, char *buf, size_t cap)
{
    long vr = s->ssl ? SSL_get_verify_result(s->ssl) : X509_V_OK;
    unsigned long e = ERR_get_error();
    char ebuf[256] = "";
    if (e) {
        ERR_error_string_n(e, ebuf, sizeof ebuf);
    }
    if (vr != X509_V_OK) {
        snprintf(buf, cap, "certificate verification failed: %s",
                 X509_verify_cert_error_string(vr));
    } else if (e) {
        snprintf(buf, cap, "%s", ebuf);
    } else if (s->last_errno) {
        snprintf(buf, cap, "%s", strerror(s->last_errno));
    } else {
        snprintf(buf, cap, "connection closed during TLS");
    }
    ERR_clear_error();
    return buf;
}

bool up_tls_verify_failed(const struct up_sock *s)
{
    return s->ssl && SSL_get_verify_result(s->ssl) != X509_V_OK;
}

const char *up_tls_peer_issuer(const struct up_sock *s, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!s->ssl || cap == 0) {
        return buf;
    }
    /* On a failed verification the session has no peer certificate yet, but the chain the
     * peer sent (leaf first, on the client side) is kept. */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(s->ssl);
    X509 *leaf = chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
    if (!leaf) {
        return buf;
    }
    BIO *mem = BIO_new(BIO_s_mem());
    if (!mem) {
        return buf;
    }
    if (X509_NAME_print_ex(mem, X509_get_issuer_name(leaf), 0,
                           XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        int n = BIO_read(mem, buf, (int)(cap - 1 > 400 ? 400 : cap - 1));
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(mem);
    return buf;
}
