/* libFuzzer target for src/proto/token.c.
 * (1) Verify the input as a token with a fixed secret at a fixed time: any answer but a crash,
 *     and an accepted token must hold valid claims that sign and verify again unchanged.
 * (2) If the input has at least 2 bytes, build claims from it, sign them, and require that
 *     verify accepts the token and returns the same claims (round trip), and that verify with
 *     another secret refuses it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/token.h"

#define FUZZ_NOW ((int64_t)1700000000)
#define FUZZ_LEEWAY ((int64_t)UP_TOKEN_DEFAULT_LEEWAY_S)
/* 32 bytes; the seed corpus in fuzz/corpus/token/ is signed with it. */
#define FUZZ_KEY ((const uint8_t *)"underpass-fuzz-secret-0123456789")
#define FUZZ_KEY_LEN ((size_t)32)
#define OTHER_KEY ((const uint8_t *)"underpass-fuzz-secret-0123456788")

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok)
{
    if (!ok) {
        abort();
    }
}

/* Reads bytes from the input, cycling, and 0 once there are none. */
struct cursor {
    const uint8_t *p;
    size_t n, off;
};

static uint8_t next_byte(struct cursor *cur)
{
    if (cur->n == 0) {
        return 0;
    }
    uint8_t b = cur->p[cur->off % cur->n];
    cur->off++;
    return b;
}

static uint32_t next_u32(struct cursor *cur)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        v = v << 8 | next_byte(cur);
    }
    return v;
}

static void require_same_claims(const struct up_token_claims *a, const struct up_token_claims *b)
{
    require(a->role == b->role);
    require(a->n_services == b->n_services);
    for (size_t i = 0; i < a->n_services; i++) {
        require(strcmp(a->services[i], b->services[i]) == 0);
    }
    require(strcmp(a->sub, b->sub) == 0);
    require(a->exp == b->exp && a->nbf == b->nbf && a->iat == b->iat);
}

/* Sign c and verify the result at now_s; sign may refuse only if may_refuse. */
static void round_trip(const struct up_token_claims *c, int64_t now_s, bool may_refuse)
{
    char tok[UP_TOKEN_MAX_LEN + 1];
    size_t len = 0;
    int rv = up_token_sign(FUZZ_KEY, FUZZ_KEY_LEN, c, tok, sizeof tok, &len);
    if (rv == UP_EINVAL && may_refuse) {
        return;
    }
    require(rv == UP_OK);
    require(len == strlen(tok) && len <= UP_TOKEN_MAX_LEN);

    struct up_token_claims out;
    const char *why = "unset";
    rv = up_token_verify(tok, len, FUZZ_KEY, FUZZ_KEY_LEN, now_s, FUZZ_LEEWAY, &out, &why);
    require(rv == UP_OK && why == NULL);
    require_same_claims(c, &out);

    rv = up_token_verify(tok, len, OTHER_KEY, FUZZ_KEY_LEN, now_s, FUZZ_LEEWAY, &out, &why);
    require(rv == UP_EAUTH && why != NULL && strcmp(why, "bad signature") == 0);
    require(out.role == UP_ROLE_NONE && out.n_services == 0);
}

static void check_verify(const uint8_t *data, size_t size)
{
    struct up_token_claims c;
    const char *why = NULL;
    int rv = up_token_verify((const char *)data, size, FUZZ_KEY, FUZZ_KEY_LEN, FUZZ_NOW,
                             FUZZ_LEEWAY, &c, &why);
    if (rv == UP_ENOMEM) {
        return;
    }
    if (rv != UP_OK) {
        require(rv == UP_EAUTH && why != NULL && why[0] != '\0' && !strchr(why, '\n'));
        require(c.role == UP_ROLE_NONE && c.n_services == 0);
        return;
    }
    require(why == NULL && size <= UP_TOKEN_MAX_LEN);
    require(c.role == UP_ROLE_AGENT || c.role == UP_ROLE_CLIENT);
    require(c.n_services >= 1 && c.n_services <= UP_TOKEN_MAX_SERVICES);
    for (size_t i = 0; i < c.n_services; i++) {
        require(up_token_valid_service_name(c.services[i], strlen(c.services[i])));
    }
    require(strlen(c.sub) <= UP_TOKEN_MAX_NAME);
    require(c.exp > 0 && c.exp >= FUZZ_NOW - FUZZ_LEEWAY);
    require(c.nbf >= 0 && c.nbf <= FUZZ_NOW + FUZZ_LEEWAY);
    require(c.iat >= 0 && c.iat <= FUZZ_NOW + FUZZ_LEEWAY);
    /* Whatever verify accepts, sign must reproduce (unknown claims are dropped). */
    round_trip(&c, FUZZ_NOW, false);
}

static void check_sign(const uint8_t *data, size_t size)
{
    static const char name_chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    uint8_t flags = data[0];
    struct cursor cur = {.p = data + 2, .n = size - 2, .off = 0};
    struct up_token_claims c;
    memset(&c, 0, sizeof c);

    c.role = (flags & 1) ? UP_ROLE_AGENT : UP_ROLE_CLIENT;
    c.n_services = 1 + data[1] % UP_TOKEN_MAX_SERVICES;
    for (size_t i = 0; i < c.n_services; i++) {
        uint8_t b = next_byte(&cur);
        if (b == 0xff) {
            c.services[i][0] = '*';
            continue;
        }
        size_t len = 1 + b % UP_TOKEN_MAX_NAME;
        for (size_t j = 0; j < len; j++) {
            c.services[i][j] = name_chars[next_byte(&cur) % (sizeof name_chars - 1)];
        }
    }
    c.exp = (flags & 2) ? INT64_MAX - next_u32(&cur) : FUZZ_NOW + next_u32(&cur);
    if (flags & 4) {
        c.nbf = FUZZ_NOW - (int64_t)(next_u32(&cur) % 100000);
    }
    if (flags & 8) {
        c.iat = FUZZ_NOW - (int64_t)(next_u32(&cur) % 100000);
    }
    bool raw_sub = (flags & 0x20) != 0;
    if (flags & 0x10) {
        size_t len = next_byte(&cur) % (UP_TOKEN_MAX_NAME + 1);
        for (size_t j = 0; j < len; j++) {
            uint8_t b = next_byte(&cur);
            /* Printable ASCII, quotes and backslashes included, or raw bytes that sign may
             * refuse (controls, broken UTF-8). */
            c.sub[j] = raw_sub ? (char)b : (char)(0x20 + b % 0x5f);
        }
    }
    round_trip(&c, FUZZ_NOW, raw_sub);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_verify(data, size);
    if (size >= 2) {
        check_sign(data, size);
    }
    return 0;
}
