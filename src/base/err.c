#include "base/err.h"

const char *up_strerror(int err)
{
    switch (err) {
    case UP_OK:
        return "ok";
    case UP_EAGAIN:
        return "try again";
    case UP_EOF:
        return "end of input";
    case UP_EPROTO:
        return "protocol error";
    case UP_ELIMIT:
        return "limit exceeded";
    case UP_EAUTH:
        return "not authorised";
    case UP_EINVAL:
        return "invalid argument";
    case UP_ESTATE:
        return "invalid state";
    case UP_ESYS:
        return "system error";
    case UP_ETLS:
        return "TLS error";
    case UP_ENOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}
