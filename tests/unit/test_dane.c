/* Unit tests for tls/dane.c's pure parts: the "3 1 1" record of a key
 * (keypost fingerprint --tlsa) against a value computed outside keypost
 * (openssl pkey -pubout -outform DER | sha256sum), and record text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "tls/dane.h"

static const char KEY_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgIW65aGzWQvS68a0S\n"
    "aygQNOgEXUGpIoBFYBbhXS3GYVqhRANCAATV1M0Mga1SSyvhFy546jvxaPWifSWz\n"
    "sTdDddvLhlnCH/3kWZAIge+iawLPFXmva9kYcwWBHv2n5o+sYkkkFE7N\n"
    "-----END PRIVATE KEY-----\n";
static const char KEY_311[] =
    "3 1 1 78ba235be3950441d0c0a8e4101b14b852729e1d91b833907b91d804bbc57027";

static EVP_PKEY *load_key(void)
{
    BIO *b = BIO_new_mem_buf(KEY_PEM, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    return k;
}

static void test_tlsa_311_of_key(void **state)
{
    (void)state;
    EVP_PKEY *k = load_key();
    char out[200];
    assert_int_equal(dane_tlsa_311(k, out, sizeof out), 0);
    assert_string_equal(out, KEY_311);
    EVP_PKEY_free(k);
}

static void test_tlsa_311_of_public_half(void **state)
{
    /* The public key alone (what a certificate carries) gives the same. */
    (void)state;
    EVP_PKEY *k = load_key();
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);
    assert_true(n > 0);
    const unsigned char *p = der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, n);
    assert_non_null(pub);
    char out[200];
    assert_int_equal(dane_tlsa_311(pub, out, sizeof out), 0);
    assert_string_equal(out, KEY_311);
    OPENSSL_free(der);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(k);
}

static void test_tlsa_311_buffer_too_small(void **state)
{
    (void)state;
    EVP_PKEY *k = load_key();
    char out[40];
    assert_int_equal(dane_tlsa_311(k, out, sizeof out), -1);
    EVP_PKEY_free(k);
}

static void test_rr_text(void **state)
{
    (void)state;
    const unsigned char d[] = {0x00, 0xab, 0xff};
    char out[64];
    dane_rr_text(2, 0, 1, d, sizeof d, out, sizeof out);
    assert_string_equal(out, "2 0 1 00abff");
    /* cut to fit, never past the buffer */
    char small[10];
    dane_rr_text(3, 1, 1, d, sizeof d, small, sizeof small);
    assert_string_equal(small, "3 1 1 00");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tlsa_311_of_key),
        cmocka_unit_test(test_tlsa_311_of_public_half),
        cmocka_unit_test(test_tlsa_311_buffer_too_small),
        cmocka_unit_test(test_rr_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
