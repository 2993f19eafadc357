#include "proto/utf8.h"

/* A byte-class + transition-table DFA in the manner of Bjoern Hoehrmann's decoder, built from
 * the well-formed byte sequences of RFC 3629 §4 (Unicode 15 table 3-7). The second byte of a
 * sequence is range-checked per lead byte, so overlongs (E0 80..9F, F0 80..8F), surrogates
 * (ED A0..BF) and code points above U+10FFFF (F4 90..BF, F5..FF) fail on the first byte that
 * rules out every completion, not at the end of the sequence. */

enum utf8_class {
    C_ASCII,    /* 00..7F */
    C_CONT_LO,  /* 80..8F: continuation */
    C_CONT_MID, /* 90..9F: continuation */
    C_CONT_HI,  /* A0..BF: continuation */
    C_BAD,      /* C0..C1 (always overlong), F5..FF (always above U+10FFFF) */
    C_LEAD2,    /* C2..DF */
    C_E0,       /* E0: second byte A0..BF, else overlong */
    C_LEAD3,    /* E1..EC, EE..EF */
    C_ED,       /* ED: second byte 80..9F, else a surrogate */
    C_F0,       /* F0: second byte 90..BF, else overlong */
    C_LEAD4,    /* F1..F3 */
    C_F4,       /* F4: second byte 80..8F, else above U+10FFFF */
    C_COUNT
};

enum utf8_state {
    S_ACCEPT = 0, /* on a code point boundary (utf8.h relies on this being 0) */
    S_REJECT,     /* invalid; sticky */
    S_CONT1,      /* one continuation byte 80..BF left */
    S_CONT2,      /* two continuation bytes left */
    S_CONT3,      /* three continuation bytes left */
    S_E0,         /* after E0: A0..BF, then one more */
    S_ED,         /* after ED: 80..9F, then one more */
    S_F0,         /* after F0: 90..BF, then two more */
    S_F4,         /* after F4: 80..8F, then two more */
    S_COUNT
};

#define A C_ASCII
#define L C_CONT_LO
#define M C_CONT_MID
#define H C_CONT_HI
#define X C_BAD
#define T2 C_LEAD2
#define T3 C_LEAD3
#define T4 C_LEAD4

static const uint8_t byte_class[256] = {
    [0x00] = A,    A,  A,  A,  A,    A,  A,  A,  A,  A,  A,  A,  A,  A,    A,  A,
    [0x10] = A,    A,  A,  A,  A,    A,  A,  A,  A,  A,  A,  A,  A,  A,    A,  A,
    [0x20] = A,    A,  A,  A,  A,    A,  A,  A,  A,  A,  A,  A,  A,  A,    A,  A,
    [0x30] = A,    A,  A,  A,  A,    A,  A,  A,  A,  A,  A,  A,  A,  A,    A,  A,
    [0x40] = A,    A,  A,  A,  A,    A,  A,  A,  A,  A,  A,  A,  A,  A,    A,  A,
    [0x50] = A,    A,  A,  A,  A,    A,  A,  A,  A,  A,  A,  A,  A,  A,    A,  A,
    [0x60] = A,    A,  A,  A,  A,    A,  A,  A,  A,  A,  A,  A,  A,  A,    A,  A,
    [0x70] = A,    A,  A,  A,  A,    A,  A,  A,  A,  A,  A,  A,  A,  A,    A,  A,
    [0x80] = L,    L,  L,  L,  L,    L,  L,  L,  L,  L,  L,  L,  L,  L,    L,  L,
    [0x90] = M,    M,  M,  M,  M,    M,  M,  M,  M,  M,  M,  M,  M,  M,    M,  M,
    [0xA0] = H,    H,  H,  H,  H,    H,  H,  H,  H,  H,  H,  H,  H,  H,    H,  H,
    [0xB0] = H,    H,  H,  H,  H,    H,  H,  H,  H,  H,  H,  H,  H,  H,    H,  H,
    [0xC0] = X,    X,  T2, T2, T2,   T2, T2, T2, T2, T2, T2, T2, T2, T2,   T2, T2,
    [0xD0] = T2,   T2, T2, T2, T2,   T2, T2, T2, T2, T2, T2, T2, T2, T2,   T2, T2,
    [0xE0] = C_E0, T3, T3, T3, T3,   T3, T3, T3, T3, T3, T3, T3, T3, C_ED, T3, T3,
    [0xF0] = C_F0, T4, T4, T4, C_F4, X,  X,  X,  X,  X,  X,  X,  X,  X,    X,  X,
};

#undef A
#undef L
#undef M
#undef H
#undef X
#undef T2
#undef T3
#undef T4

/* Every cell is spelled out: a missing one would default to S_ACCEPT. */
static const uint8_t transition[S_COUNT][C_COUNT] = {
    [S_ACCEPT] =
        {
            [C_ASCII] = S_ACCEPT,
            [C_CONT_LO] = S_REJECT,
            [C_CONT_MID] = S_REJECT,
            [C_CONT_HI] = S_REJECT,
            [C_BAD] = S_REJECT,
            [C_LEAD2] = S_CONT1,
            [C_E0] = S_E0,
            [C_LEAD3] = S_CONT2,
            [C_ED] = S_ED,
            [C_F0] = S_F0,
            [C_LEAD4] = S_CONT3,
            [C_F4] = S_F4,
        },
    [S_REJECT] =
        {
            [C_ASCII] = S_REJECT,
            [C_CONT_LO] = S_REJECT,
            [C_CONT_MID] = S_REJECT,
            [C_CONT_HI] = S_REJECT,
            [C_BAD] = S_REJECT,
            [C_LEAD2] = S_REJECT,
            [C_E0] = S_REJECT,
            [C_LEAD3] = S_REJECT,
            [C_ED] = S_REJECT,
            [C_F0] = S_REJECT,
            [C_LEAD4] = S_REJECT,
            [C_F4] = S_REJECT,
        },
    [S_CONT1] =
        {
            [C_ASCII] = S_REJECT,
            [C_CONT_LO] = S_ACCEPT,
            [C_CONT_MID] = S_ACCEPT,
            [C_CONT_HI] = S_ACCEPT,
            [C_BAD] = S_REJECT,
            [C_LEAD2] = S_REJECT,
            [C_E0] = S_REJECT,
            [C_LEAD3] = S_REJECT,
            [C_ED] = S_REJECT,
            [C_F0] = S_REJECT,
            [C_LEAD4] = S_REJECT,
            [C_F4] = S_REJECT,
        },
    [S_CONT2] =
        {
            [C_ASCII] = S_REJECT,
            [C_CONT_LO] = S_CONT1,
            [C_CONT_MID] = S_CONT1,
            [C_CONT_HI] = S_CONT1,
            [C_BAD] = S_REJECT,
            [C_LEAD2] = S_REJECT,
            [C_E0] = S_REJECT,
            [C_LEAD3] = S_REJECT,
            [C_ED] = S_REJECT,
            [C_F0] = S_REJECT,
            [C_LEAD4] = S_REJECT,
            [C_F4] = S_REJECT,
        },
    [S_CONT3] =
        {
            [C_ASCII] = S_REJECT,
            [C_CONT_LO] = S_CONT2,
            [C_CONT_MID] = S_CONT2,
            [C_CONT_HI] = S_CONT2,
            [C_BAD] = S_REJECT,
            [C_LEAD2] = S_REJECT,
            [C_E0] = S_REJECT,
            [C_LEAD3] = S_REJECT,
            [C_ED] = S_REJECT,
            [C_F0] = S_REJECT,
            [C_LEAD4] = S_REJECT,
            [C_F4] = S_REJECT,
        },
    [S_E0] =
        {
            [C_ASCII] = S_REJECT,
            [C_CONT_LO] = S_REJECT,
            [C_CONT_MID] = S_REJECT,
            [C_CONT_HI] = S_CONT1,
            [C_BAD] = S_REJECT,
            [C_LEAD2] = S_REJECT,
            [C_E0] = S_REJECT,
            [C_LEAD3] = S_REJECT,
            [C_ED] = S_REJECT,
            [C_F0] = S_REJECT,
            [C_LEAD4] = S_REJECT,
            [C_F4] = S_REJECT,
        },
    [S_ED] =
        {
            [C_ASCII] = S_REJECT,
            [C_CONT_LO] = S_CONT1,
            [C_CONT_MID] = S_CONT1,
            [C_CONT_HI] = S_REJECT,
            [C_BAD] = S_REJECT,
            [C_LEAD2] = S_REJECT,
            [C_E0] = S_REJECT,
            [C_LEAD3] = S_REJECT,
            [C_ED] = S_REJECT,
            [C_F0] = S_REJECT,
            [C_LEAD4] = S_REJECT,
            [C_F4] = S_REJECT,
        },
    [S_F0] =
        {
            [C_ASCII] = S_REJECT,
            [C_CONT_LO] = S_REJECT,
            [C_CONT_MID] = S_CONT2,
            [C_CONT_HI] = S_CONT2,
            [C_BAD] = S_REJECT,
            [C_LEAD2] = S_REJECT,
            [C_E0] = S_REJECT,
            [C_LEAD3] = S_REJECT,
            [C_ED] = S_REJECT,
            [C_F0] = S_REJECT,
            [C_LEAD4] = S_REJECT,
            [C_F4] = S_REJECT,
        },
    [S_F4] =
        {
            [C_ASCII] = S_REJECT,
            [C_CONT_LO] = S_CONT2,
            [C_CONT_MID] = S_REJECT,
            [C_CONT_HI] = S_REJECT,
            [C_BAD] = S_REJECT,
            [C_LEAD2] = S_REJECT,
            [C_E0] = S_REJECT,
            [C_LEAD3] = S_REJECT,
            [C_ED] = S_REJECT,
            [C_F0] = S_REJECT,
            [C_LEAD4] = S_REJECT,
            [C_F4] = S_REJECT,
        },
};

bool up_utf8_feed(struct up_utf8 *u, const uint8_t *p, size_t n)
{
    uint32_t s = u->state;
    /* A state the DFA cannot produce means the struct was clobbered: never index with it. */
    if (s >= S_COUNT) {
        s = S_REJECT;
    }
    for (size_t i = 0; i < n; i++) {
        /* Text frames are mostly ASCII: skip the two table lookups on a boundary. */
        if (s == S_ACCEPT && p[i] < 0x80) {
            continue;
        }
        s = transition[s][byte_class[p[i]]];
        if (s == S_REJECT) {
            break;
        }
    }
    u->state = s;
    return s != S_REJECT;
}
