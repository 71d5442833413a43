/* One shard: a thread that owns a loop, a WAL, a table of Raft groups and
 * the connections to the same shard index of every peer node.
 *
 * The happy path of one turn is:
 *   1. the loop reaped completions: received frames were decoded and stepped
 *      into their groups; a durable WAL batch released the groups' persisted
 *      positions and the messages that waited for it; sends recycled buffers;
 *   2. drain the inbox: requests of application threads; proposals for the
 *      same group become one raft_propose();
 *   3. tick the groups whose deadline passed (a heap of deadlines: quiet and
 *      quiesced groups cost nothing);
 *   4. take the ready of every dirty group: its hard state and entries go into
 *      the open WAL batch, its messages into the per-peer frame, its
 *      msgs_after behind the WAL position that covers them, its committed
 *      entries to the state machine in one apply call;
 *   5. one WAL write + fdatasync for the whole batch (group commit), one send
 *      per peer, then wait in io_uring_submit_and_wait.
 *
 * Failure modes: a failed fdatasync or write fails the WAL for good (never
 * retried: the kernel may have dropped the pages) and every group of the
 * shard stops with FL_ERR_WAL_FAILED; malformed input from a peer closes that
 * connection; a slow or dead peer has its output dropped past a bound (Raft
 * retransmits).
 *
 * A full file system is not a failure (see shard_space_check()): once the
 * WAL cannot keep a spare segment, the shard stops taking new entries while
 * the WAL's reserve still holds what is in flight. Leaders refuse proposals
 * and membership changes with FL_ERR_NO_SPACE and hand their leadership to a
 * peer; followers drop appends that carry entries and snapshots, as a lossy
 * network would (the leader sends them again); votes, heartbeats and reads
 * go on. Every SHARD_SPACE_RETRY_MS the shard tries the spare again, and
 * writes resume by themselves once it is made. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "io/loop.h"
#include "io/loop_sim.h"
#include "io/mem.h"
#include "io/wal.h"
#include "shard/shard_internal.h"

/* What each group of a summary did: "1,203 groups <what> in the last second". */
static const char *const shard_log_kinds[SHARD_LOG_KINDS] = {
    [SHARD_LOG_LEADER] = "changed leader",
    [SHARD_LOG_REPAIRED] = "were repaired",
    [SHARD_LOG_UNAVAILABLE] = "became unavailable (too many members repairing)",
    [SHARD_LOG_INSTALLED] = "installed a snapshot",
    [SHARD_LOG_RECEIVED] = "received a snapshot",
    [SHARD_LOG_SENT] = "sent a snapshot",
    [SHARD_LOG_GROUPS_FULL] = "were refused: the node hosts groups_max groups",
};

static void groups_fail_all(struct shard *s, int rv)
{
	for (uint64_t i = 0; i < s->table_cap; i++)
		if (s->table[i])
			pending_fail_all(s->table[i], rv);
}

/* Stop every group of the shard for good: a WAL that failed (a write or an
 * fdatasync: never retried, the kernel may have dropped the pages), or a
 * group whose state cannot follow its log. Requests pending on any group
 * get rv. why, when not NULL, is logged. */
static void shard_fail(struct shard *s, int rv, const char *why)
{
	if (s->wal_failed)
		return;
	if (why != NULL)
		log_shard(&s->config.log, LOG_LEVEL_ERROR, s->config.shard_index, "%s", why);
	s->wal_failed = true;
	groups_fail_all(s, rv);
}

/* What the WAL's durable callback noted: its failure, or the batches now
 * durable, which release the positions and messages waiting for them. */
static void shard_durable(struct shard *s)
{
	uint64_t batch = s->durable_batch;
	struct persist_item it;

	if (s->wal_error && !s->wal_failed) {
		char why[512];

		snprintf(why, sizeof(why), "WAL failed, stopping its groups: %s", wal_why(&s->wal));
		shard_fail(s, WAL_ERR_FAILED, why);
	}
	while (persist_pop(s, batch, &it)) {
		struct group *g = table_find(s, it.group);

		if (g) {
			raft_persisted(&g->raft, it.index, it.term);
			table_dirty(s, g);
		}
	}
	persist_release(s, batch, peer_queue_encoded);
}

static void tick_done(struct loop_op *op, int res)
{
	struct loop_timer *t = container_of(op, struct loop_timer, op);
	struct shard *s = container_of(t, struct shard, tick);

	(void)res;
	s->tick_armed = false;
}

static void shard_tick(struct shard *s)
{
	while (s->heap_count > 0 && s->heap[0].deadline_ms <= s->now_ms) {
		struct table_deadline it = table_deadline_pop(s);
		struct group *g = table_find(s, it.group);

		if (g == NULL || g->scheduled_ms != it.deadline_ms)
			continue; /* Removed, or rescheduled since. */
		g->scheduled_ms = 0;
		raft_tick(&g->raft, s->now_ms);
		table_dirty(s, g);
	}
}

/* Free WAL segments that every group has compacted past; groups that pin
 * old segments with too much to rewrite are snapshotted at their next turn. */
static void shard_reclaim(struct shard *s)
{
	struct wal_pin pins[16];
	uint32_t count = 0;
	/* A read unanswered for this long lost its message on the way. */
	uint64_t read_wait_ms = 4 * (uint64_t)s->config.election_timeout_ms > SHARD_RECLAIM_MS
				    ? 4 * (uint64_t)s->config.election_timeout_ms
				    : SHARD_RECLAIM_MS;

	s->reclaim_ms = s->now_ms + SHARD_RECLAIM_MS;
	for (uint64_t i = 0; i < s->table_cap; i++)
		if (s->table[i] && s->table[i]->reads_count > 0)
			pending_reads_abandon(
			    s->table[i], s->now_ms > read_wait_ms ? s->now_ms - read_wait_ms : 0);
	if (s->wal_failed || wal_reclaim(&s->wal, pins, 16, &count) != 0)
		return;
	for (uint32_t i = 0; i < count; i++) {
		struct group *g = table_find(s, pins[i].group);

		if (g && pins[i].action == WAL_PIN_SNAPSHOT) {
			g->snapshot_wanted = true;
			table_dirty(s, g);
		}
	}
}

/* Leader: how far g's members' logs are behind its own last index, the
 * largest and the sum (self excluded; a member not known to match anything
 * yet counts from 0). */
static void shard_census_lag(const struct group *g, uint64_t *lag_max, uint64_t *lag_sum)
{
	const struct raft_conf *conf = raft_conf(&g->raft);
	uint64_t last = raft_last_index(&g->raft);

	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_progress *pr = raft_progress_of(&g->raft, conf->members[i].id);
		uint64_t lag;

		if (conf->members[i].id == g->raft.config.id || pr == NULL || pr->match >= last)
			continue;
		lag = last - pr->match;
		*lag_sum += lag;
		if (lag > *lag_max)
			*lag_max = lag;
	}
}

/* Count the gauges of shard_stats over the shard's groups (SHARD_CENSUS_MS):
 * a walk of the table that reads each group and wakes none. Readers see
 * each gauge whole, not all of them from the same walk. */
static void shard_census(struct shard *s)
{
	uint64_t followers = 0, learners = 0, leaderless = 0, repairing = 0;
	uint64_t lag_max = 0, lag_sum = 0;
	struct wal_stats ws;

	s->census_ms = s->now_ms + SHARD_CENSUS_MS;
	for (uint64_t i = 0; i < s->table_cap; i++) {
		const struct group *g = s->table[i];

		if (g == NULL)
			continue;
		if (raft_leader(&g->raft) == RAFT_NONE)
			leaderless++;
		if (g->repairing || raft_is_repairing(&g->raft))
			repairing++;
		if (raft_is_leader(&g->raft))
			shard_census_lag(g, &lag_max, &lag_sum);
		else if (raft_conf_role(raft_conf(&g->raft), s->config.node_id) ==
			 RAFT_MEMBER_LEARNER)
			learners++;
		else if (raft_conf_is_voter(raft_conf(&g->raft), s->config.node_id))
			followers++;
	}
	wal_stats_get(&s->wal, &ws);
	atomic_store_explicit(&s->stats.followers, followers, memory_order_relaxed);
	atomic_store_explicit(&s->stats.learners, learners, memory_order_relaxed);
	atomic_store_explicit(&s->stats.leaderless, leaderless, memory_order_relaxed);
	atomic_store_explicit(&s->stats.repairing, repairing, memory_order_relaxed);
	atomic_store_explicit(&s->stats.lag_max, lag_max, memory_order_relaxed);
	atomic_store_explicit(&s->stats.lag_sum, lag_sum, memory_order_relaxed);
	atomic_store_explicit(&s->stats.wal_disk_size, ws.disk_size, memory_order_relaxed);
}

/* One timer per shard, due at the earliest group deadline (or a redial): a
 * shard whose groups are all quiesced sleeps until a message comes. */
static void shard_arm_timer(struct shard *s)
{
	uint64_t due = s->now_ms + SHARD_IDLE_WAKE_MS;

	if (s->heap_count > 0 && s->heap[0].deadline_ms < due)
		due = s->heap[0].deadline_ms;
	if (s->space_low && s->space_retry_ms < due)
		due = s->space_retry_ms;
	for (uint32_t i = 0; i < s->peers_count; i++)
		if (s->peers[i].state == PEER_DOWN && s->peers[i].redial_ms < due)
			due = s->peers[i].redial_ms;
	due = liveness_due(s, due);
	due = log_limit_due(&s->log_limit, due); /* A summary is written on time. */
	if (due < s->now_ms + s->config.tick_ms)
		due = s->now_ms + s->config.tick_ms; /* The tick is the finest grain. */
	if (s->tick_armed) {
		if (due + s->config.tick_ms < s->tick_due_ms && !s->tick_cancelled) {
			loop_timeout_cancel(&s->loop, &s->tick); /* Re-armed next turn. */
			s->tick_cancelled = true;
		}
		return;
	}
	s->tick_armed = true;
	s->tick_cancelled = false;
	s->tick_due_ms = due;
	loop_timeout(&s->loop, &s->tick, due - s->now_ms, tick_done);
}

static void shard_turn(struct shard *s)
{
	s->now_ns = loop_now_ns(&s->loop);
	s->now_ms = s->now_ns / 1000000;
	liveness_turn(s); /* Before the parse consumes what arrived. */
	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i] && s->conns[i]->received)
			conn_parse(s, s->conns[i]);
	shard_durable(s);
	table_wake_stalled(s); /* The last turn's flush may have made room. */
	save_collect(s);
	request_drain(s);
	shard_tick(s);
	if (!atomic_load(&s->stopping))
		peer_dial_all(s);
	for (int rounds = 0; rounds < 4 && s->dirty_head; rounds++) {
		struct group *list = s->dirty_head;

		s->dirty_head = NULL;
		while (list) {
			struct group *g = list;

			list = g->dirty_next;
			g->dirty = false;
			if (group_process(s, g) != 0) {
				shard_fail(s, WAL_ERR_FAILED, NULL);
				group_process(s, g); /* The rest of its turn, stopped. */
			}
		}
	}
	space_check(s);
	if (!s->wal_failed && wal_flush(&s->wal) != 0)
		shard_fail(s, WAL_ERR_FAILED, NULL);
	catchup_pump(s);
	for (uint32_t i = 0; i < s->peers_count; i++) {
		liveness_ping(s, &s->peers[i]);
		peer_send(s, &s->peers[i]);
	}
	if (s->now_ms >= s->reclaim_ms)
		shard_reclaim(s);
	if (s->now_ms >= s->census_ms)
		shard_census(s);
	log_limit_flush(&s->log_limit, s->now_ms);
	shard_arm_timer(s);
}

static void *shard_main(void *arg)
{
	struct shard *s = arg;

	/* This thread's allocations (the engines' logs, buffers, messages) come
	 * from an arena of the shard's own. */
	if (mem_thread_arena(&s->arena) == 0)
		atomic_store(&s->arena_ready, true);

	while (!atomic_load(&s->stopping)) {
		bool idle;

		shard_turn(s);
		/* Sleep only if nothing is queued: producers wake us when they see
		 * sleeping set, and we look at the inbox after setting it. */
		atomic_store(&s->sleeping, true);
		idle = s->dirty_head == NULL && inbox_depth(&s->inbox) == 0 &&
		       !atomic_load(&s->stopping);
		loop_run(&s->loop, idle ? 1 : 0);
		atomic_store(&s->sleeping, false);
	}
	/* The WAL's writes and reads in flight were submitted by this thread:
	 * see them complete here. The kernel cancels or fails what a thread
	 * submitted once it ends, and shard_close() runs on another thread; a
	 * batch cut short there would read as a WAL failure at shutdown. */
	for (int i = 0; i < 1000 && !s->wal_failed &&
			(s->wal.writing_batch != 0 || s->wal.reads_inflight != 0);
	     i++)
		loop_run(&s->loop, 1);
	return NULL;
}

int shard_submit(struct shard *s, struct shard_req *req)
{
	int rv;

	if (atomic_load(&s->stopping))
		return ERR_STOPPING;
	rv = inbox_push(&s->inbox, req);
	if (rv != 0)
		return rv;
	if (atomic_load(&s->sleeping))
		loop_wake(&s->loop);
	return 0;
}

static void shard_free(struct shard *s)
{
	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i]) {
			close(s->conns[i]->fd);
			buf_free(&s->conns[i]->in);
			free(s->conns[i]);
		}
	for (int i = 0; i < SHARD_TRANSFERS_MAX; i++)
		if (s->transfers[i].used)
			close(s->transfers[i].fd);
	for (int i = 0; i < SHARD_RECVS_MAX; i++)
		if (s->recvs_used[i])
			snapshot_recv_abort(s->snap_dir, &s->recvs[i]);
	/* The snapshot thread has stopped, and shard_close() committed what it
	 * wrote; anything left is from a failed start. */
	while (s->saved) {
		struct snapshot_job *job = s->saved;

		s->saved = job->next;
		free(job);
	}
	if (s->snap_dir >= 0)
		close(s->snap_dir);
	for (uint32_t i = 0; i < s->peers_count; i++) {
		if (s->peers[i].fd >= 0)
			close(s->peers[i].fd);
		buf_free(&s->peers[i].out);
		buf_free(&s->peers[i].flight);
		buf_free(&s->peers[i].beats);
		seal_deinit(&s->peers[i].seal);
	}
	/* group_close() shifts the table under a forward scan: restart it. */
	for (uint64_t i = 0; i < s->table_cap;) {
		if (s->table[i])
			group_close(s, s->table[i], ERR_STOPPING);
		else
			i++;
	}
	table_deinit(s);
	free(s->persist);
	buf_free(&s->held);
	free(s->peers);
	free(s->wal_entries);
	free(s->dec_entries);
	free(s->apply_entries);
	free(s->apply_results);
	free(s->prop_bufs);
	free(s->chunk_buf);
	inbox_deinit(&s->inbox);
	pthread_mutex_destroy(&s->saved_lock);
	pthread_mutex_destroy(&s->manifest_lock);
	free(s);
}

#ifdef FLOTILLA_TEST_HOOKS
/* Test-only faults (test builds only: FLOTILLA_TEST_HOOKS), off unless set:
 * FLOTILLA_TEST_SNAPSHOT_CORRUPT=1 flips a byte of the first snapshot chunk
 * each shard sends; FLOTILLA_TEST_SNAPSHOT_PACE_MS=N sends at most one chunk
 * per transfer every N ms, so that a test can stop a process mid-stream;
 * FLOTILLA_TEST_NO_SPACE=1 makes every WAL segment preallocation fail with
 * ENOSPC while a file named after the WAL directory plus ".no-space" exists
 * (a full disk that a test can fill and free at will). */
static int shard_fault(void *arg, const struct loop_fault_site *site)
{
	struct shard *s = arg;

	if (site->kind == LOOP_OP_ALLOCATE && access(s->fault_no_space, F_OK) == 0)
		return -ENOSPC;
	return 0;
}

static void shard_faults_read(struct shard *s)
{
	const char *unlimited = getenv("FLOTILLA_TEST_LOG_UNLIMITED");
	const char *corrupt = getenv("FLOTILLA_TEST_SNAPSHOT_CORRUPT");
	const char *pace = getenv("FLOTILLA_TEST_SNAPSHOT_PACE_MS");
	const char *no_space = getenv("FLOTILLA_TEST_NO_SPACE");

	if (no_space != NULL && strcmp(no_space, "1") == 0) {
		snprintf(s->fault_no_space, sizeof(s->fault_no_space), "%s.no-space",
			 s->config.wal_dir);
		log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
			  "test fault on: no space for WAL segments while %s exists",
			  s->fault_no_space);
	}

	/* Every per-group line logged one by one, as before the limiter (to
	 * measure what it saves). */
	if (unlimited != NULL && strcmp(unlimited, "1") == 0)
		s->log_limit.allowance = UINT32_MAX;
	s->fault_corrupt = corrupt != NULL && strcmp(corrupt, "1") == 0;
	if (pace != NULL)
		s->fault_pace_ms = (uint32_t)strtoul(pace, NULL, 10);
	if (s->fault_corrupt || s->fault_pace_ms > 0)
		log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
			  "test faults on (corrupt %d, pace %u ms)", s->fault_corrupt,
			  s->fault_pace_ms);
}
#endif /* FLOTILLA_TEST_HOOKS */

int shard_start(struct shard **out, const struct shard_config *config, char *why, size_t why_size)
{
	struct shard *s = calloc(1, sizeof(*s));
	struct loop_config lc = {.sq_entries = 1024};
	struct wal_config wc;
	char snap_dir[sizeof(config->wal_dir) + 16];
	int rv;

	ASSERT(config->dial != NULL || config->peers_count == 0); /* Peers are dialled. */
	if (s == NULL)
		return -ENOMEM;
	s->snap_dir = -1;
	s->config = *config;
	log_limit_init(&s->log_limit, &s->config.log, (int32_t)config->shard_index, shard_log_kinds,
		       SHARD_LOG_KINDS, SHARD_LOG_ALLOWANCE);
	s->conn_step = group_step;
	s->conn_chunk = catchup_chunk;
	pthread_mutex_init(&s->saved_lock, NULL);
	pthread_mutex_init(&s->manifest_lock, NULL);
#ifdef FLOTILLA_TEST_HOOKS
	shard_faults_read(s);
#endif
	rv = table_init(s, 64);
	ASSERT(config->peers_count <= FL_PEERS_MAX);
	s->peers = calloc(SHARD_PEERS_MAX, sizeof(*s->peers));
	if (rv == 0)
		rv = s->peers ? inbox_init(&s->inbox, config->inbox_max) : -ENOMEM;
	if (rv != 0)
		goto err;
	for (uint32_t i = 0; i < config->peers_count; i++)
		s->peers[i] = (struct peer){.shard = s,
					    .id = config->peers[i],
					    .fd = -1,
					    .frame_start = SIZE_MAX,
					    .backoff_ms = SHARD_REDIAL_MIN_MS};
	s->peers_count = config->peers_count;
	rv = config->sim ? loop_init_sim(&s->loop, &lc, config->sim, config->node_id)
			 : loop_init(&s->loop, &lc);
	if (rv != 0) {
		snprintf(why, why_size, "%s", loop_why(&s->loop));
		goto err;
	}
#ifdef FLOTILLA_TEST_HOOKS
	if (s->fault_no_space[0] != '\0')
		loop_set_fault(&s->loop, shard_fault, s);
#endif
	wal_config_default(&wc);
	/* The WAL takes entries of up to a quarter of a batch: size batches so
	 * that every entry the engine accepts fits (and segments to hold four). */
	{
		uint64_t batch = ((uint64_t)config->entry_size_max + 4096) * 4;

		if (config->wal_batch_size >= WAL_BATCH_SIZE_MIN)
			wc.batch_size_max = (config->wal_batch_size + WAL_BLOCK_SIZE - 1) /
					    WAL_BLOCK_SIZE * WAL_BLOCK_SIZE;

		batch = (batch + WAL_BLOCK_SIZE - 1) / WAL_BLOCK_SIZE * WAL_BLOCK_SIZE;
		if (batch > wc.batch_size_max)
			wc.batch_size_max = (uint32_t)batch;
		if (config->wal_segment_size > 0 &&
		    config->wal_segment_size <= WAL_SEGMENT_SIZE_MAX)
			wc.segment_size = (config->wal_segment_size + WAL_BLOCK_SIZE - 1) /
					  WAL_BLOCK_SIZE * WAL_BLOCK_SIZE;
		if ((uint64_t)wc.batch_size_max * 4 > wc.segment_size)
			wc.segment_size = wc.batch_size_max * 4;
	}
	/* O_DIRECT batches measured faster here (buffered writes go through
	 * io_uring's worker threads); a file system without it gets buffered. */
	snprintf(snap_dir, sizeof(snap_dir), "%s.snapshots", config->wal_dir);
	s->snap_dir = snapshot_dir_open(snap_dir);
	if (s->snap_dir < 0) {
		rv = s->snap_dir;
		snprintf(why, why_size, "snapshot directory %s: %s", snap_dir, strerror(-rv));
		goto err_after_loop;
	}
	wc.direct_io = true;
	wc.durable_cb = persist_durable_done;
	wc.salvage = true; /* Damaged groups repair from peers: recover_groups(). */
	rv = wal_init(&s->wal, &s->loop, config->wal_dir, &wc);
	if (rv == -EINVAL) {
		log_shard(&config->log, LOG_LEVEL_WARN, config->shard_index,
			  "%s; writing the WAL buffered", wal_why(&s->wal));
		wc.direct_io = false;
		rv = wal_init(&s->wal, &s->loop, config->wal_dir, &wc);
	}
	if (rv != 0) {
		snprintf(why, why_size, "WAL %s: %s", config->wal_dir, wal_why(&s->wal));
		goto err_after_loop;
	}
	s->now_ns = loop_now_ns(&s->loop);
	s->now_ms = s->now_ns / 1000000;
	if (wal_loss_why(&s->wal)[0] != '\0' &&
	    (s->wal.stats.segments_lost > 0 || s->wal.stats.files_foreign > 0))
		log_shard(&config->log, LOG_LEVEL_WARN, config->shard_index, "WAL %s: %s%s",
			  config->wal_dir, wal_loss_why(&s->wal),
			  s->wal.stats.segments_lost > 0
			      ? "; every group of this shard repairs from its peers"
			      : "");
	if (s->wal.stats.damaged_records > 0)
		log_shard(&config->log, LOG_LEVEL_WARN, config->shard_index, "WAL %s: %s",
			  config->wal_dir, wal_why(&s->wal));
	rv = recover_groups(s, why, why_size);
	if (rv != 0)
		goto err_after_wal;
	space_check(s); /* A WAL that was full when the node stopped may still be. */
	if (config->sim) {
		*out = s; /* Driven by shard_sim_turn(): no thread. */
		return 0;
	}
	rv = -pthread_create(&s->thread, NULL, shard_main, s);
	if (rv != 0) {
		snprintf(why, why_size, "cannot start shard thread: %s", strerror(-rv));
		goto err_after_wal;
	}
	*out = s;
	return 0;
err_after_wal:
	wal_deinit(&s->wal);
err_after_loop:
	loop_deinit(&s->loop);
err:
	shard_free(s);
	return rv;
}

void shard_stop(struct shard *s)
{
	atomic_store(&s->stopping, true);
	loop_wake(&s->loop);
	if (s->config.sim == NULL)
		pthread_join(s->thread, NULL);
}

bool shard_sim_turn(struct shard *s)
{
	loop_run(&s->loop, 0);
	shard_turn(s);
	loop_sim_poll(&s->loop);
	return s->dirty_head != NULL || inbox_depth(&s->inbox) > 0 || loop_sim_is_ready(&s->loop);
}

struct loop *shard_sim_loop(struct shard *s)
{
	return &s->loop;
}

void shard_crash(struct shard *s)
{
	struct shard_req *req;

	atomic_store(&s->stopping, true);
	/* The callers' requests end as a dead process ends them for its
	 * clients: unanswered, which a test's clients see as a stop. */
	while ((req = inbox_pop(&s->inbox)) != NULL) {
		pending_answer(req->cb, req->arg, ERR_STOPPING, 0, 0);
		request_free(req);
	}
	wal_deinit(&s->wal);
	loop_deinit(&s->loop);
	shard_free(s);
}

bool shard_group_state(struct shard *s, uint64_t group, struct shard_group_state *state)
{
	struct group *g = table_find(s, group);

	if (g == NULL)
		return false;
	*state = (struct shard_group_state){
	    .term = raft_term(&g->raft),
	    .commit_index = raft_commit_index(&g->raft),
	    .applied_index = raft_applied_index(&g->raft),
	    .commit_term = raft_term_at(&g->raft, raft_commit_index(&g->raft)),
	    .leader = raft_is_leader(&g->raft),
	    .quiesced = raft_is_quiesced(&g->raft),
	    .vote_term = g->hard_term,
	    .vote = g->hard_vote,
	    .vote_durable = wal_durable(&s->wal) >= wal_position(&s->wal),
	    .last_index = raft_last_index(&g->raft),
	    .repairing = raft_is_repairing(&g->raft)};
	return true;
}

bool shard_is_failed(struct shard *s)
{
	return s->wal_failed;
}

void shard_close(struct shard *s)
{
	struct shard_req *req;

	/* Finish what was asked before the stop (no new dials: the net thread
	 * is gone), then fail the rest. */
	shard_turn(s);
	while ((req = inbox_pop(&s->inbox)) != NULL) {
		pending_answer(req->cb, req->arg, ERR_STOPPING, 0, 0);
		request_free(req);
	}
	/* Stopping, not group processing: let groups stalled on full WAL
	 * buffers append what they deferred, a bounded number of turns. */
	for (int i = 0; i < 1000 && s->stalled_head != NULL && !s->wal_failed; i++) {
		wal_flush(&s->wal);
		loop_run(&s->loop, 1);
		shard_turn(s);
	}
	if (!s->wal_failed)
		wal_sync(&s->wal);
	for (uint32_t i = 0; i < s->peers_count; i++)
		if (s->peers[i].state == PEER_UP)
			shutdown(s->peers[i].fd, SHUT_RDWR);
	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i])
			shutdown(s->conns[i]->fd, SHUT_RDWR);
	for (int i = 0; i < 100 && loop_inflight(&s->loop) > 1; i++)
		loop_run(&s->loop, 1); /* Let the closed sockets' operations finish. */
	log_limit_flush_all(&s->log_limit);
	wal_deinit(&s->wal);
	loop_deinit(&s->loop);
	shard_free(s);
}

struct shard_stats *shard_stats(struct shard *s)
{
	return &s->stats;
}

uint64_t shard_inbox_depth(struct shard *s)
{
	return inbox_depth(&s->inbox);
}

uint64_t shard_memory(struct shard *s)
{
	return atomic_load(&s->arena_ready) ? mem_arena_allocated(s->arena) : 0;
}

uint64_t shard_wal_fsyncs(struct shard *s)
{
	return __atomic_load_n(&s->wal.stats.fsyncs, __ATOMIC_RELAXED);
}

struct wal_stats *shard_wal_stats(struct shard *s)
{
	return &s->wal.stats;
}

uint64_t shard_wal_bytes(struct shard *s)
{
	return __atomic_load_n(&s->wal.stats.bytes_written, __ATOMIC_RELAXED);
}
