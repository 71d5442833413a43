/* The Prometheus text exposition format (version 0.0.4) of a node's
 * metrics: what flotilla-node serves at GET /metrics (tools/node_metrics.c).
 *
 * Names follow Prometheus conventions: the flotilla_ prefix, _total on
 * counters, base units (_seconds, _bytes), a HELP and a TYPE line per
 * metric. Counters and gauges carry the labels node and shard (sum them
 * over shard for the node); histograms are the node's, summed over its
 * shards, with the label node. No series is per group: a node hosts
 * thousands of groups, and a series each would swamp a Prometheus server;
 * the gauges say how many groups are in each condition and the worst lag,
 * and flotilla-admin or fl_group_info() names the groups. */
#ifndef TOOLS_METRICS_TEXT_H
#define TOOLS_METRICS_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "flotilla.h"

/* A growing text buffer. Zero it to start; metrics_text_free() ends it. */
struct metrics_text {
	char *data; /* NUL-terminated once anything is written. */
	size_t len, cap;
	int err; /* -ENOMEM once an append failed: the text is incomplete. */
};

/* Append the exposition of a node's shards (shards_count of them, shard i at
 * shards[i]). Returns 0 or -ENOMEM. */
int metrics_text_node(struct metrics_text *t, uint64_t node_id,
		      const struct fl_shard_metrics *shards, uint32_t shards_count);

/* Append one histogram, name_bucket/_sum/_count with labels (the text
 * between the braces, without them, e.g. node="1"): each bucket bound and
 * the sum multiplied by scale (1e-6 turns microseconds into seconds).
 * Returns 0 or -ENOMEM. */
int metrics_text_histogram(struct metrics_text *t, const char *name, const char *help,
			   const char *labels, const struct fl_histogram *h, double scale);

void metrics_text_free(struct metrics_text *t);

#endif /* TOOLS_METRICS_TEXT_H */
