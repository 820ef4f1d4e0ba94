/* Unit tests for MTA-STS (src/tls/mtasts_parse.c, mtasts_fetch.c's HTTP
 * response reader, mtasts_cache.c): RFC 8461's policy file, TXT record and
 * MX patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "tls/mtasts.h"
#include "tls/mtasts_cache.h"
#include "tls/mtasts_fetch.h"
#include "util/strutil.h"

static struct mtasts_policy pol;
static char err[300];

static int parse(const char *text)
{
    err[0] = '\0';
    return mtasts_parse(text, strlen(text), &pol, err, sizeof err);
}

/* text must be refused, with an error that contains what. */
static void refused(const char *text, const char *what)
{
    if (parse(text) != -1)
        fail_msg("accepted: %s", text);
    if (strstr(err, what) == NULL)
        fail_msg("error \"%s\" does not say \"%s\" for: %s", err, what, text);
}

static void test_good_policies(void **state)
{
    (void)state;
    assert_int_equal(parse("version: STSv1\nmode: enforce\nmx: mail.example.com\n"
                           "mx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\n"),
                     0);
    assert_int_equal(pol.mode, STS_ENFORCE);
    assert_int_equal(pol.max_age, 604800);
    assert_int_equal(pol.nmx, 3);
    assert_string_equal(pol.mx[1], "*.example.net");
    /* CRLF lines, no final line end, white space around values, upper-case
     * mx lowered, unknown fields ignored, fields in any order. */
    assert_int_equal(parse("mode:testing\r\nmx:  MX.Example.COM  \r\nmax_age: 86400\r\n"
                           "x-extension: anything goes\r\nversion: STSv1"), 0);
    assert_int_equal(pol.mode, STS_TESTING);
    assert_string_equal(pol.mx[0], "mx.example.com");
    /* mode none needs no mx. */
    assert_int_equal(parse("version: STSv1\nmode: none\nmax_age: 0\n"), 0);
    assert_int_equal(pol.mode, STS_NONE);
    assert_int_equal(pol.nmx, 0);
    /* Trailing empty lines are a final terminator. */
    assert_int_equal(parse("version: STSv1\nmode: none\nmax_age: 5\n\n\r\n"), 0);
}

static void test_malformed_policies(void **state)
{
    (void)state;
    refused("", "no version");
    refused("mode: enforce\nmx: a.example\nmax_age: 1\n", "no version");
    refused("version: STSv1\nmx: a.example\nmax_age: 1\n", "no mode");
    refused("version: STSv1\nmode: enforce\nmx: a.example\n", "no max_age");
    refused("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx");
    refused("version: STSv1\nmode: testing\nmax_age: 1\n", "no mx");
    refused("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "unsupported version");
    refused("version: stsv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", "unsupported version");
    refused("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", "unknown mode");
    refused("version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n",
            "mode repeated");
    refused("version: STSv1\nversion: STSv1\nmode: none\nmax_age: 1\n", "version repeated");
    refused("version: STSv1\nmode: none\nmax_age: 1\nmax_age: 2\n", "max_age repeated");
    refused("version STSv1\nmode: none\nmax_age: 1\n", "not name: value");
    refused(": STSv1\nmode: none\nmax_age: 1\n", "not name: value");
    refused("ver sion: STSv1\nmode: none\nmax_age: 1\n", "bad field name");
    refused("version: STSv1\n\nmode: none\nmax_age: 1\n", "empty line");
    refused("version: STSv1\rmode: none\nmax_age: 1\n", "bare CR");
    refused("<html><body>It works!</body></html>\n", "not name: value");
    /* A NUL inside the text. */
    const char nul[] = "version: STSv1\nmode: none\0\nmax_age: 1\n";
    assert_int_equal(mtasts_parse(nul, sizeof nul - 1, &pol, err, sizeof err), -1);
    assert_non_null(strstr(err, "NUL"));
}

static void test_bad_mx_patterns(void **state)
{
    (void)state;
    static const char *const bad[] = {"*", "*.", "**.example.com", "mx.*.example.com",
                                      "*example.com", "mx.example.com.", ".example.com",
                                      "mx..example.com", "-mx.example.com", "mx-.example.com",
                                      "mx_1.example.com", "mx example.com", "[192.0.2.1]",
                                      "*.*.example.com"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[300];
        snprintf(text, sizeof text, "version: STSv1\nmode: enforce\nmx: %s\nmax_age: 1\n",
                 bad[i]);
        refused(text, "bad mx pattern");
    }
    char many[4096] = "version: STSv1\nmode: enforce\nmax_age: 1\n";
    for (int i = 0; i <= MTASTS_MAX_MX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "mx: mx%d.example\n", i);
    refused(many, "more than 32 mx patterns");
}

static void test_max_age_bounds(void **state)
{
    (void)state;
    assert_int_equal(parse("version: STSv1\nmode: none\nmax_age: 31557600\n"), 0);
    assert_int_equal(pol.max_age, 31557600);
    assert_int_equal(parse("version: STSv1\nmode: none\nmax_age: 0000000001\n"), 0);
    assert_int_equal(pol.max_age, 1);
    refused("version: STSv1\nmode: none\nmax_age: 31557601\n", "max_age");
    refused("version: STSv1\nmode: none\nmax_age: 99999999999\n", "max_age"); /* 11 digits */
    refused("version: STSv1\nmode: none\nmax_age: 9999999999\n", "max_age");
    refused("version: STSv1\nmode: none\nmax_age: -1\n", "max_age");
    refused("version: STSv1\nmode: none\nmax_age: 1d\n", "max_age");
    refused("version: STSv1\nmode: none\nmax_age: \n", "max_age");
    refused("version: STSv1\nmode: none\nmax_age: 1 2\n", "max_age");
}

static struct mtasts_policy with(const char *a, const char *b)
{
    struct mtasts_policy p;
    memset(&p, 0, sizeof p);
    str_copy(p.mx[p.nmx++], a, sizeof p.mx[0]);
    if (b)
        str_copy(p.mx[p.nmx++], b, sizeof p.mx[0]);
    return p;
}

static void test_mx_matching(void **state)
{
    (void)state;
    struct mtasts_policy p = with("mail.example.com", "*.example.net");
    assert_true(mtasts_mx_match(&p, "mail.example.com"));
    assert_true(mtasts_mx_match(&p, "MAIL.Example.Com"));
    assert_true(mtasts_mx_match(&p, "mail.example.com."));     /* DNS's trailing dot */
    assert_false(mtasts_mx_match(&p, "mail.example.com.evil"));
    assert_false(mtasts_mx_match(&p, "xmail.example.com"));
    assert_false(mtasts_mx_match(&p, "example.com"));
    /* The wildcard covers exactly one label, never the base domain. */
    assert_true(mtasts_mx_match(&p, "mx1.example.net"));
    assert_true(mtasts_mx_match(&p, "MX1.EXAMPLE.NET."));
    assert_false(mtasts_mx_match(&p, "example.net"));
    assert_false(mtasts_mx_match(&p, ".example.net"));
    assert_false(mtasts_mx_match(&p, "a.b.example.net"));
    assert_false(mtasts_mx_match(&p, "mx1example.net"));
    assert_false(mtasts_mx_match(&p, "mx1.example.network"));
    assert_false(mtasts_mx_match(&p, ""));
    assert_false(mtasts_mx_match(&p, "."));
    struct mtasts_policy none = with("a.example", NULL);
    none.nmx = 0;
    assert_false(mtasts_mx_match(&none, "a.example"));
    /* A parsed wildcard pattern matches the same way. */
    assert_int_equal(parse("version: STSv1\nmode: enforce\nmx: *.Mail.Example\nmax_age: 1\n"),
                     0);
    assert_true(mtasts_mx_match(&pol, "eu.mail.example"));
    assert_false(mtasts_mx_match(&pol, "mail.example"));
}

static void test_txt_record(void **state)
{
    (void)state;
    char id[MTASTS_ID_MAX + 1];
    assert_int_equal(mtasts_txt_parse("v=STSv1; id=20160831085700Z;", id, sizeof id), 1);
    assert_string_equal(id, "20160831085700Z");
    assert_int_equal(mtasts_txt_parse("v=STSv1;id=abc", id, sizeof id), 1);
    assert_string_equal(id, "abc");
    assert_int_equal(mtasts_txt_parse("v=STSv1 ;  ext=1 ; id=X1 ; ", id, sizeof id), 1);
    assert_string_equal(id, "X1");
    /* Not STSv1 records: ignored. */
    assert_int_equal(mtasts_txt_parse("v=spf1 -all", id, sizeof id), 0);
    assert_int_equal(mtasts_txt_parse("v=STSv10; id=1", id, sizeof id), 0);
    assert_int_equal(mtasts_txt_parse("", id, sizeof id), 0);
    /* STSv1 but malformed. */
    assert_int_equal(mtasts_txt_parse("v=STSv1", id, sizeof id), -1);
    assert_int_equal(mtasts_txt_parse("v=STSv1;", id, sizeof id), -1);
    assert_int_equal(mtasts_txt_parse("v=STSv1; id=", id, sizeof id), -1);
    assert_int_equal(mtasts_txt_parse("v=STSv1; id=a-b", id, sizeof id), -1);
    assert_int_equal(mtasts_txt_parse("v=STSv1; id=1; id=2", id, sizeof id), -1);
    assert_int_equal(mtasts_txt_parse("v=STSv1; id=123456789012345678901234567890123", id,
                                      sizeof id), -1);
    assert_int_equal(mtasts_txt_parse("v=STSv1; id=12345678901234567890123456789012", id,
                                      sizeof id), 1);
}

static char body[MTASTS_MAX_BODY + 1];
static size_t blen;

static int http(const char *resp, int clean)
{
    err[0] = '\0';
    return mtasts_http_response(resp, strlen(resp), clean, body, sizeof body, &blen, err,
                                sizeof err);
}

static void test_http_response(void **state)
{
    (void)state;
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                          "Content-Length: 5\r\n\r\nhello and more", 0), 0);
    assert_string_equal(body, "hello");
    assert_int_equal(http("HTTP/1.0 200 OK\r\ncontent-type: TEXT/PLAIN\r\n\r\nall of it", 1),
                     0);
    assert_string_equal(body, "all of it");
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: "
                          "chunked\r\n\r\n4\r\nvers\r\na;x=y\r\nion: STSv1\r\n0\r\n\r\n", 0), 0);
    assert_string_equal(body, "version: STSv1");
    /* Failures. */
    assert_int_equal(http("HTTP/1.1 301 Moved\r\nLocation: https://x/\r\nContent-Type: "
                          "text/plain\r\n\r\n", 1), -1);
    assert_non_null(strstr(err, "redirects are not followed"));
    assert_int_equal(http("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n", 1), -1);
    assert_non_null(strstr(err, "HTTP status 404"));
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nx", 1), -1);
    assert_non_null(strstr(err, "not text/plain"));
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Type: text/plainish\r\n\r\nx", 1), -1);
    assert_int_equal(http("HTTP/1.1 200 OK\r\n\r\nx", 1), -1);
    assert_non_null(strstr(err, "missing"));
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\ncut", 0), -1);
    assert_non_null(strstr(err, "close_notify"));
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9"
                          "\r\n\r\nshort", 0), -1);
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                          "70000\r\n\r\nx", 0), -1);
    assert_non_null(strstr(err, "larger than"));
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: "
                          "chunked\r\n\r\n4\r\nvers\r\n", 0), -1);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(http("SSH-2.0-OpenSSH\r\n\r\n", 1), -1);
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n", 1), -1);
}

static void test_http_body_limit(void **state)
{
    (void)state;
    size_t n = MTASTS_MAX_BODY + 1;
    char *resp = malloc(n + 100);
    int h = snprintf(resp, 100, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    memset(resp + h, 'a', n);
    assert_int_equal(mtasts_http_response(resp, (size_t)h + n, 1, body, sizeof body, &blen, err,
                                          sizeof err), -1);
    assert_non_null(strstr(err, "larger than 65536"));
    assert_int_equal(mtasts_http_response(resp, (size_t)h + n - 1, 1, body, sizeof body, &blen,
                                          err, sizeof err), 0);
    assert_int_equal(blen, MTASTS_MAX_BODY);
    free(resp);
}

static void test_cache_round_trip(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-mtasts-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct conf_errors errs = {0};
    conf_defaults();
    assert_int_equal(conf_set("queue_directory", dir, &errs), 0);
    const char *text = "version: STSv1\r\nmode: enforce\r\nmx: *.a.example\r\nmax_age: 100\r\n";
    struct mtasts_policy p;
    assert_int_equal(mtasts_cache_load("a.example", &p, err, sizeof err), 0);
    assert_int_equal(mtasts_cache_store("a.example", "id1", 1000, text, strlen(text), err,
                                        sizeof err), 0);
    assert_int_equal(mtasts_cache_load("a.example", &p, err, sizeof err), 1);
    assert_int_equal(p.mode, STS_ENFORCE);
    assert_string_equal(p.id, "id1");
    assert_int_equal(p.fetched, 1000);
    assert_string_equal(p.mx[0], "*.a.example");
    assert_true(mtasts_cache_fresh(&p, 1099));
    assert_false(mtasts_cache_fresh(&p, 1100));
    assert_false(mtasts_cache_fresh(&p, 999)); /* the clock went back: refetch */
    /* A name that is not a plain DNS name never becomes a path. */
    assert_int_equal(mtasts_cache_store("../x", "id", 1, text, 1, err, sizeof err), -1);
    assert_int_equal(mtasts_cache_load("A.example", &p, err, sizeof err), -1);
    /* A damaged file is not used. */
    char path[200];
    snprintf(path, sizeof path, "%s/mta-sts/a.example", dir);
    FILE *f = fopen(path, "w");
    fputs("keypost-mta-sts 1\nid id1\nfetched 1000\n\nversion: STSv1\nmode: enforce\n", f);
    fclose(f);
    assert_int_equal(mtasts_cache_load("a.example", &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "damaged"));
    /* Nor a symbolic link. */
    unlink(path);
    assert_int_equal(symlink("/etc/passwd", path), 0);
    assert_int_equal(mtasts_cache_load("a.example", &p, err, sizeof err), -1);
    unlink(path);
    snprintf(path, sizeof path, "%s/mta-sts", dir);
    rmdir(path);
    rmdir(dir);
    conf_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_policies),
        cmocka_unit_test(test_malformed_policies),
        cmocka_unit_test(test_bad_mx_patterns),
        cmocka_unit_test(test_max_age_bounds),
        cmocka_unit_test(test_mx_matching),
        cmocka_unit_test(test_txt_record),
        cmocka_unit_test(test_http_response),
        cmocka_unit_test(test_http_body_limit),
        cmocka_unit_test(test_cache_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
