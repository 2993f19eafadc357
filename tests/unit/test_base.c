/* src/base: buffers, number/duration/size parsing, base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/crypto.h"
#include "base/str.h"

static void test_base_buf_reserve_grows_to_limit_and_not_beyond(void **state)
{
    (void)state;
    struct up_buf b;
    up_buf_init(&b);
    assert_int_equal(up_buf_append(&b, "abc", 3, 8), UP_OK);
    assert_int_equal(up_buf_append(&b, "defgh", 5, 8), UP_OK); /* limit exactly */
    assert_int_equal(up_buf_len(&b), 8);
    assert_int_equal(up_buf_append(&b, "i", 1, 8), UP_ELIMIT); /* limit + 1 */
    up_buf_skip(&b, 3);
    assert_int_equal(up_buf_append(&b, "xyz", 3, 8), UP_OK); /* compaction makes room */
    assert_memory_equal(up_buf_rptr(&b), "defghxyz", 8);
    up_buf_skip(&b, 8);
    assert_int_equal(up_buf_len(&b), 0);
    up_buf_release_if_empty(&b);
    assert_null(b.base);
    up_buf_fini(&b);
    up_buf_fini(&b); /* idempotent */
}

static void test_base_parse_duration(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_int_equal(up_parse_duration_ms("500ms", &ms), UP_OK);
    assert_int_equal(ms, 500);
    assert_int_equal(up_parse_duration_ms("20s", &ms), UP_OK);
    assert_int_equal(ms, 20000);
    assert_int_equal(up_parse_duration_ms("20", &ms), UP_OK);
    assert_int_equal(ms, 20000);
    assert_int_equal(up_parse_duration_ms("1h", &ms), UP_OK);
    assert_int_equal(ms, 3600000);
    assert_int_equal(up_parse_duration_ms("30d", &ms), UP_OK);
    assert_int_equal(up_parse_duration_ms("soon", &ms), UP_EINVAL);
    assert_int_equal(up_parse_duration_ms("1x", &ms), UP_EINVAL);
    assert_int_equal(up_parse_duration_ms("-1s", &ms), UP_EINVAL);
    assert_int_equal(up_parse_duration_ms("", &ms), UP_EINVAL);
    assert_int_equal(up_parse_duration_ms("99999999999999999999s", &ms), UP_EINVAL);
}

static void test_base_parse_size_and_u64(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(up_parse_size("256k", &v), UP_OK);
    assert_int_equal(v, 262144);
    assert_int_equal(up_parse_size("16MiB", &v), UP_OK);
    assert_int_equal(v, 16u << 20);
    assert_int_equal(up_parse_size("4096", &v), UP_OK);
    assert_int_equal(v, 4096);
    assert_int_equal(up_parse_size("4q", &v), UP_EINVAL);
    assert_int_equal(up_parse_u64("65535", 65535, &v), UP_OK);
    assert_int_equal(up_parse_u64("65536", 65535, &v), UP_EINVAL);
    assert_int_equal(up_parse_u64("12a", 100, &v), UP_EINVAL);
    assert_int_equal(up_parse_u64("18446744073709551616", UINT64_MAX, &v), UP_EINVAL);
}

static void test_base_b64_vectors(void **state)
{
    (void)state;
    /* RFC 4648 §10 */
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    const char *url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char out[16];
        uint8_t dec[16];
        size_t n = 0;
        up_b64_encode((const uint8_t *)in[i], strlen(in[i]), out, false);
        assert_string_equal(out, std[i]);
        up_b64_encode((const uint8_t *)in[i], strlen(in[i]), out, true);
        assert_string_equal(out, url[i]);
        assert_int_equal(up_b64url_decode(url[i], strlen(url[i]), dec, sizeof dec, &n), UP_OK);
        assert_int_equal(n, strlen(in[i]));
        assert_memory_equal(dec, in[i], n);
    }
}

static void test_base_b64url_decode_is_strict(void **state)
{
    (void)state;
    uint8_t dec[8];
    size_t n;
    assert_int_equal(up_b64url_decode("Zg==", 4, dec, sizeof dec, &n), UP_EPROTO); /* padding */
    assert_int_equal(up_b64url_decode("Zh", 2, dec, sizeof dec, &n), UP_EPROTO);   /* bits */
    assert_int_equal(up_b64url_decode("Z", 1, dec, sizeof dec, &n), UP_EPROTO);    /* length */
    assert_int_equal(up_b64url_decode("Zm+v", 4, dec, sizeof dec, &n), UP_EPROTO); /* '+' */
    assert_int_equal(up_b64url_decode("Zm9vYmFy", 8, dec, 5, &n), UP_ELIMIT);
}

static void test_base_hmac_sha256_rfc4231_case2(void **state)
{
    (void)state;
    /* RFC 4231 test case 2 */
    uint8_t out[32];
    static const uint8_t want[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                     0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                     0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                     0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    const char *d = "what do ya want for nothing?";
    assert_int_equal(up_hmac_sha256("Jefe", 4, d, strlen(d), out), UP_OK);
    assert_memory_equal(out, want, 32);
    assert_true(up_ct_equal(out, want, 32));
    out[31] ^= 1;
    assert_false(up_ct_equal(out, want, 32));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_buf_reserve_grows_to_limit_and_not_beyond),
        cmocka_unit_test(test_base_parse_duration),
        cmocka_unit_test(test_base_parse_size_and_u64),
        cmocka_unit_test(test_base_b64_vectors),
        cmocka_unit_test(test_base_b64url_decode_is_strict),
        cmocka_unit_test(test_base_hmac_sha256_rfc4231_case2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
