/* Unit tests for the pure parts of DANE: the "3 1 1" record of a key
 * (keypost fingerprint --tlsa) against a value computed outside keypost
 * (openssl pkey -pubout -outform DER | sha256sum), record text, TLSA rdata
 * parsing (dns.c; the data comes from the network) and which records are
 * usable for SMTP (RFC 7672 3.1). */
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

static void test_tlsa_parse(void **state)
{
    (void)state;
    struct tlsa_rr rr;
    const unsigned char ok[] = {3, 1, 1, 0xde, 0xad};
    assert_int_equal(dns_tlsa_parse(ok, sizeof ok, &rr), 0);
    assert_int_equal(rr.usage, 3);
    assert_int_equal(rr.selector, 1);
    assert_int_equal(rr.mtype, 1);
    assert_int_equal(rr.len, 2);
    assert_memory_equal(rr.data, ok + 3, 2);
    dns_tlsa_free(&rr, 1);
    assert_null(rr.data);
    /* no association data, or not even the three octets: not a record */
    assert_int_equal(dns_tlsa_parse(ok, 3, &rr), -1);
    assert_null(rr.data);
    assert_int_equal(dns_tlsa_parse(ok, 0, &rr), -1);
}

static int usable(unsigned u, unsigned s, unsigned m, size_t len)
{
    unsigned char data[100] = {0};
    struct tlsa_rr rr = {(unsigned char)u, (unsigned char)s, (unsigned char)m, data, len};
    return dane_usable(&rr);
}

static void test_usable(void **state)
{
    (void)state;
    assert_true(usable(3, 1, 1, 32));
    assert_true(usable(2, 0, 2, 64));
    assert_true(usable(3, 0, 0, 90));   /* a whole certificate */
    assert_false(usable(0, 1, 1, 32));  /* PKIX-TA: unusable for SMTP */
    assert_false(usable(1, 1, 1, 32));  /* PKIX-EE: unusable for SMTP */
    assert_false(usable(4, 1, 1, 32));
    assert_false(usable(3, 2, 1, 32));  /* unknown selector */
    assert_false(usable(3, 1, 3, 32));  /* unknown matching type */
    assert_false(usable(3, 1, 1, 31));  /* a SHA2-256 digest is 32 bytes */
    assert_false(usable(3, 1, 2, 32));  /* a SHA2-512 digest is 64 */
    assert_false(usable(3, 1, 0, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tlsa_311_of_key),
        cmocka_unit_test(test_tlsa_311_of_public_half),
        cmocka_unit_test(test_tlsa_311_buffer_too_small),
        cmocka_unit_test(test_rr_text),
        cmocka_unit_test(test_tlsa_parse),
        cmocka_unit_test(test_usable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
