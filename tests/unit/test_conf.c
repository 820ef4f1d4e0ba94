/* Unit tests for the parameter table and main.cf reader (src/conf/conf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "util/strutil.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    conf_defaults();
    return 0;
}

/* Write text to a fresh file in the temp dir and return its path. */
static const char *write_conf(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* 1 when some error message equals want exactly. */
static int has_error(const struct conf_errors *errs, const char *want)
{
    for (int i = 0; i < errs->count; i++)
        if (strcmp(errs->msgs[i], want) == 0)
            return 1;
    return 0;
}

static void print_errors(const struct conf_errors *errs)
{
    for (int i = 0; i < errs->count; i++)
        print_message("error: %s\n", errs->msgs[i]);
}

static void test_defaults(void **state)
{
    (void)state;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    assert_string_equal(conf_str(P_MYHOSTNAME), host);
    assert_string_equal(conf_str(P_QUEUE_DIRECTORY), "/var/spool/keypost");
    assert_string_equal(conf_str(P_MYNETWORKS), "127.0.0.0/8, [::1]/128");
    assert_int_equal(conf_long(P_MESSAGE_SIZE_LIMIT), 10240000);
    assert_int_equal(conf_long(P_SMTPD_RECIPIENT_LIMIT), 1000);
    assert_int_equal(conf_long(P_LINE_LENGTH_LIMIT), 2048);
    assert_int_equal(conf_long(P_SMTPD_HARD_ERROR_LIMIT), 20);
    assert_int_equal(conf_long(P_SMTPD_TIMEOUT), 300);
    assert_int_equal(conf_long(P_MAXIMAL_BACKOFF_TIME), 4000);
    assert_int_equal(conf_long(P_MAXIMAL_QUEUE_LIFETIME), 5 * 86400);
    assert_false(conf_bool(P_SMTPD_TLS_ASK_CCERT));
    assert_false(conf_bool(P_TLS_TRUST_SERVER_CCERTS));
    assert_string_equal(conf_str(P_SMTPD_TLS_SECURITY_LEVEL), "none");
    assert_string_equal(conf_str(P_SMTPD_FORBID_BARE_NEWLINE), "normalize");
    assert_string_equal(conf_str(P_SMTPD_RELAY_RESTRICTIONS),
                        "permit_mynetworks, reject_unauth_destination");
    assert_string_equal(conf_origin(P_QUEUE_DIRECTORY), "default");
    assert_string_equal(conf_name(P_QUEUE_DIRECTORY), "queue_directory");
    /* Defaults that refer to other parameters are expanded. */
    char want[600];
    snprintf(want, sizeof want, "%s, localhost", host);
    assert_string_equal(conf_str(P_MYDESTINATION), want);
    snprintf(want, sizeof want, "%s ESMTP keypost", host);
    assert_string_equal(conf_str(P_SMTPD_BANNER), want);
    assert_string_equal(conf_str(P_SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS),
                        conf_str(P_MYNETWORKS));
}

/* Postfix's address qualification parameters and their defaults. */
static void test_origin_and_domain(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    assert_true(conf_bool(P_APPEND_AT_MYORIGIN));
    assert_false(conf_bool(P_APPEND_DOT_MYDOMAIN));
    assert_int_equal(conf_set("myhostname", "mx.example.org", &errs), 0);
    assert_string_equal(conf_str(P_MYORIGIN), "mx.example.org");
    assert_string_equal(conf_str(P_MYDOMAIN), "example.org");
    assert_string_equal(conf_origin(P_MYDOMAIN), "default");
    /* Derived again from a new myhostname; nothing left: "localdomain". */
    assert_int_equal(conf_set("myhostname", "a.b.example.net", &errs), 0);
    assert_string_equal(conf_str(P_MYDOMAIN), "b.example.net");
    assert_int_equal(conf_set("myhostname", "localhost", &errs), 0);
    assert_string_equal(conf_str(P_MYDOMAIN), "localdomain");
    assert_int_equal(conf_set("myhostname", "trailing.", &errs), 0);
    assert_string_equal(conf_str(P_MYDOMAIN), "localdomain");
    /* Postfix's own default for myhostname refers to $mydomain: no loop. */
    assert_int_equal(conf_set("myhostname", "mx.$mydomain", &errs), 0);
    assert_string_equal(conf_str(P_MYHOSTNAME), "mx.localdomain");
    assert_string_equal(conf_str(P_MYDOMAIN), "localdomain");
    /* Set, it is no longer derived; myorigin = $mydomain as Postfix advises. */
    assert_int_equal(conf_set("mydomain", "example.com", &errs), 0);
    assert_int_equal(conf_set("myorigin", "$mydomain", &errs), 0);
    assert_int_equal(conf_set("myhostname", "mx.example.org", &errs), 0);
    assert_string_equal(conf_str(P_MYDOMAIN), "example.com");
    assert_string_equal(conf_str(P_MYORIGIN), "example.com");
    assert_int_equal(conf_set("append_dot_mydomain", "yes", &errs), 0);
    assert_true(conf_bool(P_APPEND_DOT_MYDOMAIN));
    assert_int_equal(errs.count, 0);
    conf_defaults();
    assert_string_equal(conf_origin(P_MYDOMAIN), "default");
}

static void test_defaults_reset(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    assert_int_equal(conf_set("message_size_limit", "5", &errs), 0);
    assert_int_equal(conf_long(P_MESSAGE_SIZE_LIMIT), 5);
    assert_string_equal(conf_origin(P_MESSAGE_SIZE_LIMIT), "command line");
    conf_defaults();
    assert_int_equal(conf_long(P_MESSAGE_SIZE_LIMIT), 10240000);
    assert_string_equal(conf_origin(P_MESSAGE_SIZE_LIMIT), "default");
    assert_int_equal(errs.count, 0);
}

static void test_expansion(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    assert_int_equal(conf_set("myhostname", "mx.example.org", &errs), 0);
    assert_string_equal(conf_str(P_MYDESTINATION), "mx.example.org, localhost");
    assert_string_equal(conf_str(P_SMTPD_BANNER), "mx.example.org ESMTP keypost");

    assert_int_equal(conf_set("smtpd_banner", "${myhostname}x $mail_owner.$myhostname", &errs), 0);
    assert_string_equal(conf_str(P_SMTPD_BANNER), "mx.example.orgx keypost.mx.example.org");

    /* Nested: a value that refers to one that refers to another. */
    assert_int_equal(conf_set("relayhost", "$mydestination", &errs), 0);
    assert_string_equal(conf_str(P_RELAYHOST), "mx.example.org, localhost");

    /* Expansion uses the current value: changing myhostname again follows. */
    assert_int_equal(conf_set("myhostname", "other.test", &errs), 0);
    assert_string_equal(conf_str(P_RELAYHOST), "other.test, localhost");

    /* The key file follows the certificate file by default. */
    assert_int_equal(conf_set("smtpd_tls_cert_file", "/etc/keypost/cert.pem", &errs), 0);
    assert_string_equal(conf_str(P_SMTPD_TLS_KEY_FILE), "/etc/keypost/cert.pem");
    assert_int_equal(errs.count, 0);
}

static void test_expansion_errors(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    assert_int_equal(conf_set("relayhost", "$no_such_parameter", &errs), -1);
    assert_true(errs.count >= 1);
    assert_true(has_error(&errs, "command line: unknown parameter in expansion: $no_such_parameter"));
    conf_errors_free(&errs);
    assert_int_equal(errs.count, 0);
    assert_null(errs.msgs);

    conf_defaults();
    /* A loop is detected instead of recursing forever. */
    conf_set("relayhost", "$smtp_tls_cert_file", &errs);
    conf_errors_free(&errs);
    assert_int_equal(conf_set("smtp_tls_cert_file", "$relayhost", &errs), -1);
    assert_true(errs.count >= 1);
    int loop = 0;
    for (int i = 0; i < errs.count; i++)
        loop |= strstr(errs.msgs[i], "parameter expansion loop") != NULL;
    assert_true(loop);
    conf_errors_free(&errs);
}

static void test_conf_set_unknown(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    assert_int_equal(conf_set("no_such_thing", "1", &errs), -1);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.msgs[0], "unknown parameter \"no_such_thing\"");
    conf_errors_free(&errs);
}

static void test_time_units(void **state)
{
    (void)state;
    static const struct { const char *text; long secs; } cases[] = {
        {"45", 45}, {"45s", 45}, {"5m", 300}, {"2h", 7200}, {"1d", 86400}, {"0", 0},
        {"3w", 3 * 604800},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct conf_errors errs = {0};
        /* smtpd_session_deadline takes 0 (no limit). */
        assert_int_equal(conf_set("smtpd_session_deadline", cases[i].text, &errs), 0);
        assert_int_equal(conf_long(P_SMTPD_SESSION_DEADLINE), cases[i].secs);
        assert_int_equal(errs.count, 0);
    }
    static const char *const bad[] = {"5x", "m", "", "-", "5mm", "1.5h", "99999999999999999999d"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        conf_defaults();
        struct conf_errors errs = {0};
        assert_int_equal(conf_set("queue_run_delay", bad[i], &errs), -1);
        char want[256];
        snprintf(want, sizeof want,
                 "command line: bad value for queue_run_delay: \"%s\" (expected a time such as 300s or 5m)",
                 bad[i]);
        if (!has_error(&errs, want))
            print_errors(&errs);
        assert_true(has_error(&errs, want));
        conf_errors_free(&errs);
    }
}

static void test_load_file(void **state)
{
    (void)state;
    const char *path = write_conf("main.cf",
                                  "# keypost test configuration\n"
                                  "\n"
                                  "myhostname = mx.example.org\n"
                                  "   # an indented comment\n"
                                  "mydestination = example.org,\n"
                                  "    $myhostname,\n"
                                  "\tlocalhost\n"
                                  "message_size_limit=2048\n"
                                  "smtpd_timeout = 2m   \n"
                                  "smtpd_tls_ask_ccert = yes\n"
                                  "smtpd_banner = ${myhostname} ESMTP\n"
                                  "smtpd_forbid_bare_newline = reject\r\n");
    struct conf_errors errs = {0};
    int n = conf_load(path, &errs);
    print_errors(&errs);
    assert_int_equal(n, 0);
    assert_int_equal(errs.count, 0);
    assert_string_equal(conf_str(P_MYHOSTNAME), "mx.example.org");
    /* Continuation lines join with a single space. */
    assert_string_equal(conf_str(P_MYDESTINATION), "example.org, mx.example.org, localhost");
    assert_int_equal(conf_long(P_MESSAGE_SIZE_LIMIT), 2048);
    assert_int_equal(conf_long(P_SMTPD_TIMEOUT), 120);
    assert_true(conf_bool(P_SMTPD_TLS_ASK_CCERT));
    assert_string_equal(conf_str(P_SMTPD_BANNER), "mx.example.org ESMTP");
    assert_string_equal(conf_str(P_SMTPD_FORBID_BARE_NEWLINE), "reject");
    /* Origins name the file and the line where the parameter starts. */
    char want[300];
    snprintf(want, sizeof want, "%s:3", path);
    assert_string_equal(conf_origin(P_MYHOSTNAME), want);
    snprintf(want, sizeof want, "%s:5", path);
    assert_string_equal(conf_origin(P_MYDESTINATION), want);
    snprintf(want, sizeof want, "%s:8", path);
    assert_string_equal(conf_origin(P_MESSAGE_SIZE_LIMIT), want);
    /* Untouched parameters keep their defaults. */
    assert_string_equal(conf_origin(P_QUEUE_DIRECTORY), "default");
    assert_int_equal(conf_long(P_SMTPD_RECIPIENT_LIMIT), 1000);
}

/* A parameter set twice: a different value is an error naming both
 * lines, the same value a warning. */
static void test_duplicates(void **state)
{
    (void)state;
    const char *path = write_conf("twice.cf", "message_size_limit = 100\n"      /* 1 */
                                              "smtpd_timeout = 60s\n"           /* 2 */
                                              "smtpd_timeout = 60s\n"           /* 3 */
                                              "message_size_limit =\n"          /* 4 */
                                              "  200\n");                       /* 5 */
    struct conf_errors errs = {0};
    assert_int_equal(conf_load(path, &errs), 1);
    char want[600];
    snprintf(want, sizeof want, "%s:4: message_size_limit is set twice with different values: "
             "\"200\" here, \"100\" at %s:1", path, path);
    assert_string_equal(errs.msgs[0], want);
    conf_errors_free(&errs);
    struct conf_errors *warnings = conf_warnings();
    assert_int_equal(warnings->count, 1);
    snprintf(want, sizeof want, "%s:3: smtpd_timeout is set again with the same value "
             "(first at %s:2)", path, path);
    assert_string_equal(warnings->msgs[0], want);
    assert_int_equal(conf_long(P_SMTPD_TIMEOUT), 60);
    /* The next load is a new file: its first line is no repeat. */
    conf_defaults();
    path = write_conf("once.cf", "message_size_limit = 300\n");
    assert_int_equal(conf_load(path, &errs), 0);
    assert_int_equal(conf_load(path, &errs), 0);
    assert_int_equal(conf_long(P_MESSAGE_SIZE_LIMIT), 300);
    assert_int_equal(conf_warnings()->count, 0);
}

static void test_comment_inside_continuation(void **state)
{
    (void)state;
    const char *path = write_conf("cont.cf", "mynetworks = 10.0.0.0/8,\n"
                                             "# not part of it\n"
                                             "  192.168.0.0/16\n"
                                             "relayhost = [relay.example]:25\n");
    struct conf_errors errs = {0};
    assert_int_equal(conf_load(path, &errs), 0);
    assert_string_equal(conf_str(P_MYNETWORKS), "10.0.0.0/8, 192.168.0.0/16");
    assert_string_equal(conf_str(P_RELAYHOST), "[relay.example]:25");
}

static void test_errors_name_file_and_line(void **state)
{
    (void)state;
    const char *path = write_conf("bad.cf",
                                  "  indented_first = 1\n"           /* 1 */
                                  "myhostname = ok.example\n"        /* 2 */
                                  "no_such_parameter = 1\n"          /* 3 */
                                  "smtpd_tls_ask_ccert = maybe\n"    /* 4 */
                                  "# comment\n"                      /* 5 */
                                  "message_size_limit = lots\n"      /* 6 */
                                  "smtpd_timeout = 5 minutes\n"      /* 7 */
                                  "smtpd_tls_security_level = must\n"/* 8 */
                                  "just a line without equals\n"     /* 9 */
                                  "smtpd_recipient_limit =\n"        /* 10 */
                                  "   -5\n"                          /* 11 */
                                  "relayhost = $undefined_thing\n"); /* 12 */
    struct conf_errors errs = {0};
    int n = conf_load(path, &errs);
    char want[512];
#define EXPECT(...)                                                                  \
    do {                                                                             \
        snprintf(want, sizeof want, __VA_ARGS__);                                    \
        if (!has_error(&errs, want)) {                                               \
            print_message("missing: %s\n", want);                                     \
            print_errors(&errs);                                                     \
        }                                                                            \
        assert_true(has_error(&errs, want));                                         \
    } while (0)
    EXPECT("%s:1: continuation line without a parameter before it", path);
    EXPECT("%s:3: unknown parameter \"no_such_parameter\"", path);
    EXPECT("%s:4: bad value for smtpd_tls_ask_ccert: \"maybe\" (expected yes or no)", path);
    EXPECT("%s:6: bad value for message_size_limit: \"lots\" (expected a number)", path);
    EXPECT("%s:7: bad value for smtpd_timeout: \"5 minutes\" (expected a time such as 300s or 5m)",
           path);
    EXPECT("%s:8: bad value for smtpd_tls_security_level: \"must\" (expected one of "
           "none|may|encrypt)",
           path);
    EXPECT("%s:9: missing '=' after parameter name", path);
    EXPECT("%s:10: bad value for smtpd_recipient_limit: \"-5\" (must be at least 1)", path);
    EXPECT("%s:12: unknown parameter in expansion: $undefined_thing", path);
#undef EXPECT
    /* Every error is reported, and the return value counts them. */
    assert_int_equal(n, errs.count);
    assert_int_equal(errs.count, 9);
    /* The good line in between still took effect. */
    assert_string_equal(conf_str(P_MYHOSTNAME), "ok.example");
    conf_errors_free(&errs);
}

static void test_missing_file(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/does-not-exist.cf", tmpdir);
    struct conf_errors errs = {0};
    assert_int_equal(conf_load(path, &errs), 1);
    char want[300];
    snprintf(want, sizeof want, "%s:0: cannot open configuration: No such file or directory",
             path);
    assert_string_equal(errs.msgs[0], want);
    conf_errors_free(&errs);
}

static void test_bool_and_enum_values(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    static const char *const yes[] = {"yes", "YES", "true", "1"};
    static const char *const no[] = {"no", "No", "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(conf_set("smtpd_tls_req_ccert", yes[i], &errs), 0);
        assert_true(conf_bool(P_SMTPD_TLS_REQ_CCERT));
        assert_int_equal(conf_set("smtpd_tls_req_ccert", no[i], &errs), 0);
        assert_false(conf_bool(P_SMTPD_TLS_REQ_CCERT));
    }
    assert_int_equal(conf_set("smtpd_tls_fingerprint_digest", "sha1", &errs), 0);
    assert_string_equal(conf_str(P_SMTPD_TLS_FINGERPRINT_DIGEST), "sha1");
    assert_int_equal(errs.count, 0);
    /* Enum choices are matched exactly. */
    assert_int_equal(conf_set("smtpd_tls_fingerprint_digest", "sha", &errs), -1);
    assert_true(has_error(&errs, "command line: bad value for smtpd_tls_fingerprint_digest: "
                                 "\"sha\" (expected one of sha256|sha1|md5)"));
    conf_errors_free(&errs);
}

/* Every definition is complete and its default passes its own checks:
 * a file that sets nothing loads without errors. */
static void test_table_is_consistent(void **state)
{
    (void)state;
    for (int i = 0; i < P_COUNT; i++) {
        const struct conf_def *d = conf_def((enum conf_param)i);
        assert_non_null(d->name);
        assert_true(d->desc != NULL && d->desc[0] != '\0');
        assert_true(d->group < G_COUNT);
        assert_true(d->min <= d->max);
        assert_int_equal(conf_lookup(d->name), i); /* names are unique */
        if (d->type == CT_ENUM)
            assert_non_null(d->choices);
    }
    for (int g = 0; g < G_COUNT; g++)
        assert_non_null(conf_group_title((enum conf_group)g));
    const char *path = write_conf("empty.cf", "# nothing\n");
    struct conf_errors errs = {0};
    int n = conf_load(path, &errs);
    print_errors(&errs);
    assert_int_equal(n, 0);
}

static void expect_set(const char *name, const char *value, const char *why)
{
    struct conf_errors errs = {0};
    int r = conf_set(name, value, &errs);
    if (why == NULL) {
        print_errors(&errs);
        assert_int_equal(r, 0);
        return;
    }
    char want[300];
    snprintf(want, sizeof want, "command line: bad value for %s: \"%s\" (%s)", name, value, why);
    if (!has_error(&errs, want))
        print_errors(&errs);
    assert_int_equal(r, -1);
    assert_true(has_error(&errs, want));
    conf_errors_free(&errs);
    conf_defaults();
}

static void test_bounds(void **state)
{
    (void)state;
    expect_set("smtpd_timeout", "0", "must be at least 1s");
    expect_set("smtpd_timeout", "-5s", "must be at least 1s");
    expect_set("smtpd_timeout", "1s", NULL);
    expect_set("smtp_connect_timeout", "2d", "must be at most 86400s");
    expect_set("smtpd_recipient_limit", "0", "must be at least 1");
    expect_set("message_size_limit", "0", "must be at least 1");
    expect_set("line_length_limit", "511", "must be at least 512");
    expect_set("line_length_limit", "512", NULL);
    expect_set("smtpd_worker_processes", "1025", "must be at most 1024");
    expect_set("default_destination_concurrency_limit", "0", "must be at least 1");
    /* Where keypost's README says 0 means none or unlimited, 0 stays. */
    static const char *const zero_ok[] = {
        "smtpd_session_limit", "smtpd_session_deadline", "smtpd_client_connection_count_limit",
        "smtpd_worker_processes", "smtp_line_length_limit", "smtpd_min_data_rate",
        "maximal_queue_lifetime", "bounce_queue_lifetime",
    };
    for (size_t i = 0; i < sizeof zero_ok / sizeof zero_ok[0]; i++)
        expect_set(zero_ok[i], "0", NULL);
    /* Still a malformed number, not a bound. */
    expect_set("smtpd_recipient_limit", "-", "expected a number");
    expect_set("smtpd_recipient_limit", "-x", "expected a number");
}

static void test_enum_index(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    assert_int_equal(conf_enum(P_SMTPD_TLS_SECURITY_LEVEL), 0); /* none */
    assert_int_equal(conf_enum(P_SMTPD_FORBID_BARE_NEWLINE), 0); /* normalize */
    assert_int_equal(conf_set("smtpd_tls_security_level", "encrypt", &errs), 0);
    assert_int_equal(conf_enum(P_SMTPD_TLS_SECURITY_LEVEL), 2);
    assert_int_equal(conf_set("smtp_tls_security_level", "dane", &errs), 0);
    assert_int_equal(conf_enum(P_SMTP_TLS_SECURITY_LEVEL), 6);
    assert_int_equal(conf_set("smtp_tls_security_level", "Dane", &errs), -1);
    assert_int_equal(errs.count, 1);
    conf_errors_free(&errs);
    /* A value in error reads as the default, so later checks see a valid one. */
    assert_string_equal(conf_str(P_SMTP_TLS_SECURITY_LEVEL), "none");
    assert_int_equal(conf_enum(P_SMTP_TLS_SECURITY_LEVEL), 0);
    assert_int_equal(conf_set("smtpd_timeout", "0", &errs), -1);
    assert_int_equal(conf_long(P_SMTPD_TIMEOUT), 300);
    conf_errors_free(&errs);
}

static void test_unknown_suggests_nearest(void **state)
{
    (void)state;
    const char *path = write_conf("typo.cf", "smtpd_tiemout = 60s\n"         /* swapped */
                                             "mynetwork = 10.0.0.0/8\n"      /* one short */
                                             "no_such_parameter = 1\n"       /* no guess */
                                             "relayhost = $myhostnme\n");
    struct conf_errors errs = {0};
    assert_int_equal(conf_load(path, &errs), 4);
    char want[300];
    snprintf(want, sizeof want,
             "%s:1: unknown parameter \"smtpd_tiemout\" (did you mean smtpd_timeout?)", path);
    assert_true(has_error(&errs, want));
    snprintf(want, sizeof want,
             "%s:2: unknown parameter \"mynetwork\" (did you mean mynetworks?)", path);
    assert_true(has_error(&errs, want));
    snprintf(want, sizeof want, "%s:3: unknown parameter \"no_such_parameter\"", path);
    assert_true(has_error(&errs, want));
    snprintf(want, sizeof want,
             "%s:4: unknown parameter in expansion: $myhostnme (did you mean myhostname?)", path);
    assert_true(has_error(&errs, want));
    conf_errors_free(&errs);
    assert_int_equal(conf_set("smtpd_bannr", "x", &errs), -1);
    assert_string_equal(errs.msgs[0], "unknown parameter \"smtpd_bannr\" (did you mean "
                                      "smtpd_banner?)");
    conf_errors_free(&errs);
    assert_null(conf_suggest("queue"));
}

static void test_edit_distance(void **state)
{
    (void)state;
    assert_int_equal(str_edit_distance("", ""), 0);
    assert_int_equal(str_edit_distance("", "abc"), 3);
    assert_int_equal(str_edit_distance("abc", "abc"), 0);
    assert_int_equal(str_edit_distance("ab", "ba"), 1);
    assert_int_equal(str_edit_distance("kitten", "sitting"), 3);
    assert_int_equal(str_edit_distance("smtpd_timeout", "smtpd_timout"), 1);
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_true(str_edit_distance(longname, "a") > 1000);
}

static void test_unreadable_file(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    assert_int_equal(conf_load(tmpdir, &errs), 1);
    char want[300];
    snprintf(want, sizeof want, "%s:0: cannot read configuration: Is a directory", tmpdir);
    assert_string_equal(errs.msgs[0], want);
    conf_errors_free(&errs);
}

static void test_raw_and_in_file(void **state)
{
    (void)state;
    const char *path = write_conf("raw.cf", "myhostname = mx.example.org\n"
                                            "smtpd_banner = $myhostname hello\n");
    struct conf_errors errs = {0};
    assert_int_equal(conf_load(path, &errs), 0);
    assert_string_equal(conf_raw(P_SMTPD_BANNER), "$myhostname hello");
    assert_string_equal(conf_str(P_SMTPD_BANNER), "mx.example.org hello");
    assert_true(conf_in_file(P_SMTPD_BANNER));
    assert_false(conf_in_file(P_SMTPD_TIMEOUT));
    assert_string_equal(conf_raw(P_MYDESTINATION), "$myhostname, localhost");
    conf_defaults();
    assert_false(conf_in_file(P_SMTPD_BANNER));
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s", "/tmp/kp-test-conf-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_defaults_reset, setup),
        cmocka_unit_test_setup(test_origin_and_domain, setup),
        cmocka_unit_test_setup(test_expansion, setup),
        cmocka_unit_test_setup(test_expansion_errors, setup),
        cmocka_unit_test_setup(test_conf_set_unknown, setup),
        cmocka_unit_test_setup(test_time_units, setup),
        cmocka_unit_test_setup(test_load_file, setup),
        cmocka_unit_test_setup(test_duplicates, setup),
        cmocka_unit_test_setup(test_comment_inside_continuation, setup),
        cmocka_unit_test_setup(test_errors_name_file_and_line, setup),
        cmocka_unit_test_setup(test_missing_file, setup),
        cmocka_unit_test_setup(test_bool_and_enum_values, setup),
        cmocka_unit_test_setup(test_table_is_consistent, setup),
        cmocka_unit_test_setup(test_bounds, setup),
        cmocka_unit_test_setup(test_enum_index, setup),
        cmocka_unit_test_setup(test_unknown_suggests_nearest, setup),
        cmocka_unit_test_setup(test_edit_distance, setup),
        cmocka_unit_test_setup(test_unreadable_file, setup),
        cmocka_unit_test_setup(test_raw_and_in_file, setup),
    };
    int r = cmocka_run_group_tests(tests, group_setup, group_teardown);
    conf_defaults();
    return r;
}
