/* The shell's write paths never raise SIGPIPE (libunderpass installs no handler and runs on
 * threads and loops that are not its own): each one gets EPIPE from a socket whose peer is
 * gone, with SIGPIPE at its default, fatal disposition in this process. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "net/sock.h"
#include "net/tls.h"

struct fixture {
    uv_loop_t loop;
    struct up_sock s;
};

static void closed_cb(struct up_sock *s)
{
    (void)s;
}

/* A socket whose peer has closed. */
static void dead_peer(struct fixture *f)
{
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);
    int fds[2];
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(up_sock_pair(fds), UP_OK);
    close(fds[1]);
    memset(&f->s, 0, sizeof f->s);
    assert_int_equal(up_sock_init(&f->s, &f->loop, fds[0], NULL, NULL), UP_OK);
}

static void done(struct fixture *f)
{
    up_sock_close(&f->s, closed_cb);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_sock_write_epipe_not_sigpipe(void **state)
{
    (void)state;
    struct fixture f;
    dead_peer(&f);
    static const uint8_t b[4096];
    size_t n = 99;
    assert_int_equal(up_sock_write(&f.s, b, sizeof b, &n), UP_ESYS);
    assert_int_equal(n, 0);
    assert_int_equal(f.s.last_errno, EPIPE);
    done(&f);
}

static void test_sock_writev_epipe_not_sigpipe(void **state)
{
    (void)state;
    struct fixture f;
    dead_peer(&f);
    static uint8_t b[4096];
    struct iovec iov[2] = {{b, 100}, {b, sizeof b}};
    size_t n = 99;
    assert_int_equal(up_sock_writev(&f.s, iov, 2, &n), UP_ESYS);
    assert_int_equal(f.s.last_errno, EPIPE);
    done(&f);
}

static void test_sock_splice_out_epipe_not_sigpipe(void **state)
{
    (void)state;
    struct fixture f;
    dead_peer(&f);
    int kp[2];
    assert_int_equal(up_kpipe_open(kp, 65536), UP_OK);
    static const uint8_t b[4096];
    assert_int_equal(write(kp[1], b, sizeof b), (ssize_t)sizeof b);
    size_t n = 99;
    int rv = up_sock_splice_out(&f.s, kp[0], sizeof b, &n);
    assert_true(rv == UP_ESYS || rv == UP_EINVAL); /* EINVAL: this kernel cannot splice here */
    if (rv == UP_ESYS) {
        assert_int_equal(f.s.last_errno, EPIPE);
    }
    /* A SIGPIPE we caused was taken back, not left pending for the application. */
    sigset_t pending;
    assert_int_equal(sigpending(&pending), 0);
    assert_false(sigismember(&pending, SIGPIPE));
    up_kpipe_close(kp);
    done(&f);
}

/* A self-signed P-256 certificate and its key, written to temporary PEM files. */
static void make_cert(char *cert, char *key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(pk);
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    snprintf(cert, 64, "%s", "/tmp/up-test-cert-XXXXXX");
    snprintf(key, 64, "%s", "/tmp/up-test-key-XXXXXX");
    int cf = mkstemp(cert), kf = mkstemp(key);
    assert_true(cf >= 0 && kf >= 0);
    FILE *c = fdopen(cf, "w"), *k = fdopen(kf, "w");
    assert_true(PEM_write_X509(c, x) == 1);
    assert_true(PEM_write_PrivateKey(k, pk, NULL, NULL, 0, NULL, NULL) == 1);
    fclose(c);
    fclose(k);
    X509_free(x);
    EVP_PKEY_free(pk);
}

/* TLS writes go through a socket BIO that sends with MSG_NOSIGNAL (OpenSSL's own uses
 * write(2), which raises SIGPIPE). */
static void test_sock_tls_write_epipe_not_sigpipe(void **state)
{
    (void)state;
    char cert[64], key[64], err[256];
    make_cert(cert, key);
    struct ssl_ctx_st *sctx = up_tls_server_ctx(cert, key, err, sizeof err);
    struct ssl_ctx_st *cctx = up_tls_client_ctx(NULL, true, err, sizeof err);
    unlink(cert);
    unlink(key);
    assert_non_null(sctx);
    assert_non_null(cctx);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int fds[2];
    assert_int_equal(up_sock_pair(fds), UP_OK);
    struct up_sock cs, ss;
    memset(&cs, 0, sizeof cs);
    memset(&ss, 0, sizeof ss);
    assert_int_equal(up_sock_init(&cs, &loop, fds[0], NULL, NULL), UP_OK);
    assert_int_equal(up_sock_init(&ss, &loop, fds[1], NULL, NULL), UP_OK);
    assert_int_equal(up_tls_attach(&cs, cctx, false, "localhost"), UP_OK);
    assert_int_equal(up_tls_attach(&ss, sctx, true, NULL), UP_OK);
    int rc = UP_EAGAIN, rs = UP_EAGAIN;
    for (int i = 0; i < 100 && (rc != UP_OK || rs != UP_OK); i++) {
        if (rc != UP_OK) {
            rc = up_tls_handshake(&cs);
        }
        if (rs != UP_OK) {
            rs = up_tls_handshake(&ss);
        }
        assert_true(rc == UP_OK || rc == UP_EAGAIN);
        assert_true(rs == UP_OK || rs == UP_EAGAIN);
    }
    assert_int_equal(rc, UP_OK);
    assert_int_equal(rs, UP_OK);
    up_sock_close(&ss, closed_cb); /* the peer goes away */
    uv_run(&loop, UV_RUN_NOWAIT);
    static const uint8_t b[4096];
    size_t n = 0;
    int rv = UP_OK;
    for (int i = 0; i < 64 && rv == UP_OK; i++) {
        rv = up_sock_write(&cs, b, sizeof b, &n);
    }
    assert_true(rv == UP_ESYS || rv == UP_ETLS);
    up_sock_close(&cs, closed_cb);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    up_tls_ctx_free(sctx);
    up_tls_ctx_free(cctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sock_write_epipe_not_sigpipe),
        cmocka_unit_test(test_sock_writev_epipe_not_sigpipe),
        cmocka_unit_test(test_sock_splice_out_epipe_not_sigpipe),
        cmocka_unit_test(test_sock_tls_write_epipe_not_sigpipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
