/* Unit tests for the metrics area, the Prometheus text renderer and the
 * endpoint's request handling (src/metrics/, src/queue/census.c). */
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

#include "metrics/httpd.h"
#include "metrics/metrics.h"
#include "metrics/render.h"
#include "queue/census.h"
#include "tls/certinfo.h"
#include "util/buf.h"

static void test_label_escaping(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4096);
    const char *labels[] = {"listener", "a\"b\\c\nd", "kind", "plain", NULL};
    assert_int_equal(prom_sample_u64(&b, "m_total", labels, 7), 0);
    assert_string_equal(buf_str(&b), "m_total{listener=\"a\\\"b\\\\c\\nd\",kind=\"plain\"} 7\n");
    buf_free(&b);
}

static void test_no_labels_and_help_escaping(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(prom_family(&b, "m", "gauge", "back\\slash\nnewline \"quotes\" stay"), 0);
    assert_int_equal(prom_sample(&b, "m", NULL, "1.5"), 0);
    assert_string_equal(buf_str(&b), "# HELP m back\\\\slash\\nnewline \"quotes\" stay\n"
                                     "# TYPE m gauge\nm 1.5\n");
    buf_free(&b);
}

static void test_histogram_cumulative(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4096);
    const double bounds[] = {0.5, 1, 10};
    const uint64_t counts[] = {2, 0, 3, 1}; /* per bucket, the last above 10 */
    const char *labels[] = {"x", "y", NULL};
    assert_int_equal(prom_histogram(&b, "h", labels, bounds, 3, counts, 12.25), 0);
    assert_string_equal(buf_str(&b), "h_bucket{x=\"y\",le=\"0.5\"} 2\n"
                                     "h_bucket{x=\"y\",le=\"1\"} 2\n"
                                     "h_bucket{x=\"y\",le=\"10\"} 5\n"
                                     "h_bucket{x=\"y\",le=\"+Inf\"} 6\n"
                                     "h_sum{x=\"y\"} 12.250000\n"
                                     "h_count{x=\"y\"} 6\n");
    buf_reset(&b);
    assert_int_equal(prom_histogram(&b, "h", NULL, bounds, 3, counts, 0), 0);
    assert_non_null(strstr(buf_str(&b), "h_bucket{le=\"+Inf\"} 6\nh_sum 0.000000\nh_count 6\n"));
    buf_free(&b);
}

static void test_bounded_buffer_fails(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 16);
    const char *labels[] = {"k", "a value longer than the buffer", NULL};
    assert_int_equal(prom_sample_u64(&b, "m", labels, 1), -1);
    buf_free(&b);
}

/* Counters, windows and histograms through the public update calls. */
static void test_area_counts(void **state)
{
    (void)state;
    assert_int_equal(metrics_init_anonymous(), 0);
    const struct metrics_area *a = metrics_area();
    metrics_set_listener(0, 42, "127.0.0.1:25", MK_SMTPD);
    metrics_connection(42);
    metrics_connection(42);
    metrics_connection(99); /* not a listener: a session, no connection label */
    metrics_session_end();
    assert_int_equal(a->connections[0], 2);
    assert_int_equal(metrics_sessions_open(a), 2);
    metrics_process_gone(getpid()); /* as the master does for a dead worker */
    assert_int_equal(metrics_sessions_open(a), 0);
    metrics_reject(metrics_stage_of("RCPT"));
    metrics_reject(metrics_stage_of("ehlo"));
    metrics_reject(metrics_stage_of("nonsense"));
    assert_int_equal(a->rejected[MS_RCPT], 1);
    assert_int_equal(a->rejected[MS_HELO], 1);
    assert_int_equal(a->rejected[MS_OTHER], 1);
    metrics_delivery(MD_SENT, 0.2);
    metrics_delivery(MD_SENT, 7200);
    metrics_delivery(MD_DEFERRED, 1);
    metrics_trust(VIA_PUBKEY_PIN, 1, 1);
    metrics_trust(VIA_NONE, 0, 0);
    assert_int_equal(a->trust[VIA_PUBKEY_PIN][MT_TRUSTED], 1);
    assert_int_equal(a->trust[VIA_NONE][MT_NONE], 1);
    time_t now = time(NULL);
    assert_int_equal(metrics_recent(a, MR_SENT, 60, now), 2);
    assert_int_equal(metrics_recent(a, MR_SENT, 3600, now), 2);
    assert_int_equal(metrics_recent(a, MR_REJECTED, 60, now), 3);
    /* An hour later the same slots hold nothing that counts. */
    assert_int_equal(metrics_recent(a, MR_SENT, 60, now + 61), 0);
    assert_int_equal(metrics_recent(a, MR_SENT, 3600, now + 3700), 0);
    uint64_t counts[METRICS_DELIVERY_BUCKETS + 1];
    double sum;
    assert_int_equal(metrics_hist_read(&a->delivery_seconds, METRICS_DELIVERY_BUCKETS, counts,
                                       &sum), 2);
    assert_int_equal(counts[1], 1);  /* 0.2 <= 0.5 */
    assert_int_equal(counts[10], 1); /* 7200 <= 14400 */
    assert_true(sum > 7200.1 && sum < 7200.3);

    struct buf b;
    buf_init(&b, 1 << 20);
    struct queue_census q = {.incoming = 1, .active = 2, .deferred = 3, .hold = 4,
                             .oldest = now - 100};
    assert_int_equal(metrics_render(&b, a, &q, now), 0);
    const char *text = buf_str(&b);
    assert_non_null(strstr(text, "keypost_smtpd_connections_total{listener=\"127.0.0.1:25\","
                                 "kind=\"smtpd\"} 2\n"));
    assert_non_null(strstr(text, "keypost_deliveries_total{status=\"sent\"} 2\n"));
    assert_non_null(strstr(text, "keypost_smtpd_rejects_total{stage=\"RCPT\"} 1\n"));
    assert_non_null(strstr(text, "keypost_tls_trust_decisions_total{via=\"pubkey-pin\","
                                 "status=\"trusted\"} 1\n"));
    assert_non_null(strstr(text, "keypost_queue_messages{state=\"deferred\"} 3\n"));
    assert_non_null(strstr(text, "keypost_queue_oldest_message_age_seconds 100\n"));
    assert_non_null(strstr(text, "keypost_delivery_delay_seconds_count 2\n"));
    buf_free(&b);
}

static void test_http_answers(void **state)
{
    (void)state;
    assert_int_equal(metrics_init_anonymous(), 0);
    struct buf b;
    buf_init(&b, 1 << 21);
    const char *get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    metrics_http_answer(get, strlen(get), "/nonexistent", &b);
    assert_true(strncmp(buf_str(&b), "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(buf_str(&b), "text/plain; version=0.0.4"));
    assert_non_null(strstr(buf_str(&b), "keypost_messages_accepted_total 0\n"));
    const struct {
        const char *req, *status;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "},
        {"POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "},
        {"GET /metrics\r\n\r\n", "HTTP/1.1 400 "},
        {"\r\n", "HTTP/1.1 400 "},
        {"no line end at all", "HTTP/1.1 400 "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_reset(&b);
        metrics_http_answer(cases[i].req, strlen(cases[i].req), "/nonexistent", &b);
        assert_true(strncmp(buf_str(&b), cases[i].status, strlen(cases[i].status)) == 0);
    }
    buf_reset(&b);
    const char *head = "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n";
    metrics_http_answer(head, strlen(head), "/nonexistent", &b);
    assert_true(strncmp(buf_str(&b), "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_null(strstr(buf_str(&b), "# HELP"));
    buf_free(&b);
}

static void test_census_and_id_age(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-census-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *subs[] = {"tmp", "active", "hold", "state"};
    char path[512];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
        assert_int_equal(mkdir(path, 0700), 0);
    }
    const char *files[] = {"active/6000000000000001", "active/5F00000000000002",
                           "state/5F00000000000002", "hold/6100000000000003",
                           "tmp/6200000000000004", "active/not-an-id"};
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
    }
    struct queue_census c;
    assert_int_equal(queue_census(dir, &c), 0);
    assert_int_equal(c.active, 1);
    assert_int_equal(c.deferred, 1);
    assert_int_equal(c.hold, 1);
    assert_int_equal(c.incoming, 1);
    assert_int_equal(c.oldest, 0x5F000000);
    for (int i = 5; i >= 0; i--) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
        rmdir(path);
    }
    rmdir(dir);
    assert_true(queue_id_age("not an id") == 0);
    double age = queue_id_age("5F000000000FF000"); /* 2020-07-04 plus 1.048575 s */
    assert_true(age > (double)(time(NULL) - 0x5F000000) - 3);
}

static void test_days_left(void **state)
{
    (void)state;
    assert_int_equal(certinfo_days_left(1000 + 86400 * 3, 1000), 3);
    assert_int_equal(certinfo_days_left(1000 + 86400 * 3 - 1, 1000), 2);
    assert_int_equal(certinfo_days_left(1000 - 1, 1000), -1);
    assert_int_equal(certinfo_days_left(1000 - 86400, 1000), -1);
    struct certinfo ci;
    char err[256];
    assert_int_equal(certinfo_read("/nonexistent.pem", &ci, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_no_labels_and_help_escaping),
        cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_bounded_buffer_fails),
        cmocka_unit_test(test_area_counts),
        cmocka_unit_test(test_http_answers),
        cmocka_unit_test(test_census_and_id_age),
        cmocka_unit_test(test_days_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
