/* Snapshots of the local state: saving (on the shard thread or the snapshot
 * thread), making them current, and compacting the log behind them. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/shard_internal.h"

/* Answer the fl_group_snapshot() calls of list. */
void save_answer(struct shard_req **list, int rv, uint64_t index)
{
	while (*list) {
		struct shard_req *req = *list;

		*list = req->next;
		pending_answer(req->cb, req->arg, rv, rv == 0 ? index : 0, 0);
		free(req);
	}
}

/* The snapshot of meta is current (its manifest durable): compact the log
 * there, then write the WAL's mark (after the manifest: on any crash the
 * manifest names a durable file and is at or past the mark), and the hard
 * state again: a group's last hard-state record pins its segment, and a
 * group that never changes term would otherwise pin the oldest segment
 * until the WAL can rewrite it, which it does only for groups with little
 * live data (a group snapshotted off the loop may never qualify). The
 * record's commit is the snapshot's index: committed, and durable. */
static int save_compact(struct shard *s, struct group *g, const struct snapshot_meta *meta)
{
	int rv = raft_compact(&g->raft, meta->index);

	if (rv == 0)
		rv = persist_append_mark(s, g, meta->index, meta->term);
	if (rv == 0 && g->hard_term != 0) {
		struct wal_hard hard = {g->hard_term, g->hard_vote, meta->index,
					raft_is_repairing(&g->raft)};

		rv = persist_append_hard(s, g, &hard);
	}
	if (rv == 0) {
		g->snapshot_size = meta->size; /* The base of the next one's ratio. */
		stat_add(&s->stats.snapshots_taken, 1);
	}
	return rv;
}

/* Write meta's manifest (the file is durable). The snapshot thread writes
 * manifests too: see snapshot.h. */
int save_manifest_write(struct shard *s, const struct snapshot_meta *meta)
{
	int rv;

	pthread_mutex_lock(&s->manifest_lock);
	rv = snapshot_manifest_write(s->snap_dir, meta);
	pthread_mutex_unlock(&s->manifest_lock);
	return rv;
}

/* The file of meta, saved on the shard thread, is durable: make it current
 * and compact. */
static int save_commit(struct shard *s, struct group *g, struct snapshot_meta *meta)
{
	int rv;

	meta->conf = *raft_conf_at(&g->raft, meta->index);
	rv = save_manifest_write(s, meta);
	if (rv == 0)
		rv = save_compact(s, g, meta);
	return rv;
}

static void save_failed(struct shard *s, struct group *g, uint64_t index, int rv)
{
	log_group(&s->config.log, LOG_LEVEL_WARN, (int32_t)s->config.shard_index, g->id,
		  "snapshot at %llu failed: %s", (unsigned long long)index, err_str(rv));
	g->snapshot_retry = index + (s->config.snapshot_entries ? s->config.snapshot_entries : 1);
}

/* How long a large save held the shard thread (saving or freezing it, then
 * what follows on the shard: manifest unless the snapshot thread wrote it,
 * compaction, WAL mark), and took in all. */
static void save_log(struct shard *s, const struct snapshot_meta *meta, uint64_t save_ns,
		     uint64_t commit_ns, uint64_t total_ns)
{
	if (meta->size < SHARD_SAVE_LOG_SIZE)
		return;
	log_group(&s->config.log, LOG_LEVEL_INFO, (int32_t)s->config.shard_index, meta->group,
		  "snapshot %llu saved: %llu bytes in %.1f ms; the shard thread spent %.1f ms %s "
		  "and %.1f ms after it",
		  (unsigned long long)meta->index, (unsigned long long)meta->size,
		  (double)total_ns / 1e6, (double)save_ns / 1e6,
		  s->config.sm.freeze ? "freezing it" : "saving it", (double)commit_ns / 1e6);
}

struct save_fill {
	struct shard *shard;
	uint64_t group;
};

static int save_fill(void *arg, struct fl_snapshot_writer *w)
{
	struct save_fill *f = arg;

	return f->shard->config.sm.save(f->shard->config.sm.ctx, f->group, w);
}

/* A witness's snapshot: an empty file, for the metadata (index, term,
 * membership) that lets it compact its log. */
int save_fill_none(void *arg, struct fl_snapshot_writer *w)
{
	(void)arg;
	(void)w;
	return 0;
}

/* Snapshot thread: hand a written view back to its shard. */
static void save_job_done(struct snapshot_job *job)
{
	struct shard *s = job->owner;

	pthread_mutex_lock(&s->saved_lock);
	job->next = s->saved;
	s->saved = job;
	pthread_mutex_unlock(&s->saved_lock);
	loop_wake(&s->loop);
}

/* Snapshot group at its applied index. With sm.freeze, the state machine
 * freezes a view here and the node's snapshot thread writes it while the
 * group goes on applying; save_done() commits it. Without, sm.save
 * writes the file here and the turn waits. */
static void save_group(struct shard *s, struct group *g)
{
	uint64_t index = raft_applied_index(&g->raft);
	struct snapshot_meta meta = {
	    .group = g->id, .index = index, .term = raft_term_at(&g->raft, index)};
	struct snapshot_job *job;
	uint64_t started_ns;
	int rv;

	g->snapshot_wanted = false;
	if (index <= raft_snapshot(&g->raft)->index || meta.term == 0) {
		save_answer(&g->snap_asked, 0, raft_snapshot(&g->raft)->index);
		return; /* Nothing new since the last one. */
	}
	g->applied_bytes = 0;
	started_ns = loop_now_ns(&s->loop);
	if (s->config.sm.freeze == NULL || group_is_witness(g)) {
		struct save_fill fill = {s, g->id};
		uint64_t saved_ns;

		rv = snapshot_save(s->snap_dir, &meta,
				   group_is_witness(g) ? save_fill_none : save_fill, &fill);
		saved_ns = loop_now_ns(&s->loop);
		if (rv == 0) {
			stat_add(&s->stats.snapshot_bytes_written, meta.size);
			rv = save_commit(s, g, &meta);
		}
		if (rv != 0)
			save_failed(s, g, index, rv);
		else
			save_log(s, &meta, saved_ns - started_ns, loop_now_ns(&s->loop) - saved_ns,
				 loop_now_ns(&s->loop) - started_ns);
		save_answer(&g->snap_asked, rv, index);
		return;
	}
	job = calloc(1, sizeof(*job));
	rv = job ? s->config.sm.freeze(s->config.sm.ctx, g->id, &job->view) : -ENOMEM;
	if (rv != 0) {
		free(job);
		save_failed(s, g, index, rv);
		save_answer(&g->snap_asked, rv, index);
		return;
	}
	job->dir_fd = s->snap_dir;
	job->meta = meta;
	job->meta.conf = *raft_conf_at(&g->raft, index);
	job->manifest_lock = &s->manifest_lock;
	job->sm = s->config.sm;
	job->done = save_job_done;
	job->owner = s;
	job->started_ns = started_ns;
	job->held_ns = loop_now_ns(&s->loop) - started_ns;
	g->saving = true;
	g->snap_saving = g->snap_asked;
	g->snap_asked = NULL;
	snapshot_worker_submit(s->config.snapshots, job);
}

/* One view the snapshot thread wrote and made current (rv 0): compact the
 * group there. A newer snapshot may have been installed meanwhile (then this
 * one is moot), or the group removed (then its files go). */
static void save_done(struct shard *s, struct snapshot_job *job)
{
	struct group *g = table_find(s, job->meta.group);
	int rv = job->rv;

	if (rv == 0 || rv == -ESTALE) /* The file was written whole (then maybe dropped). */
		stat_add(&s->stats.snapshot_bytes_written, job->meta.size);
	if (g == NULL) {
		if (rv == 0) /* Its manifest was written after the group left. */
			snapshot_remove_group(s->snap_dir, job->meta.group);
		return;
	}
	if (!g->saving)
		return; /* A group of the same id made since: its files are its own. */
	g->saving = false;
	table_dirty(s, g); /* Calls that came meanwhile may want another. */
	if (rv == -ESTALE || (rv == 0 && job->meta.index <= raft_snapshot(&g->raft)->index)) {
		save_answer(&g->snap_saving, 0, raft_snapshot(&g->raft)->index);
		return;
	}
	if (rv == 0) {
		uint64_t compact_ns = loop_now_ns(&s->loop);

		rv = save_compact(s, g, &job->meta);
		compact_ns = loop_now_ns(&s->loop) - compact_ns;
		if (rv == 0)
			save_log(s, &job->meta, job->held_ns, compact_ns,
				 loop_now_ns(&s->loop) - job->started_ns);
	}
	if (rv != 0 && rv != -ECANCELED) /* Cancelled: the node is stopping. */
		save_failed(s, g, job->meta.index, rv);
	save_answer(&g->snap_saving, rv, job->meta.index);
}

/* Take what the snapshot thread handed back. */
void save_collect(struct shard *s)
{
	struct snapshot_job *job;

	pthread_mutex_lock(&s->saved_lock);
	job = s->saved;
	s->saved = NULL;
	pthread_mutex_unlock(&s->saved_lock);
	while (job) {
		struct snapshot_job *next = job->next;

		save_done(s, job);
		free(job);
		job = next;
	}
}

void save_maybe(struct shard *s, struct group *g)
{
	uint64_t applied = raft_applied_index(&g->raft);
	const struct shard_config *c = &s->config;
	const struct snapshot_policy policy = {.entries = c->snapshot_entries,
					       .bytes = c->snapshot_bytes,
					       .ratio_percent = c->snapshot_ratio_percent};
	bool due;

	if (g->saving)
		return; /* One at a time; save_collect() looks again. */
	if ((c->sm.save == NULL && c->sm.freeze == NULL && !group_is_witness(g)) || s->wal_failed) {
		save_answer(&g->snap_asked, s->wal_failed ? WAL_ERR_FAILED : -ENOTSUP, 0);
		return;
	}
	if (raft_is_snapshot_wanted(&g->raft))
		return; /* Rebuilding: our state is about to be replaced. */
	if (g->snap_asked || raft_is_snapshot_requested(&g->raft)) {
		/* Asked for (fl_group_snapshot), or a follower rebuilds from our
		 * snapshot (fl_group_rebuild): no retry delay, no threshold.
		 * Compacting offers it to that follower. */
		save_group(s, g);
		if (raft_has_ready(&g->raft))
			table_dirty(s, g);
		return;
	}
	if ((c->snapshot_entries == 0 && c->snapshot_bytes == 0) || applied < g->snapshot_retry)
		return;
	/* The floor and the ratio: see snapshot_policy.h. The WAL's ask wins. */
	due = g->snapshot_wanted ||
	      snapshot_policy_is_due(&policy, applied - raft_snapshot(&g->raft)->index,
				     g->applied_bytes, g->snapshot_size);
	if (due)
		save_group(s, g);
}
