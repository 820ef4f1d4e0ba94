/* render: Prometheus text exposition format (version 0.0.4) for keypost's
 * metrics. The low-level writers escape what the format requires (label
 * values: backslash, double quote, newline; HELP text: backslash, newline)
 * and are unit-tested on their own; metrics_render writes every family
 * from the shared area and a census of the queue. */
#ifndef KP_RENDER_H
#define KP_RENDER_H

#include <stdint.h>
#include <time.h>

#include "util/buf.h"

struct metrics_area;
struct queue_census;

/* `# HELP name text` and `# TYPE name type`. */
int prom_family(struct buf *b, const char *name, const char *type, const char *help);
/* name{k="v",...} value. labels: NULL, or pairs of key and value ending in
 * NULL. The value is written with %s from a number formatted by the caller. */
int prom_sample(struct buf *b, const char *name, const char *const *labels, const char *value);
int prom_sample_u64(struct buf *b, const char *name, const char *const *labels, uint64_t v);
/* A whole histogram: name_bucket (cumulative, le="..." added after labels,
 * ending with +Inf), name_sum and name_count. counts: n + 1 per-bucket
 * counts (not cumulative), the last for above the highest bound. */
int prom_histogram(struct buf *b, const char *name, const char *const *labels,
                   const double *bounds, int n, const uint64_t *counts, double sum);
/* Append v as a label value, escaped. */
int prom_escape_label(struct buf *b, const char *v);

/* The whole exposition. q may be NULL (the queue could not be read). */
int metrics_render(struct buf *b, const struct metrics_area *a, const struct queue_census *q,
                   time_t now);

#endif
