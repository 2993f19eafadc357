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

#endif
