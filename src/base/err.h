/* Error codes shared by every layer (STYLE §4). */
#ifndef UP_BASE_ERR_H
#define UP_BASE_ERR_H

#define UP_NODISCARD __attribute__((warn_unused_result))

enum up_err {
    UP_OK = 0,
    UP_EAGAIN = -100, /* incomplete input or no room: not a failure, retry later */
    UP_EOF = -101,    /* orderly end of input */
    UP_EPROTO = -200, /* peer broke the protocol: close/reset with a reason */
    UP_ELIMIT = -201, /* peer exceeded a configured bound (431, 1009, RST_LIMIT) */
    UP_EAUTH = -202,  /* credentials missing, invalid or insufficient */
    UP_EINVAL = -300, /* caller misuse or bad configuration */
    UP_ESTATE = -301, /* call not valid in the object's current state */
    UP_ESYS = -400,   /* OS error; the shell keeps errno */
    UP_ETLS = -401,   /* TLS error; the shell logged the OpenSSL queue */
    UP_ENOMEM = -900, /* <= -900 is fatal: the object may only be freed */
};

/* Return a static, human-readable name for an up_err value. Never NULL. */
const char *up_strerror(int err);

/* Invariants of our own code, never checks of peer input (STYLE §4). Fatal in debug and fuzz
 * builds; in release builds the failure is counted (up_internal_errors) and the caller goes
 * on, so one broken object does not take the process down. */
#define UP_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            up_assert_failed(#cond, __FILE__, __LINE__);                                           \
        }                                                                                          \
    } while (0)
void up_assert_failed(const char *what, const char *file, int line);
/* Failed UP_ASSERTs so far in this process (release builds). */
unsigned long up_internal_errors(void);

#endif
