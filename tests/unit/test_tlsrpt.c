/* Unit tests for TLSRPT (src/tls/tlsrpt.c's record lines, tlsrpt_report.c):
 * hostile strings in results must neither split a record line nor break
 * the report's JSON; the aggregate counts; the _smtp._tls TXT record and
 * rua URIs of RFC 8460 3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tls/tlsrpt.h"
#include "tls/tlsrpt_report.h"
#include "util/buf.h"
#include "util/strutil.h"

/* ---- a strict JSON checker (RFC 8259), so the tests need no library ---- */

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    return p;
}

static const char *value(const char *p, int depth);

static const char *string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            return NULL; /* raw control characters are not allowed */
        if (c == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
                        return NULL;
                p += 5;
                continue;
            }
            if (!*p || !strchr("\"\\/bfnrt", *p))
                return NULL;
            p++;
            continue;
        }
        if (c >= 0x80) { /* valid UTF-8, no overlong two-byte forms */
            int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
            if (n == 0 || c > 0xf4)
                return NULL;
            for (int i = 1; i < n; i++)
                if (((unsigned char)p[i] & 0xc0) != 0x80)
                    return NULL;
            p += n;
            continue;
        }
        p++;
    }
    return p + 1;
}

static const char *container(const char *p, int depth, char close, int object)
{
    p = ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (object) {
            p = string(ws(p));
            if (p == NULL || *(p = ws(p)) != ':')
                return NULL;
            p++;
        }
        p = value(p, depth + 1);
        if (p == NULL)
            return NULL;
        p = ws(p);
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

static const char *value(const char *p, int depth)
{
    p = ws(p);
    if (depth > 20)
        return NULL;
    if (*p == '{')
        return container(p, depth, '}', 1);
    if (*p == '[')
        return container(p, depth, ']', 0);
    if (*p == '"')
        return string(p);
    if (*p == '-' || (*p >= '0' && *p <= '9')) {
        p += *p == '-';
        while (*p >= '0' && *p <= '9')
            p++;
        return p;
    }
    return NULL;
}

static int valid_json(const char *text)
{
    const char *end = value(text, 0);
    return end && *ws(end) == '\0';
}

/* ---- helpers ------------------------------------------------------------- */

static void result(struct tlsrpt_result *r, const char *domain, const char *ptype,
                   const char *pstrings, const char *res, const char *mx, const char *reason)
{
    memset(r, 0, sizeof *r);
    r->when = 1764460800; /* 2025-11-30T00:00:00Z */
    str_copy(r->domain, domain, sizeof r->domain);
    str_copy(r->ptype, ptype, sizeof r->ptype);
    str_copy(r->pstrings, pstrings, sizeof r->pstrings);
    str_copy(r->result, res, sizeof r->result);
    str_copy(r->mxhost, mx, sizeof r->mxhost);
    str_copy(r->recvip, "192.0.2.25", sizeof r->recvip);
    str_copy(r->sendip, "192.0.2.1", sizeof r->sendip);
    str_copy(r->reason, reason, sizeof r->reason);
}

static const char hostile[] = "mx\"1\\\t\n\r\x01\x1f\x7f\xff\xc0\xaf\xed\xa0\x80'}]\",\"x\":\"";

/* ---- the tests ---------------------------------------------------------- */

static void test_json_checker(void **state)
{
    (void)state;
    /* the checker itself refuses what a JSON parser would */
    assert_true(valid_json("{\"a\":[1,\"x\\u0001\"],\"b\":{}}"));
    assert_false(valid_json("{\"a\":\"x\ny\"}"));
    assert_false(valid_json("{\"a\":\"x\\qy\"}"));
    assert_false(valid_json("{\"a\":\"\xff\"}"));
    assert_false(valid_json("{\"a\":\"x\"\"}"));
    assert_false(valid_json("{\"a\":1,}"));
    assert_false(valid_json("{\"a\":1} x"));
}

static void test_json_string_escapes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(tlsrpt_json_string(&b, "a\"b\\c\nd\x01\x7f"), 0);
    assert_string_equal(buf_str(&b), "\"a\\\"b\\\\c\\u000ad\\u0001\\u007f\"");
    buf_reset(&b);
    /* valid UTF-8 stays, invalid bytes (lone continuation, overlong,
     * surrogate, truncated) become U+FFFD */
    assert_int_equal(tlsrpt_json_string(&b, "\xc3\xa9|\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82"), 0);
    assert_string_equal(buf_str(&b), "\"\xc3\xa9|\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                                     "\\ufffd\\ufffd\"");
    assert_true(valid_json(buf_str(&b)));
    buf_free(&b);
}

static void test_record_line_roundtrip(void **state)
{
    (void)state;
    struct tlsrpt_result r, back;
    result(&r, "example.test", "sts", "version: STSv1\nmode: enforce\nmx: %41\t*.example.test",
           "certificate-host-mismatch", hostile, "100% \"bad\"\ncert");
    char line[16384];
    int n = tlsrpt_format(&r, line, sizeof line);
    assert_true(n > 0);
    /* one line, ten fields: the hostile MX name added no tab or newline */
    assert_int_equal(strchr(line, '\n') - line, n - 1);
    int tabs = 0;
    for (char *p = line; *p; p++)
        tabs += *p == '\t';
    assert_int_equal(tabs, 9);
    assert_int_equal(tlsrpt_parse(line, &back), 0);
    assert_int_equal(back.when, r.when);
    assert_string_equal(back.mxhost, hostile);
    assert_string_equal(back.pstrings, r.pstrings);
    assert_string_equal(back.reason, r.reason);
    assert_string_equal(back.result, r.result);
    /* malformed lines are refused, never half-read */
    assert_int_equal(tlsrpt_parse("1\t123\texample.test\tsts\n", &back), -1);
    assert_int_equal(tlsrpt_parse("2\t1\td\tsts\t\tsuccess\tm\t\t\t\n", &back), -1);
    assert_int_equal(tlsrpt_parse("1\t1\td\tsts\t\tsuccess\tm%4\t\t\t\n", &back), -1);
    assert_int_equal(tlsrpt_parse("1\t1\td\tsts\t\tsuccess\tm%00\t\t\t\n", &back), -1);
    assert_int_equal(tlsrpt_parse("1\t1\td\tsts\t\tsuccess\tm\t\t\t\textra\n", &back), -1);
    assert_int_equal(tlsrpt_parse("1\t1\td\tsts\t\tsuccess\tm\t\t\t\n", &back), 0);
}

static void test_report_counts_and_json(void **state)
{
    (void)state;
    struct tlsrpt_agg *a = tlsrpt_agg_new();
    struct tlsrpt_result r;
    const char *sts = "version: STSv1\nmode: enforce\nmx: *.b.test\nmax_age: 86400";
    for (int i = 0; i < 3; i++) {
        result(&r, "b.test", "sts", sts, TLSRPT_SUCCESS, "mx.b.test", "");
        assert_int_equal(tlsrpt_agg_add(a, &r), 0);
    }
    result(&r, "b.test", "sts", sts, "certificate-expired", "mx2.b.test", "expired");
    assert_int_equal(tlsrpt_agg_add(a, &r), 0);
    assert_int_equal(tlsrpt_agg_add(a, &r), 0);
    result(&r, "a.test", "tlsa", "3 1 1 00ff", "tlsa-invalid", "mx.a.test", "no match");
    assert_int_equal(tlsrpt_agg_add(a, &r), 0);
    /* a policy string and an MX name built to break out of the JSON */
    result(&r, "a.test", "sts", hostile, "starttls-not-supported", hostile, hostile);
    assert_int_equal(tlsrpt_agg_add(a, &r), 0);

    assert_int_equal(tlsrpt_agg_ndomains(a), 2);
    assert_string_equal(tlsrpt_agg_domain(a, 0), "a.test");
    assert_string_equal(tlsrpt_agg_domain(a, 1), "b.test");

    struct tlsrpt_meta m = {"Org \"X\"", "postmaster@x.test", "id-1", 1764460800,
                            1764460800 + 86399};
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(tlsrpt_json(a, 1, &m, &b), 0);
    const char *j = buf_str(&b);
    assert_true(valid_json(j));
    assert_non_null(strstr(j, "\"organization-name\":\"Org \\\"X\\\"\""));
    assert_non_null(strstr(j, "\"date-range\":{\"start-datetime\":\"2025-11-30T00:00:00Z\","
                              "\"end-datetime\":\"2025-11-30T23:59:59Z\"}"));
    assert_non_null(strstr(j, "\"report-id\":\"id-1\""));
    assert_non_null(strstr(j, "\"contact-info\":\"postmaster@x.test\""));
    assert_non_null(strstr(j, "\"policy-string\":[\"version: STSv1\",\"mode: enforce\","
                              "\"mx: *.b.test\",\"max_age: 86400\"]"));
    assert_non_null(strstr(j, "\"mx-host\":[\"*.b.test\"]"));
    assert_non_null(strstr(j, "\"total-successful-session-count\":3,"
                              "\"total-failure-session-count\":2"));
    assert_non_null(strstr(j, "\"result-type\":\"certificate-expired\""));
    assert_non_null(strstr(j, "\"failed-session-count\":2"));
    assert_null(strstr(j, "a.test"));

    buf_reset(&b);
    assert_int_equal(tlsrpt_json(a, 0, &m, &b), 0);
    j = buf_str(&b);
    assert_true(valid_json(j));
    assert_non_null(strstr(j, "\"policy-type\":\"tlsa\""));
    assert_non_null(strstr(j, "\"mx-host\":[\"mx.a.test\"]"));
    assert_non_null(strstr(j, "\"result-type\":\"starttls-not-supported\""));
    assert_non_null(strstr(j, "\"receiving-mx-hostname\":\"mx\\\"1\\\\\\u0009\\u000a"));
    buf_free(&b);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    tlsrpt_agg_print(a, 1, f);
    fclose(f);
    assert_string_equal(text, "b.test policy=sts successful=3 failed=2 certificate-expired=2\n");
    free(text);
    tlsrpt_agg_free(a);
}

static void test_json_stays_valid_for_any_byte(void **state)
{
    (void)state;
    /* every byte value in every string field */
    struct tlsrpt_agg *a = tlsrpt_agg_new();
    struct tlsrpt_result r;
    char s[300];
    for (int c = 1; c < 256; c++) {
        snprintf(s, sizeof s, "x%cy%c", c, c);
        result(&r, "c.test", "sts", s, c % 2 ? "validation-failure" : TLSRPT_SUCCESS, s, s);
        assert_int_equal(tlsrpt_agg_add(a, &r), 0);
    }
    struct tlsrpt_meta m = {"o\x01\xff", "c\n", "\"", 0, 0};
    struct buf b;
    buf_init(&b, 8 << 20);
    assert_int_equal(tlsrpt_json(a, 0, &m, &b), 0);
    assert_true(valid_json(buf_str(&b)));
    buf_free(&b);
    tlsrpt_agg_free(a);
}

static void test_txt_record(void **state)
{
    (void)state;
    char rua[512];
    assert_int_equal(tlsrpt_txt_rua("v=TLSRPTv1; rua=mailto:r@x.test", rua, sizeof rua), 1);
    assert_string_equal(rua, "mailto:r@x.test");
    assert_int_equal(tlsrpt_txt_rua("v=TLSRPTv1;rua=mailto:r@x.test, https://h.test/p;",
                                    rua, sizeof rua), 1);
    assert_string_equal(rua, "mailto:r@x.test, https://h.test/p");
    /* other records are ignored; two TLSRPTv1 records mean none */
    assert_int_equal(tlsrpt_txt_rua("v=spf1 -all\nv=TLSRPTv1 ; x=1; rua=https://h.test/",
                                    rua, sizeof rua), 1);
    assert_string_equal(rua, "https://h.test/");
    assert_int_equal(tlsrpt_txt_rua("v=TLSRPTv1; rua=mailto:a@x.test\n"
                                    "v=TLSRPTv1; rua=mailto:b@x.test", rua, sizeof rua), 0);
    assert_int_equal(tlsrpt_txt_rua("v=TLSRPTv1; ruf=mailto:a@x.test", rua, sizeof rua), 0);
    assert_int_equal(tlsrpt_txt_rua("v=TLSRPTv1", rua, sizeof rua), 0);
    assert_int_equal(tlsrpt_txt_rua("v=TLSRPTv2; rua=mailto:a@x.test", rua, sizeof rua), 0);
    assert_int_equal(tlsrpt_txt_rua("", rua, sizeof rua), 0);
}

static void test_rua_uris(void **state)
{
    (void)state;
    struct tlsrpt_dest d;
    assert_int_equal(tlsrpt_dest_parse("mailto:tls%2Breports@x.test", &d), 0);
    assert_false(d.https);
    assert_string_equal(d.addr, "tls+reports@x.test");
    assert_int_equal(tlsrpt_dest_parse("https://rep.x.test:8443/v1/tlsrpt", &d), 0);
    assert_true(d.https);
    assert_string_equal(d.host, "rep.x.test");
    assert_int_equal(d.port, 8443);
    assert_string_equal(d.path, "/v1/tlsrpt");
    assert_int_equal(tlsrpt_dest_parse("https://rep.x.test", &d), 0);
    assert_int_equal(d.port, 443);
    assert_string_equal(d.path, "/");
    /* what could break an SMTP command, a header or a request line */
    assert_int_equal(tlsrpt_dest_parse("mailto:a%0D%0ARCPT@x.test", &d), -1);
    assert_int_equal(tlsrpt_dest_parse("mailto:a b@x.test", &d), -1);
    assert_int_equal(tlsrpt_dest_parse("mailto:<a@x.test>", &d), -1);
    assert_int_equal(tlsrpt_dest_parse("mailto:nobody", &d), -1);
    assert_int_equal(tlsrpt_dest_parse("https://user@h.test/", &d), -1);
    assert_int_equal(tlsrpt_dest_parse("https://h.test:0/", &d), -1);
    assert_int_equal(tlsrpt_dest_parse("https://h.test/a b", &d), -1);
    assert_int_equal(tlsrpt_dest_parse("http://h.test/", &d), -1);
}

/* Writers in separate processes (as delivery agents are) append to the
 * same day file at once: every line arrives whole. */
static void test_concurrent_appends(void **state)
{
    (void)state;
    char qdir[] = "/tmp/kp-tlsrpt-XXXXXX";
    assert_non_null(mkdtemp(qdir));
    enum { WRITERS = 4, EACH = 200 };
    struct tlsrpt_result r;
    result(&r, "d.test", "sts", "mode: enforce", "validation-failure", "mx.d.test",
           "a reason long enough to make each line a few hundred bytes .....................");
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            char err[300];
            for (int i = 0; i < EACH; i++) {
                snprintf(r.mxhost, sizeof r.mxhost, "mx%d-%d.d.test", w, i);
                if (tlsrpt_append(qdir, &r, err, sizeof err) < 0)
                    _exit(1);
            }
            _exit(0);
        }
    }
    for (int w = 0; w < WRITERS; w++) {
        int status;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    char path[200], day[16];
    struct tm tm;
    gmtime_r(&r.when, &tm);
    strftime(day, sizeof day, "%Y%m%d", &tm);
    snprintf(path, sizeof path, "%s/tlsrpt/day-%s", qdir, day);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int n = 0, seen[WRITERS][EACH];
    memset(seen, 0, sizeof seen);
    struct tlsrpt_result back;
    while (getline(&line, &cap, f) > 0) {
        int w, i;
        assert_int_equal(tlsrpt_parse(line, &back), 0);
        assert_int_equal(sscanf(back.mxhost, "mx%d-%d.d.test", &w, &i), 2);
        seen[w][i]++;
        n++;
    }
    free(line);
    fclose(f);
    assert_int_equal(n, WRITERS * EACH);
    for (int w = 0; w < WRITERS; w++)
        for (int i = 0; i < EACH; i++)
            assert_int_equal(seen[w][i], 1);
    unlink(path);
    snprintf(path, sizeof path, "%s/tlsrpt", qdir);
    rmdir(path);
    rmdir(qdir);
}

static void test_result_types(void **state)
{
    (void)state;
    assert_string_equal(tlsrpt_x509_result(X509_V_ERR_CERT_HAS_EXPIRED, 0), "certificate-expired");
    assert_string_equal(tlsrpt_x509_result(X509_V_ERR_HOSTNAME_MISMATCH, 0),
                        "certificate-host-mismatch");
    assert_string_equal(tlsrpt_x509_result(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, 0),
                        "certificate-not-trusted");
    assert_string_equal(tlsrpt_x509_result(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 1),
                        "tlsa-invalid");
    assert_string_equal(tlsrpt_x509_result(X509_V_ERR_DANE_NO_MATCH, 1), "tlsa-invalid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_checker),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test(test_record_line_roundtrip),
        cmocka_unit_test(test_report_counts_and_json),
        cmocka_unit_test(test_json_stays_valid_for_any_byte),
        cmocka_unit_test(test_txt_record),
        cmocka_unit_test(test_rua_uris),
        cmocka_unit_test(test_concurrent_appends),
        cmocka_unit_test(test_result_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
