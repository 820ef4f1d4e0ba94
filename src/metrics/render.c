/* render: the Prometheus text format (see render.h). */
#include "metrics/render.h"

#include <stdio.h>
#include <string.h>

#include "metrics/metrics.h"
#include "queue/census.h"

int prom_escape_label(struct buf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        int r;
        if (*p == '\\')
            r = buf_puts(b, "\\\\");
        else if (*p == '"')
            r = buf_puts(b, "\\\"");
        else if (*p == '\n')
            r = buf_puts(b, "\\n");
        else
            r = buf_append(b, p, 1);
        if (r < 0)
            return -1;
    }
    return 0;
}

static int escape_help(struct buf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        int r = *p == '\\' ? buf_puts(b, "\\\\") : *p == '\n' ? buf_puts(b, "\\n")
                                                             : buf_append(b, p, 1);
        if (r < 0)
            return -1;
    }
    return 0;
}

int prom_family(struct buf *b, const char *name, const char *type, const char *help)
{
    if (buf_printf(b, "# HELP %s ", name) < 0 || escape_help(b, help) < 0)
        return -1;
    return buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static int labels_out(struct buf *b, const char *const *labels, const char *le)
{
    int any = 0;
    if ((labels && labels[0]) || le) {
        if (buf_puts(b, "{") < 0)
            return -1;
        for (int i = 0; labels && labels[i]; i += 2) {
            if (buf_printf(b, "%s%s=\"", any ? "," : "", labels[i]) < 0 ||
                prom_escape_label(b, labels[i + 1]) < 0 || buf_puts(b, "\"") < 0)
                return -1;
            any = 1;
        }
        if (le && buf_printf(b, "%sle=\"%s\"", any ? "," : "", le) < 0)
            return -1;
        if (buf_puts(b, "}") < 0)
            return -1;
    }
    return 0;
}

int prom_sample(struct buf *b, const char *name, const char *const *labels, const char *value)
{
    if (buf_puts(b, name) < 0 || labels_out(b, labels, NULL) < 0)
        return -1;
    return buf_printf(b, " %s\n", value);
}

int prom_sample_u64(struct buf *b, const char *name, const char *const *labels, uint64_t v)
{
    char text[32];
    snprintf(text, sizeof text, "%llu", (unsigned long long)v);
    return prom_sample(b, name, labels, text);
}

int prom_histogram(struct buf *b, const char *name, const char *const *labels,
                   const double *bounds, int n, const uint64_t *counts, double sum)
{
    char series[160], le[32], text[48];
    uint64_t cum = 0;
    snprintf(series, sizeof series, "%s_bucket", name);
    for (int i = 0; i <= n; i++) {
        cum += counts[i];
        if (i < n)
            snprintf(le, sizeof le, "%g", bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        snprintf(text, sizeof text, "%llu", (unsigned long long)cum);
        if (buf_puts(b, series) < 0 || labels_out(b, labels, le) < 0 ||
            buf_printf(b, " %s\n", text) < 0)
            return -1;
    }
    snprintf(series, sizeof series, "%s_sum", name);
    snprintf(text, sizeof text, "%.6f", sum);
    if (prom_sample(b, series, labels, text) < 0)
        return -1;
    snprintf(series, sizeof series, "%s_count", name);
    return prom_sample_u64(b, series, labels, cum);
}

/* ---- keypost's families --------------------------------------------------- */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static int render_sessions(struct buf *b, const struct metrics_area *a)
{
    int r = prom_family(b, "keypost_start_time_seconds", "gauge",
                        "When the running keypost started (counters start at zero then).");
    char text[32];
    snprintf(text, sizeof text, "%lld", (long long)a->started);
    r |= prom_sample(b, "keypost_start_time_seconds", NULL, text);
    r |= prom_family(b, "keypost_smtpd_sessions", "gauge", "SMTP sessions open now.");
    snprintf(text, sizeof text, "%lld", (long long)metrics_sessions_open(a));
    r |= prom_sample(b, "keypost_smtpd_sessions", NULL, text);
    r |= prom_family(b, "keypost_smtpd_connections_total", "counter",
                     "Connections accepted, by listener.");
    for (uint32_t i = 0; i < a->nlisteners && i < METRICS_MAX_LISTENERS; i++) {
        char name[METRICS_LISTENER_LEN + 1];
        memcpy(name, a->listener_name[i], METRICS_LISTENER_LEN);
        name[METRICS_LISTENER_LEN] = '\0';
        const char *labels[] = {"listener", name, "kind",
                                metrics_listener_kind_name(a->listener_kind[i]), NULL};
        r |= prom_sample_u64(b, "keypost_smtpd_connections_total", labels,
                             LOAD(a->connections[i]));
    }
    return r;
}

static int render_tls(struct buf *b, const struct metrics_area *a)
{
    int r = prom_family(b, "keypost_tls_handshakes_total", "counter",
                        "Inbound TLS handshakes, by result.");
    const char *ok[] = {"result", "ok", NULL}, *failed[] = {"result", "failed", NULL};
    r |= prom_sample_u64(b, "keypost_tls_handshakes_total", ok, LOAD(a->tls_handshakes_ok));
    r |= prom_sample_u64(b, "keypost_tls_handshakes_total", failed,
                         LOAD(a->tls_handshakes_failed));
    uint64_t counts[METRICS_DELIVERY_BUCKETS + 1];
    double sum;
    metrics_hist_read(&a->tls_seconds, METRICS_TLS_BUCKETS, counts, &sum);
    r |= prom_family(b, "keypost_tls_handshake_seconds", "histogram",
                     "Time of successful inbound TLS handshakes.");
    r |= prom_histogram(b, "keypost_tls_handshake_seconds", NULL, metrics_tls_bounds,
                        METRICS_TLS_BUCKETS, counts, sum);
    r |= prom_family(b, "keypost_tls_trust_decisions_total", "counter",
                     "Client certificate decisions of the trust engine, by via= and status=.");
    for (int via = 0; via < METRICS_VIA_COUNT; via++)
        for (int st = 0; st < MT_COUNT; st++) {
            const char *labels[] = {"via", trust_via_name((enum trust_via)via), "status",
                                    metrics_trust_status_name((enum metrics_trust_status)st),
                                    NULL};
            r |= prom_sample_u64(b, "keypost_tls_trust_decisions_total", labels,
                                 LOAD(a->trust[via][st]));
        }
    return r;
}

static int render_messages(struct buf *b, const struct metrics_area *a)
{
    int r = prom_family(b, "keypost_messages_accepted_total", "counter",
                        "Messages queued by smtpd (250 after DATA).");
    r |= prom_sample_u64(b, "keypost_messages_accepted_total", NULL, LOAD(a->accepted));
    r |= prom_family(b, "keypost_smtpd_rejects_total", "counter",
                     "Rejections sent by smtpd, by the stage of the dialogue.");
    for (int s = 0; s < MS_COUNT; s++) {
        const char *labels[] = {"stage", metrics_stage_name((enum metrics_stage)s), NULL};
        r |= prom_sample_u64(b, "keypost_smtpd_rejects_total", labels, LOAD(a->rejected[s]));
    }
    r |= prom_family(b, "keypost_deliveries_total", "counter",
                     "Recipient delivery results, by status (as the delivery log line).");
    for (int d = 0; d < MD_COUNT; d++) {
        const char *labels[] = {"status", metrics_delivery_name((enum metrics_delivery)d), NULL};
        r |= prom_sample_u64(b, "keypost_deliveries_total", labels, LOAD(a->delivered[d]));
    }
    uint64_t counts[METRICS_DELIVERY_BUCKETS + 1];
    double sum;
    metrics_hist_read(&a->delivery_seconds, METRICS_DELIVERY_BUCKETS, counts, &sum);
    r |= prom_family(b, "keypost_delivery_delay_seconds", "histogram",
                     "Time from arrival to successful delivery, per recipient.");
    r |= prom_histogram(b, "keypost_delivery_delay_seconds", NULL, metrics_delivery_bounds,
                        METRICS_DELIVERY_BUCKETS, counts, sum);
    return r;
}

static int render_queue(struct buf *b, const struct queue_census *q, time_t now)
{
    int r = prom_family(b, "keypost_queue_messages", "gauge", "Messages in the queue, by state.");
    const struct {
        const char *state;
        long n;
    } states[] = {{"incoming", q->incoming}, {"active", q->active},
                  {"deferred", q->deferred}, {"hold", q->hold}};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        const char *labels[] = {"state", states[i].state, NULL};
        r |= prom_sample_u64(b, "keypost_queue_messages", labels, (uint64_t)states[i].n);
    }
    r |= prom_family(b, "keypost_queue_oldest_message_age_seconds", "gauge",
                     "Age of the oldest message in active/ or hold/ (0: empty queue).");
    long long age = q->oldest && now > q->oldest ? (long long)(now - q->oldest) : 0;
    char text[32];
    snprintf(text, sizeof text, "%lld", age);
    r |= prom_sample(b, "keypost_queue_oldest_message_age_seconds", NULL, text);
    return r;
}

static int render_certs(struct buf *b, const struct metrics_area *a)
{
    int r = prom_family(b, "keypost_tls_certificate_not_after_seconds", "gauge",
                        "When each configured certificate of keypost expires (0: unreadable).");
    for (uint32_t i = 0; i < a->ncerts && i < METRICS_MAX_CERTS; i++) {
        char param[sizeof a->certs[i].param + 1], path[sizeof a->certs[i].path + 1];
        memcpy(param, a->certs[i].param, sizeof a->certs[i].param);
        param[sizeof a->certs[i].param] = '\0';
        memcpy(path, a->certs[i].path, sizeof a->certs[i].path);
        path[sizeof a->certs[i].path] = '\0';
        const char *labels[] = {"parameter", param, "file", path, NULL};
        char text[32];
        snprintf(text, sizeof text, "%lld", (long long)a->certs[i].not_after);
        r |= prom_sample(b, "keypost_tls_certificate_not_after_seconds", labels, text);
    }
    return r;
}

int metrics_render(struct buf *b, const struct metrics_area *a, const struct queue_census *q,
                   time_t now)
{
    int r = render_sessions(b, a) | render_tls(b, a) | render_certs(b, a) |
            render_messages(b, a);
    if (q)
        r |= render_queue(b, q, now);
    r |= prom_family(b, "keypost_queue_readable", "gauge",
                     "1 when the queue census above could be taken, 0 when not.");
    r |= prom_sample(b, "keypost_queue_readable", NULL, q ? "1" : "0");
    return r < 0 ? -1 : 0;
}
