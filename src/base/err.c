#include "base/err.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "base/log.h"

static atomic_ulong internal_errors;

void up_assert_failed(const char *what, const char *file, int line)
{
#ifndef NDEBUG
    up_log(UP_LOG_ERROR, "internal error: %s:%d: assertion failed: %s", file, line, what);
    abort();
#else
    atomic_fetch_add(&internal_errors, 1);
    up_log(UP_LOG_ERROR, "internal error: %s:%d: assertion failed: %s", file, line, what);
#endif
}

unsigned long up_internal_errors(void)
{
    return atomic_load(&internal_errors);
}

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
