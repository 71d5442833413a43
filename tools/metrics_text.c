/* The Prometheus text format of a node's metrics (see metrics_text.h): one
 * table row per counter and gauge, read from struct fl_shard_metrics by
 * offset, then the histograms with cumulative buckets. */
#include "tools/metrics_text.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metrics_text_kind { METRICS_TEXT_U64, METRICS_TEXT_U32, METRICS_TEXT_BOOL };

struct metrics_text_row {
	const char *name;
	const char *type; /* "counter" or "gauge" */
	const char *help;
	size_t offset; /* In struct fl_shard_metrics. */
	uint8_t kind;  /* enum metrics_text_kind */
};

#define METRICS_TEXT_COUNTER(name, field, help)                                                    \
	{                                                                                          \
		name, "counter", help, offsetof(struct fl_shard_metrics, field), METRICS_TEXT_U64  \
	}
#define METRICS_TEXT_GAUGE(name, field, help, kind)                                                \
	{                                                                                          \
		name, "gauge", help, offsetof(struct fl_shard_metrics, field), kind                \
	}

static const struct metrics_text_row metrics_text_rows[] = {
    METRICS_TEXT_COUNTER("flotilla_proposals_total", proposals,
			 "Entries proposed to groups this node leads."),
    METRICS_TEXT_COUNTER("flotilla_commits_total", commits,
			 "Entries committed in groups this node leads."),
    METRICS_TEXT_COUNTER("flotilla_applied_entries_total", applied,
			 "Entries handed to the state machine."),
    METRICS_TEXT_COUNTER("flotilla_wal_fsyncs_total", fsyncs,
			 "WAL batches submitted, one write and one fdatasync each."),
    METRICS_TEXT_COUNTER("flotilla_wal_written_bytes_total", wal_bytes,
			 "Bytes written to the WAL."),
    METRICS_TEXT_COUNTER("flotilla_peer_received_bytes_total", bytes_in,
			 "Bytes received from peers."),
    METRICS_TEXT_COUNTER("flotilla_peer_sent_bytes_total", bytes_out, "Bytes sent to peers."),
    METRICS_TEXT_COUNTER("flotilla_elections_total", elections, "Elections this node started."),
    METRICS_TEXT_COUNTER("flotilla_leaderships_total", leaderships,
			 "Times this node became a group's leader."),
    METRICS_TEXT_COUNTER("flotilla_snapshots_taken_total", snapshots_taken,
			 "Snapshots saved here and made current."),
    METRICS_TEXT_COUNTER("flotilla_snapshots_sent_total", snapshots_sent,
			 "Snapshots sent to followers."),
    METRICS_TEXT_COUNTER("flotilla_snapshots_received_total", snapshots_received,
			 "Snapshots received from leaders."),
    METRICS_TEXT_COUNTER("flotilla_snapshot_written_bytes_total", snapshot_bytes_written,
			 "Bytes of snapshot files saved here."),
    METRICS_TEXT_COUNTER("flotilla_peers_refused_total", peers_refused,
			 "Peer connections closed for a bad handshake or frame."),
    METRICS_TEXT_COUNTER("flotilla_checks_total", checks,
			 "Consistency checks compared on this node."),
    METRICS_TEXT_COUNTER("flotilla_divergences_total", divergences,
			 "Replicas found diverged from their leader here."),
    METRICS_TEXT_COUNTER("flotilla_writes_refused_no_space_total", writes_refused_no_space,
			 "Proposals and changes refused because the WAL file system is full."),
    METRICS_TEXT_COUNTER("flotilla_appends_dropped_no_space_total", appends_dropped_no_space,
			 "Appends from leaders dropped because the WAL file system is full."),
    METRICS_TEXT_COUNTER("flotilla_repairs_total", repairs,
			 "Replicas whose repair of data their storage lost ended here."),
    METRICS_TEXT_COUNTER("flotilla_groups_refused_total", groups_refused,
			 "Group creations and JOINs refused: the node hosts --groups-max groups."),
    METRICS_TEXT_COUNTER("flotilla_peers_over_budget_total", peers_over_budget,
			 "Peer connections closed: the node's partial peer frames held too many "
			 "bytes."),
    METRICS_TEXT_GAUGE("flotilla_groups", groups, "Groups hosted.", METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_groups_led", leaders, "Groups this node leads.", METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_groups_following", followers,
		       "Groups where this node is a voter and not the leader.", METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_groups_learning", learners, "Groups where this node is a learner.",
		       METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_groups_without_leader", leaderless,
		       "Groups whose leader this node does not know.", METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_groups_repairing", repairing,
		       "Groups whose replica here repairs data its storage lost.",
		       METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_replication_lag_max_entries", lag_max,
		       "In groups this node leads, the most entries a member's log is behind.",
		       METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_replication_lag_entries", lag_sum,
		       "In groups this node leads, entries members' logs are behind, summed.",
		       METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_wal_disk_bytes", wal_disk_bytes,
		       "Bytes of WAL segment files, live and spare.", METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_memory_bytes", memory_bytes,
		       "Bytes allocated from the shard thread's arena (0 without jemalloc).",
		       METRICS_TEXT_U64),
    METRICS_TEXT_GAUGE("flotilla_inbox_requests", inbox_depth, "Requests queued for the shard.",
		       METRICS_TEXT_U32),
    METRICS_TEXT_GAUGE("flotilla_wal_no_space", no_space,
		       "1 while the WAL file system is full and writes are refused.",
		       METRICS_TEXT_BOOL),
};

static int metrics_text_printf(struct metrics_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int metrics_text_printf(struct metrics_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->err != 0)
		return t->err;
	for (;;) {
		size_t room = t->cap - t->len;

		va_start(ap, fmt);
		n = vsnprintf(t->data ? t->data + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return t->err = -EINVAL;
		if ((size_t)n < room)
			break;
		size_t cap = t->cap ? t->cap * 2 : 4096;
		while (cap < t->len + (size_t)n + 1)
			cap *= 2;
		char *p = realloc(t->data, cap);
		if (p == NULL)
			return t->err = -ENOMEM;
		t->data = p;
		t->cap = cap;
	}
	t->len += (size_t)n;
	return 0;
}

static uint64_t metrics_text_value(const struct fl_shard_metrics *m,
				   const struct metrics_text_row *row)
{
	const char *at = (const char *)m + row->offset;

	if (row->kind == METRICS_TEXT_U32)
		return *(const uint32_t *)(const void *)at;
	if (row->kind == METRICS_TEXT_BOOL)
		return *(const bool *)(const void *)at ? 1 : 0;
	return *(const uint64_t *)(const void *)at;
}

int metrics_text_histogram(struct metrics_text *t, const char *name, const char *help,
			   const char *labels, const struct fl_histogram *h, double scale)
{
	uint64_t cumulative = 0;

	metrics_text_printf(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (uint32_t i = 0; i < FL_HISTOGRAM_BUCKETS; i++) {
		cumulative += h->counts[i];
		if (i == FL_HISTOGRAM_BUCKETS - 1)
			metrics_text_printf(t, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name,
					    labels, cumulative);
		else
			metrics_text_printf(t, "%s_bucket{%s,le=\"%.9g\"} %" PRIu64 "\n", name,
					    labels, (double)(UINT64_C(1) << i) * scale, cumulative);
	}
	metrics_text_printf(t, "%s_sum{%s} %.9g\n", name, labels, (double)h->sum * scale);
	return metrics_text_printf(t, "%s_count{%s} %" PRIu64 "\n", name, labels, cumulative);
}

static void metrics_text_sum(struct fl_histogram *total, const struct fl_histogram *h)
{
	for (uint32_t i = 0; i < FL_HISTOGRAM_BUCKETS; i++)
		total->counts[i] += h->counts[i];
	total->sum += h->sum;
}

int metrics_text_node(struct metrics_text *t, uint64_t node_id,
		      const struct fl_shard_metrics *shards, uint32_t shards_count)
{
	static const struct {
		const char *name, *help;
		size_t offset; /* Of the struct fl_histogram in struct fl_shard_metrics. */
		double scale;
	} histograms[] = {
	    {"flotilla_commit_latency_seconds",
	     "Leader: a proposal taken by its shard until its entry committed.",
	     offsetof(struct fl_shard_metrics, commit_us), 1e-6},
	    {"flotilla_wal_fsync_latency_seconds",
	     "A WAL batch's write submitted until its fdatasync completed.",
	     offsetof(struct fl_shard_metrics, fsync_us), 1e-6},
	    {"flotilla_apply_latency_seconds", "One call of the state machine's apply.",
	     offsetof(struct fl_shard_metrics, apply_us), 1e-6},
	    {"flotilla_wal_batch_bytes", "Bytes per WAL batch made durable.",
	     offsetof(struct fl_shard_metrics, batch_bytes), 1},
	    {"flotilla_wal_batch_entries", "Entries per WAL batch made durable.",
	     offsetof(struct fl_shard_metrics, batch_entries), 1},
	};
	char labels[64];

	for (size_t r = 0; r < sizeof(metrics_text_rows) / sizeof(metrics_text_rows[0]); r++) {
		const struct metrics_text_row *row = &metrics_text_rows[r];

		metrics_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", row->name, row->help,
				    row->name, row->type);
		for (uint32_t i = 0; i < shards_count; i++)
			metrics_text_printf(
			    t, "%s{node=\"%" PRIu64 "\",shard=\"%" PRIu32 "\"} %" PRIu64 "\n",
			    row->name, node_id, i, metrics_text_value(&shards[i], row));
	}
	snprintf(labels, sizeof(labels), "node=\"%" PRIu64 "\"", node_id);
	for (size_t k = 0; k < sizeof(histograms) / sizeof(histograms[0]); k++) {
		struct fl_histogram total = {0};

		for (uint32_t i = 0; i < shards_count; i++)
			metrics_text_sum(
			    &total,
			    (const struct fl_histogram *)(const void *)((const char *)&shards[i] +
									histograms[k].offset));
		metrics_text_histogram(t, histograms[k].name, histograms[k].help, labels, &total,
				       histograms[k].scale);
	}
	return t->err;
}

void metrics_text_free(struct metrics_text *t)
{
	free(t->data);
	*t = (struct metrics_text){0};
}
