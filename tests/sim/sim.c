/* flotilla-sim: a deterministic, seeded simulation of one Raft group of 3 to
 * 7 engines (engine/) on a simulated network, simulated disks and a
 * virtual clock.
 *
 * One uint64_t seed derives every parameter (sim_params, printed with
 * --verbose) and every random choice, so a seed replays exactly. A run is
 * --steps steps of step_ms virtual milliseconds. At the start of a step the
 * simulator may inject faults and client operations; then it delivers every
 * event due within the step in time order (messages, disk completions,
 * engine deadlines); then it checks the invariants of sim_check.c.
 *
 * The happy path of one engine input: raft_step() or raft_tick() or a
 * request, then while raft_has_ready(): raft_ready(), carried out as a shard
 * would. Writes (snapshot, entries, hard state) become one disk batch that
 * completes after a random latency, in order; on completion they are durable
 * and raft_persisted() reports the batch's last entry. msgs go into the
 * network at once; msgs_after wait behind the batch. Committed entries are
 * applied at once; confirmed reads are served once applied reaches them.
 * Messages are deep-copied by the shared engine driver (tests/driver/).
 *
 * Faults: message drop, duplication, reordering and long delays; symmetric
 * and asymmetric partitions; crashes (the engine and every write that was not
 * yet durable are lost; the node restarts from its disk) and pauses; disk
 * latency; clocks that run at slightly different rates. After --steps, the
 * cluster heals and a leader must commit a new proposal, applied on every
 * member, within liveness_ms (liveness). */
#include "tests/sim/sim.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "base/err.h"
#include "tests/driver/raft_driver.h"

#define PAYLOAD_HEADER_SIZE 12     /* u64 write id, u32 key; then filler. */
#define SIM_OUTSTANDING_MAX 64     /* Uncommitted entries past which clients wait. */
#define SIM_STEP_INPUTS_MAX 200000 /* Inputs in one step before it counts as a livelock. */
#define SIM_EVENTS_MAX      100000 /* Events in flight before it counts as a storm. */

enum sim_event_kind {
	SIM_EVENT_MSG,       /* Deliver msg to its target. */
	SIM_EVENT_DISK,      /* node's oldest batch is durable. */
	SIM_EVENT_SNAP_DONE, /* node finished sending a snapshot to peer. */
	SIM_EVENT_PEER_DOWN, /* Tell node that peer's process died. */
};

struct sim_event {
	uint64_t time_ms, seq;
	uint32_t kind, node, incarnation;
	uint32_t peer;
	bool ok;
	struct sim_msg *msg;
};

static bool trace_on;

#define TRACE(sim, ...)                                                                            \
	do {                                                                                       \
		if (trace_on)                                                                      \
			trace_print(sim, __VA_ARGS__);                                             \
	} while (0)

static void trace_print(const struct sim *sim, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void trace_print(const struct sim *sim, const char *fmt, ...)
{
	va_list ap;

	printf("%8llu ", (unsigned long long)sim->now_ms);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

void sim_fail(struct sim *sim, const char *fmt, ...)
{
	va_list ap;

	if (sim->failed)
		return;
	sim->failed = true;
	va_start(ap, fmt);
	vsnprintf(sim->failure, sizeof(sim->failure), fmt, ap);
	va_end(ap);
	TRACE(sim, "VIOLATION %s", sim->failure);
}

/* ------------------------------------------------------------- random */

static uint64_t rng_next(struct sim_rng *rng)
{
	uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static uint64_t rng_range(struct sim_rng *rng, uint64_t lo, uint64_t hi)
{
	return lo + rng_next(rng) % (hi - lo + 1);
}

static bool rng_chance(struct sim_rng *rng, uint32_t bp)
{
	return rng_next(rng) % SIM_BP < bp;
}

/* ------------------------------------------------------ state machine */

uint64_t sim_entry_hash(const struct raft_entry *e)
{
	static const uint8_t empty[1];

	return XXH3_64bits_withSeed(e->size ? e->data : empty, e->size, e->type);
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void sim_payload_decode(const struct raft_entry *e, uint64_t *write_id, uint32_t *key)
{
	*write_id = 0;
	*key = 0;
	if (e->type != RAFT_ENTRY_NORMAL || e->size < PAYLOAD_HEADER_SIZE)
		return;
	*write_id = get_le(e->data, 8);
	*key = (uint32_t)get_le((const uint8_t *)e->data + 8, 4) % SIM_KEYS;
}

void sim_sm_apply(struct sim_sm *sm, const struct raft_entry *e, uint64_t content_hash)
{
	uint64_t words[4] = {e->index, e->term, e->type, content_hash};
	uint64_t write_id;
	uint32_t key;

	sim_payload_decode(e, &write_id, &key);
	if (write_id != 0)
		sm->values[key] = write_id; /* Each write's value is its unique id. */
	sm->digest = XXH3_64bits_withSeed(words, sizeof(words), sm->digest);
	sm->index = e->index;
}

/* ------------------------------------------------------------- clocks */

/* Each node's clock runs at its own rate (clock_rate, at most 0.5% off, far
 * below drift_max_ms over an election timeout) from its own origin. */
static uint64_t clock_read(const struct sim *sim, const struct sim_node *n, uint64_t global_ms)
{
	int64_t g = (int64_t)global_ms;

	return (uint64_t)(n->clock_base + g + g * sim->p.clock_rate[n->id - 1] / 100000);
}

static uint64_t node_now(const struct sim *sim, const struct sim_node *n)
{
	return clock_read(sim, n, sim->now_ms);
}

/* The first global time, not before now, at which n's clock reaches deadline. */
static uint64_t node_global_at(const struct sim *sim, const struct sim_node *n, uint64_t deadline)
{
	int64_t d = (int64_t)deadline - n->clock_base;
	uint64_t g;

	if (deadline == RAFT_DEADLINE_NONE)
		return UINT64_MAX;
	if (deadline <= node_now(sim, n))
		return sim->now_ms;
	g = (uint64_t)(d * 100000 / (100000 + sim->p.clock_rate[n->id - 1]));
	if (g < sim->now_ms)
		g = sim->now_ms;
	while (clock_read(sim, n, g) < deadline)
		g++;
	while (g > sim->now_ms && clock_read(sim, n, g - 1) >= deadline)
		g--;
	return g;
}

/* ------------------------------------------------------------- events */

static bool event_before(const struct sim_event *a, const struct sim_event *b)
{
	return a->time_ms < b->time_ms || (a->time_ms == b->time_ms && a->seq < b->seq);
}

static void event_push(struct sim *sim, struct sim_event ev)
{
	uint32_t i;

	if (sim->events_count == sim->events_cap) {
		sim->events_cap = sim->events_cap ? sim->events_cap * 2 : 256;
		sim->events = realloc(sim->events, sim->events_cap * sizeof(*sim->events));
		if (sim->events == NULL)
			abort();
	}
	ev.seq = ++sim->event_seq;
	i = sim->events_count++;
	while (i > 0 && event_before(&ev, &sim->events[(i - 1) / 2])) {
		sim->events[i] = sim->events[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	sim->events[i] = ev;
}

static struct sim_event event_pop(struct sim *sim)
{
	struct sim_event top = sim->events[0], last = sim->events[--sim->events_count];
	uint32_t i = 0;

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= sim->events_count)
			break;
		if (c + 1 < sim->events_count && event_before(&sim->events[c + 1], &sim->events[c]))
			c++;
		if (!event_before(&sim->events[c], &last))
			break;
		sim->events[i] = sim->events[c];
		i = c;
	}
	if (sim->events_count > 0)
		sim->events[i] = last;
	return top;
}

/* ------------------------------------------------------------ network */

static struct sim_node *node_of(struct sim *sim, uint64_t id)
{
	if (id == 0 || id > sim->p.nodes)
		return NULL;
	return &sim->nodes[id - 1];
}

static void msg_free(struct sim_msg *msg)
{
	raft_driver_msg_free(&msg->d);
	free(msg);
}

/* A deep copy that owns everything (the shared driver's), with its pointers set. */
static struct sim_msg *msg_copy(const struct raft_msg *m, bool metadata)
{
	struct sim_msg *msg = raft_driver_alloc(sizeof(*msg));

	raft_driver_msg_copy(&msg->d, m, metadata);
	raft_driver_msg_view(&msg->d);
	return msg;
}

static struct sim_msg *msg_clone(const struct sim_msg *src)
{
	struct sim_msg *msg = msg_copy(&src->d.m, false);

	msg->snap_data = src->snap_data;
	msg->from_incarnation = src->from_incarnation;
	return msg;
}

/* A SNAPSHOT's fate goes back to its sender (raft_snapshot_sent). */
static void snap_done(struct sim *sim, const struct sim_msg *msg, bool ok, uint64_t delay_ms)
{
	if (msg->d.m.type != RAFT_MSG_SNAPSHOT)
		return;
	event_push(sim, (struct sim_event){.time_ms = sim->now_ms + delay_ms,
					   .kind = SIM_EVENT_SNAP_DONE,
					   .node = (uint32_t)msg->d.m.from,
					   .peer = (uint32_t)msg->d.m.to,
					   .incarnation = msg->from_incarnation,
					   .ok = ok});
}

static uint64_t net_latency(struct sim *sim)
{
	uint64_t lat = rng_range(&sim->rng, sim->p.net_lat_min_ms, sim->p.net_lat_max_ms);

	if (!sim->healed && rng_chance(&sim->rng, sim->p.delay_bp)) {
		lat += rng_range(&sim->rng, 0, sim->p.delay_max_ms);
		sim->stats.delays++;
	}
	return lat;
}

/* Put msg (owned) on the wire: it may be lost, delayed or duplicated. */
static void net_post(struct sim *sim, struct sim_msg *msg)
{
	sim->stats.msgs++;
	if (!sim->healed && rng_chance(&sim->rng, sim->p.drop_bp)) {
		sim->stats.drops++;
		snap_done(sim, msg, false, sim->p.net_lat_max_ms);
		msg_free(msg);
		return;
	}
	if (!sim->healed && rng_chance(&sim->rng, sim->p.dup_bp)) {
		sim->stats.dups++;
		event_push(sim, (struct sim_event){.time_ms = sim->now_ms + net_latency(sim),
						   .kind = SIM_EVENT_MSG,
						   .msg = msg_clone(msg)});
	}
	event_push(sim, (struct sim_event){.time_ms = sim->now_ms + net_latency(sim),
					   .kind = SIM_EVENT_MSG,
					   .msg = msg});
}

/* Copy an engine message (its pointers are borrowed) for the wire. */
static struct sim_msg *net_copy(struct sim *sim, struct sim_node *n, const struct raft_msg *m)
{
	struct sim_msg *msg = msg_copy(m, (m->flags & RAFT_MSG_FLAG_METADATA) != 0);

	msg->from_incarnation = n->incarnation;
	if (m->type == RAFT_MSG_SNAPSHOT) {
		sim->stats.snapshots_sent++;
		if (m->snapshot == NULL || n->snap_mem.index != m->snapshot->index)
			sim_fail(sim, "n%llu sends a snapshot at %llu but saved one at %llu",
				 (unsigned long long)n->id,
				 (unsigned long long)(m->snapshot ? m->snapshot->index : 0),
				 (unsigned long long)n->snap_mem.index);
		msg->snap_data = n->snap_mem;
	}
	return msg;
}

/* ------------------------------------------------------------- disks */

static void disk_truncate(struct sim_disk *disk, uint32_t keep)
{
	while (disk->entries_count > keep)
		free(disk->entries[--disk->entries_count].data);
}

static uint64_t disk_last(const struct sim_disk *disk)
{
	return disk->snap.index + disk->entries_count;
}

static void disk_append(struct sim *sim, struct sim_node *n, struct sim_batch *b)
{
	struct sim_disk *disk = &n->disk;
	uint64_t first = b->entries[0].e.index;

	if (first <= disk->snap.index || first > disk_last(disk) + 1) {
		sim_fail(sim, "n%llu persists index %llu onto a log of %llu..%llu",
			 (unsigned long long)n->id, (unsigned long long)first,
			 (unsigned long long)disk->snap.index + 1,
			 (unsigned long long)disk_last(disk));
		return;
	}
	disk_truncate(disk, (uint32_t)(first - disk->snap.index - 1));
	if (disk->entries_count + b->entries_count > disk->entries_cap) {
		disk->entries_cap = (disk->entries_count + b->entries_count) * 2;
		disk->entries = realloc(disk->entries, disk->entries_cap * sizeof(*disk->entries));
		if (disk->entries == NULL)
			abort();
	}
	for (uint32_t i = 0; i < b->entries_count; i++) {
		disk->entries[disk->entries_count++] = b->entries[i];
		b->entries[i].data = NULL; /* Moved. */
	}
	b->entries_count = 0;
}

/* Drop the durable log up to index, now covered by the saved snapshot. */
static void disk_compact(struct sim *sim, struct sim_node *n)
{
	struct sim_disk *disk = &n->disk;
	uint64_t index = n->raft.snap.index;
	uint32_t drop;

	if (index < disk->snap.index || index > disk_last(disk)) {
		sim_fail(sim, "n%llu compacts at %llu past its durable log (%llu..%llu)",
			 (unsigned long long)n->id, (unsigned long long)index,
			 (unsigned long long)disk->snap.index, (unsigned long long)disk_last(disk));
		return;
	}
	drop = (uint32_t)(index - disk->snap.index);
	for (uint32_t i = 0; i < drop; i++)
		free(disk->entries[i].data);
	memmove(disk->entries, disk->entries + drop,
		(disk->entries_count - drop) * sizeof(*disk->entries));
	disk->entries_count -= drop;
	disk->snap = n->raft.snap;
	disk->snap_data = n->snap_mem;
}

static void batch_free(struct sim_batch *b)
{
	for (uint32_t i = 0; i < b->entries_count; i++)
		free(b->entries[i].data);
	free(b->entries);
	for (uint32_t i = 0; i < b->msgs_count; i++)
		msg_free(b->msgs[i]);
	free(b->msgs);
	memset(b, 0, sizeof(*b));
}

static struct sim_batch *batch_new(struct sim *sim, struct sim_node *n)
{
	struct sim_batch *b;
	uint64_t done =
	    sim->now_ms + rng_range(&sim->rng, sim->p.disk_lat_min_ms, sim->p.disk_lat_max_ms);

	if (n->batches_head > 0 && n->batches_head == n->batches_count)
		n->batches_head = n->batches_count = 0;
	if (n->batches_count == n->batches_cap) {
		n->batches_cap = n->batches_cap ? n->batches_cap * 2 : 16;
		n->batches = realloc(n->batches, n->batches_cap * sizeof(*n->batches));
		if (n->batches == NULL)
			abort();
	}
	b = &n->batches[n->batches_count++];
	memset(b, 0, sizeof(*b));
	/* A batch that writes no hard state leaves the repair state on the
	 * disk as it was (shard.c writes it only in hard state): one that only
	 * holds back messages must not end a repair when it completes. */
	b->repairing = n->repairing;
	/* Writes complete in order. */
	b->done_ms = done > n->disk_done_ms ? done : n->disk_done_ms;
	n->disk_done_ms = b->done_ms;
	return b;
}

static void batch_add_msg(struct sim_batch *b, struct sim_msg *msg)
{
	b->msgs = realloc(b->msgs, (b->msgs_count + 1) * sizeof(*b->msgs));
	if (b->msgs == NULL)
		abort();
	b->msgs[b->msgs_count++] = msg;
}

static void node_drain(struct sim *sim, struct sim_node *n);

/* An installed snapshot is durable. Like the WAL's snapshot mark, it keeps
 * the durable entries after it when the log holds its last entry (a
 * follower rebuilding over its own log), and replaces the log otherwise;
 * a newer snapshot already on the disk supersedes it. */
static void disk_install(struct sim_disk *disk, const struct sim_batch *b)
{
	uint64_t index = b->snap.index, term = 0;

	if (index < disk->snap.index)
		return; /* A compaction after the install reached the disk first. */
	if (index == disk->snap.index)
		term = disk->snap.term;
	else if (index > disk->snap.index && index <= disk_last(disk))
		term = disk->entries[index - disk->snap.index - 1].e.term;
	if (term != 0 && term == b->snap.term) {
		uint32_t drop = (uint32_t)(index - disk->snap.index);

		for (uint32_t i = 0; i < drop; i++)
			free(disk->entries[i].data);
		memmove(disk->entries, disk->entries + drop,
			(disk->entries_count - drop) * sizeof(*disk->entries));
		disk->entries_count -= drop;
	} else {
		disk_truncate(disk, 0);
	}
	disk->snap = b->snap;
	disk->snap_data = b->snap_data;
}

/* The oldest batch of n is durable. */
static void disk_complete(struct sim *sim, struct sim_node *n)
{
	struct sim_batch b = n->batches[n->batches_head++];
	uint64_t last_index = 0, last_term = 0;

	if (b.snap_set)
		disk_install(&n->disk, &b);
	if (b.entries_count > 0) {
		last_index = b.entries[b.entries_count - 1].e.index;
		last_term = b.entries[b.entries_count - 1].e.term;
		disk_append(sim, n, &b);
	}
	if (b.hard_set)
		n->disk.hard = b.hard;
	/* The disk leaves repair only by a write made after the repair ended
	 * (an engine never returns to repair within one life). */
	if (n->disk.repairing && !b.repairing && raft_is_repairing(&n->raft))
		sim_fail(sim, "n%llu: the disk left repair while the engine repairs",
			 (unsigned long long)n->id);
	n->disk.repairing = b.repairing;
	if (last_index > 0)
		raft_persisted(&n->raft, last_index, last_term);
	for (uint32_t i = 0; i < b.msgs_count; i++)
		net_post(sim, b.msgs[i]);
	b.msgs_count = 0;
	batch_free(&b);
	node_drain(sim, n);
}

/* -------------------------------------------------------------- nodes */

static void proposals_drop_to(struct sim_node *n, uint64_t index)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < n->proposals_count; i++)
		if (n->proposals[i].index > index)
			n->proposals[kept++] = n->proposals[i];
	n->proposals_count = kept;
}

/* The proposals at e's index (several, when earlier terms' proposals there
 * were overwritten) are acknowledged or lost. */
static void proposals_applied(struct sim *sim, struct sim_node *n, const struct raft_entry *e)
{
	for (uint32_t i = 0; i < n->proposals_count;) {
		struct sim_proposal p = n->proposals[i];

		if (p.index != e->index) {
			i++;
			continue;
		}
		n->proposals[i] = n->proposals[--n->proposals_count];
		if (p.term != e->term) {
			sim->stats.lost++;
			continue;
		}
		sim->stats.acked++;
		sim_check_write_acked(sim, n, &p);
		if (p.write_id == sim->live_write_id)
			sim->live_index = p.index;
	}
}

static void reads_serve(struct sim *sim, struct sim_node *n)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < n->reads_count; i++) {
		struct sim_read *rd = &n->reads[i];

		if (rd->index == 0 || rd->index > n->sm.index) {
			n->reads[kept++] = *rd;
			continue;
		}
		sim->stats.reads_ok++;
		sim_check_read_served(sim, n, rd, n->sm.index, n->sm.values[rd->key]);
	}
	n->reads_count = kept;
}

static void reads_confirmed(struct sim *sim, struct sim_node *n, const struct raft_read *r)
{
	for (uint32_t i = 0; i < n->reads_count; i++) {
		struct sim_read *rd = &n->reads[i];

		if (rd->context != r->context || rd->index != 0)
			continue;
		if (r->index == 0) {
			sim->stats.reads_failed++;
			n->reads[i] = n->reads[--n->reads_count];
		} else {
			rd->index = r->index;
		}
		return;
	}
}

static void node_install(struct sim *sim, struct sim_node *n, const struct raft_snapshot_meta *s,
			 struct sim_batch *b)
{
	if (!n->install_set || n->install.index != s->index) {
		sim_fail(sim, "n%llu installs a snapshot at %llu it was not sent",
			 (unsigned long long)n->id, (unsigned long long)s->index);
		return;
	}
	sim->stats.snapshots_installed++;
	sim_check_install(sim, n, &n->install);
	n->sm = n->install;
	n->snap_mem = n->install;
	proposals_drop_to(n, s->index); /* Their fate is unknown to this node. */
	b->snap_set = true;
	b->snap = *s;
	b->snap_data = n->install;
	TRACE(sim, "n%llu installs snapshot %llu/%llu", (unsigned long long)n->id,
	      (unsigned long long)s->index, (unsigned long long)s->term);
}

static void node_persist(struct sim *sim, struct sim_node *n, const struct raft_ready *rd,
			 struct sim_batch *b)
{
	if (rd->snapshot != NULL)
		node_install(sim, n, rd->snapshot, b);
	if (rd->hard_changed) {
		b->hard_set = true;
		b->hard = rd->hard;
	}
	if (rd->entries_count > 0) {
		b->entries = calloc(rd->entries_count, sizeof(*b->entries));
		if (b->entries == NULL)
			abort();
		for (uint32_t i = 0; i < rd->entries_count; i++) {
			raft_driver_entry_copy(&b->entries[i].e, &rd->entries[i], false);
			b->entries[i].data = (uint8_t *)b->entries[i].e.data;
		}
		b->entries_count = rd->entries_count;
	}
}

static void node_ready(struct sim *sim, struct sim_node *n, const struct raft_ready *rd)
{
	struct sim_batch *b = NULL;
	uint32_t slot = 0;

	sim_check_handed(sim, n, rd);
	/* The end of a repair is written after what ended it, as shard.c does:
	 * a crash before it is durable repairs again. */
	if (rd->snapshot != NULL || rd->hard_changed || rd->entries_count > 0 ||
	    n->repairing != raft_is_repairing(&n->raft)) {
		b = batch_new(sim, n);
		slot = (uint32_t)(b - n->batches);
		node_persist(sim, n, rd, b);
		if (n->repairing && !raft_is_repairing(&n->raft))
			sim->stats.repairs++;
		n->repairing = b->repairing = raft_is_repairing(&n->raft);
	}
	for (uint32_t i = 0; i < rd->msgs_count; i++)
		net_post(sim, net_copy(sim, n, &rd->msgs[i]));
	if (rd->msgs_after_count > 0 && b == NULL && n->batches_head == n->batches_count) {
		for (uint32_t i = 0; i < rd->msgs_after_count; i++)
			net_post(sim, net_copy(sim, n, &rd->msgs_after[i]));
	} else if (rd->msgs_after_count > 0) {
		if (b == NULL) {
			b = batch_new(sim, n);
			slot = (uint32_t)(b - n->batches);
		}
		for (uint32_t i = 0; i < rd->msgs_after_count; i++)
			batch_add_msg(&n->batches[slot], net_copy(sim, n, &rd->msgs_after[i]));
	}
	if (b != NULL)
		event_push(sim, (struct sim_event){.time_ms = n->batches[slot].done_ms,
						   .kind = SIM_EVENT_DISK,
						   .node = (uint32_t)n->id,
						   .incarnation = n->incarnation});
	for (uint32_t i = 0; i < rd->committed_count; i++) {
		sim_check_apply(sim, n, &rd->committed[i]);
		proposals_applied(sim, n, &rd->committed[i]);
	}
	for (uint32_t i = 0; i < rd->reads_count; i++)
		reads_confirmed(sim, n, &rd->reads[i]);
}

/* Carry out every ready of n, as a shard would after any input. */
static void node_drain(struct sim *sim, struct sim_node *n)
{
	struct raft_ready rd;

	while (n->up && raft_has_ready(&n->raft)) {
		sim_check_leader(sim, n);
		sim_check_commit(sim, n);
		raft_ready(&n->raft, &rd);
		node_ready(sim, n, &rd);
		if (n->sm.index > n->raft.applied)
			raft_applied(&n->raft, n->sm.index);
		reads_serve(sim, n);
	}
	n->install_set = false;
	if (n->up) {
		raft_trim(&n->raft); /* As the shard does: quiesced groups give memory back. */
		sim_check_leader(sim, n);
	}
}

static int node_start(struct sim *sim, struct sim_node *n)
{
	struct sim_disk *disk = &n->disk;
	struct raft_entry *entries = calloc(disk->entries_count + 1, sizeof(*entries));
	struct raft_boot boot = {
	    .hard = disk->hard, .snapshot = disk->snap, .repair = disk->repairing};
	int rv;

	if (boot.repair)
		boot.repair_id = rng_next(&sim->rng); /* Differs from one life to the next. */
	if (entries == NULL)
		abort();
	for (uint32_t i = 0; i < disk->entries_count; i++)
		entries[i] = disk->entries[i].e;
	boot.entries = entries;
	boot.entries_count = disk->entries_count;
	boot.applied = disk->snap.index;
	n->config.seed = rng_next(&sim->rng);
	rv = raft_init(&n->raft, &n->config, &boot, node_now(sim, n));
	free(entries);
	if (rv != 0) {
		sim_fail(sim, "n%llu: raft_init from its disk failed: %s",
			 (unsigned long long)n->id, err_str(rv));
		return rv;
	}
	n->up = true;
	n->repairing = disk->repairing;
	n->incarnation++;
	n->sm = disk->snap_data;
	n->snap_mem = disk->snap_data;
	n->seen_commit = disk->snap.index;
	n->leader_term = n->handed_term = 0;
	n->disk_done_ms = 0;
	if (disk->snap.index > 0)
		sim_check_install(sim, n, &disk->snap_data);
	return 0;
}

static void node_crash(struct sim *sim, struct sim_node *n)
{
	TRACE(sim, "n%llu crashes (%s, term %llu)", (unsigned long long)n->id,
	      raft_role_name(raft_role(&n->raft)), (unsigned long long)raft_term(&n->raft));
	raft_deinit(&n->raft);
	for (uint32_t i = n->batches_head; i < n->batches_count; i++)
		batch_free(&n->batches[i]); /* Not durable: lost. */
	n->batches_head = n->batches_count = 0;
	n->proposals_count = 0;
	n->reads_count = 0;
	n->up = false;
	n->paused = false;
	n->incarnation++; /* Pending disk and snapshot events are void. */
	if (!sim->p.peer_down)
		return;
	for (uint32_t i = 0; i < sim->p.nodes; i++) {
		if (&sim->nodes[i] == n)
			continue;
		event_push(sim, (struct sim_event){
				    .time_ms = sim->now_ms +
					       rng_range(&sim->rng, 0, sim->p.net_lat_max_ms),
				    .kind = SIM_EVENT_PEER_DOWN,
				    .node = (uint32_t)sim->nodes[i].id,
				    .peer = (uint32_t)n->id,
				    .incarnation = n->incarnation});
	}
}

/* A restart that finds the log damaged (as the shard does with a WAL record
 * that fails verification): the node keeps its snapshot, term and vote, and
 * repairs. Only while every other node is whole, so that a majority can
 * still elect a leader to repair from (a majority damaged halts a group by
 * design); never on a witness, which keeps no payloads to lose. */
static void disk_lose(struct sim *sim, struct sim_node *n)
{
	for (uint32_t i = 0; i < sim->p.nodes; i++)
		if (sim->nodes[i].disk.repairing || (sim->nodes[i].up && sim->nodes[i].repairing))
			return;
	if (n->witness_slot || !rng_chance(&sim->rng, sim->p.loss_pct * 100))
		return;
	TRACE(sim, "n%llu restarts with its log after %llu damaged", (unsigned long long)n->id,
	      (unsigned long long)n->disk.snap.index);
	sim->stats.losses++;
	disk_truncate(&n->disk, 0);
	n->disk.hard.commit = n->disk.snap.index;
	n->disk.repairing = true;
}

static void node_restart(struct sim *sim, struct sim_node *n)
{
	if (sim->p.loss_pct > 0)
		disk_lose(sim, n);
	if (node_start(sim, n) != 0)
		return;
	TRACE(sim, "n%llu restarts (term %llu, log %llu..%llu)", (unsigned long long)n->id,
	      (unsigned long long)raft_term(&n->raft),
	      (unsigned long long)raft_first_index(&n->raft),
	      (unsigned long long)raft_last_index(&n->raft));
	if (!sim->p.peer_down)
		return;
	for (uint32_t i = 0; i < sim->p.nodes; i++) {
		struct sim_node *o = &sim->nodes[i];

		if (o == n || !o->up || o->paused)
			continue;
		raft_peer_up(&o->raft, n->id);
		node_drain(sim, o);
	}
}

/* ------------------------------------------------------------- events */

static void deliver(struct sim *sim, struct sim_msg *msg)
{
	struct sim_node *to = node_of(sim, msg->d.m.to);
	struct sim_node *from = node_of(sim, msg->d.m.from);

	if (to == NULL || from == NULL || !to->up) {
		snap_done(sim, msg, false, 0);
		msg_free(msg);
		return;
	}
	if (sim->cut[from->id - 1][to->id - 1]) {
		sim->stats.partition_drops++;
		snap_done(sim, msg, false, 0);
		msg_free(msg);
		return;
	}
	if (to->paused && sim->now_ms > to->paused_until_ms)
		to->paused = false; /* The pause is over: the node reads its socket again. */
	if (to->paused) {
		event_push(sim, (struct sim_event){.time_ms = to->paused_until_ms + 1,
						   .kind = SIM_EVENT_MSG,
						   .msg = msg});
		return;
	}
	TRACE(sim, "n%llu -> n%llu %s term %llu index %llu/%llu commit %llu n=%u%s ctx %llu",
	      (unsigned long long)msg->d.m.from, (unsigned long long)msg->d.m.to,
	      raft_msg_type_name(msg->d.m.type), (unsigned long long)msg->d.m.term,
	      (unsigned long long)msg->d.m.index, (unsigned long long)msg->d.m.log_term,
	      (unsigned long long)msg->d.m.commit, msg->d.m.entries_count,
	      msg->d.m.reject ? " reject" : "", (unsigned long long)msg->d.m.context);
	if (msg->d.m.type == RAFT_MSG_SNAPSHOT) {
		to->install = msg->snap_data;
		to->install_set = true;
	}
	raft_step(&to->raft, &msg->d.m, node_now(sim, to));
	node_drain(sim, to);
	snap_done(sim, msg, true, 0);
	msg_free(msg);
}

static void event_run(struct sim *sim, struct sim_event *ev)
{
	struct sim_node *n = node_of(sim, ev->node);

	switch (ev->kind) {
	case SIM_EVENT_MSG:
		deliver(sim, ev->msg);
		return;
	case SIM_EVENT_DISK:
		if (n->up && n->incarnation == ev->incarnation)
			disk_complete(sim, n);
		return;
	case SIM_EVENT_SNAP_DONE:
		if (n->up && !n->paused && n->incarnation == ev->incarnation) {
			raft_snapshot_sent(&n->raft, ev->peer, ev->ok, node_now(sim, n));
			node_drain(sim, n);
		}
		return;
	case SIM_EVENT_PEER_DOWN: {
		struct sim_node *peer = node_of(sim, ev->peer);

		/* Only while the peer is still down: never for a live process. */
		if (!n->up || n->paused || peer->up || peer->incarnation != ev->incarnation)
			return;
		sim->stats.peer_downs++;
		raft_peer_down(&n->raft, peer->id, node_now(sim, n));
		node_drain(sim, n);
		return;
	}
	default:
		abort();
	}
}

static void node_tick(struct sim *sim, struct sim_node *n)
{
	uint8_t role = n->raft.role;
	uint64_t deadline;

	raft_tick(&n->raft, node_now(sim, n));
	if (n->raft.role != role && n->raft.role != RAFT_ROLE_LEADER)
		TRACE(sim, "n%llu becomes %s in term %llu", (unsigned long long)n->id,
		      raft_role_name(raft_role(&n->raft)), (unsigned long long)raft_term(&n->raft));
	if (n->raft.role == RAFT_ROLE_PRE_CANDIDATE || n->raft.role == RAFT_ROLE_CANDIDATE)
		sim->stats.elections += role != n->raft.role;
	node_drain(sim, n);
	deadline = raft_next_deadline(&n->raft);
	if (n->up && deadline != RAFT_DEADLINE_NONE && deadline <= node_now(sim, n))
		sim_fail(sim, "n%llu: raft_next_deadline() %llu did not advance past now %llu",
			 (unsigned long long)n->id, (unsigned long long)deadline,
			 (unsigned long long)node_now(sim, n));
}

/* Deliver everything due up to until, in time order. */
static void run_until(struct sim *sim, uint64_t until)
{
	uint64_t handled = 0;

	while (!sim->failed) {
		uint64_t next = UINT64_MAX;
		struct sim_node *tick = NULL;

		for (uint32_t i = 0; i < sim->p.nodes; i++) {
			struct sim_node *n = &sim->nodes[i];
			uint64_t at;

			if (!n->up || n->paused)
				continue;
			at = node_global_at(sim, n, raft_next_deadline(&n->raft));
			if (at < next) {
				next = at;
				tick = n;
			}
		}
		if (sim->events_count > 0 && sim->events[0].time_ms <= next) {
			next = sim->events[0].time_ms;
			tick = NULL;
		}
		if (next > until)
			break;
		/* A step is milliseconds of virtual time: this many inputs in one
		 * means messages or deadlines that feed themselves. */
		if (sim->events_count > SIM_EVENTS_MAX) {
			sim_fail(sim, "message storm: %u messages and writes in flight",
				 sim->events_count);
			break;
		}
		if (++handled > SIM_STEP_INPUTS_MAX) {
			sim_fail(sim, "livelock: over %u inputs in one step (%u events queued)",
				 SIM_STEP_INPUTS_MAX, sim->events_count);
			break;
		}
		sim->now_ms = next > sim->now_ms ? next : sim->now_ms;
		if (tick != NULL) {
			node_tick(sim, tick);
		} else {
			struct sim_event ev = event_pop(sim);

			event_run(sim, &ev);
		}
	}
	if (!sim->failed)
		sim->now_ms = until;
}

/* ------------------------------------------------------------ clients */

static struct sim_node *pick_node(struct sim *sim, bool leader, bool data)
{
	struct sim_node *cands[SIM_NODES_MAX];
	uint32_t count = 0;

	for (uint32_t i = 0; i < sim->p.nodes; i++) {
		struct sim_node *n = &sim->nodes[i];

		if (!n->up || n->paused || (data && n->witness_slot) ||
		    (leader && !raft_is_leader(&n->raft)))
			continue;
		cands[count++] = n;
	}
	return count ? cands[rng_range(&sim->rng, 0, count - 1)] : NULL;
}

static int client_propose(struct sim *sim, struct sim_node *n)
{
	uint8_t payloads[3][PAYLOAD_HEADER_SIZE + 64];
	struct raft_buf bufs[3];
	uint64_t ids[3], first = 0;
	uint32_t count = (uint32_t)rng_range(&sim->rng, 1, 3);
	int rv;

	for (uint32_t i = 0; i < count; i++) {
		uint32_t key = (uint32_t)rng_range(&sim->rng, 0, SIM_KEYS - 1);
		uint32_t size =
		    PAYLOAD_HEADER_SIZE + (uint32_t)rng_range(&sim->rng, 0, sim->p.payload_pad_max);

		ids[i] = sim_check_write_new(sim, key);
		put_le(payloads[i], ids[i], 8);
		put_le(payloads[i] + 8, key, 4);
		memset(payloads[i] + PAYLOAD_HEADER_SIZE, (int)(ids[i] & 0xff),
		       size - PAYLOAD_HEADER_SIZE);
		bufs[i] = (struct raft_buf){.data = payloads[i], .size = size};
	}
	rv = raft_propose(&n->raft, bufs, count, &first);
	TRACE(sim, "n%llu propose %u: %s", (unsigned long long)n->id, count,
	      rv ? err_str(rv) : "ok");
	if (rv == 0) {
		for (uint32_t i = 0; i < count; i++) {
			if (n->proposals_count == n->proposals_cap) {
				n->proposals_cap = n->proposals_cap ? n->proposals_cap * 2 : 64;
				n->proposals =
				    realloc(n->proposals, n->proposals_cap * sizeof(*n->proposals));
				if (n->proposals == NULL)
					abort();
			}
			n->proposals[n->proposals_count++] = (struct sim_proposal){
			    .index = first + i, .term = raft_term(&n->raft), .write_id = ids[i]};
		}
		sim->stats.proposals += count;
		sim->live_write_id = sim->healed ? ids[0] : sim->live_write_id;
	} else if (rv == RAFT_ERR_NOT_LEADER && raft_is_leader(&n->raft)) {
		sim_fail(sim, "leader n%llu refused a proposal as not leader",
			 (unsigned long long)n->id);
	}
	node_drain(sim, n);
	return rv;
}

static void client_read(struct sim *sim, struct sim_node *n)
{
	struct sim_read rd = {.context = ++sim->next_context,
			      .applied_min = sim_check_read_bound(sim),
			      .key = (uint32_t)rng_range(&sim->rng, 0, SIM_KEYS - 1)};
	int rv = raft_read_index(&n->raft, rd.context, node_now(sim, n));

	sim->stats.reads++;
	if (rv != 0) {
		sim->stats.reads_failed++;
		return;
	}
	if (n->reads_count == n->reads_cap) {
		n->reads_cap = n->reads_cap ? n->reads_cap * 2 : 64;
		n->reads = realloc(n->reads, n->reads_cap * sizeof(*n->reads));
		if (n->reads == NULL)
			abort();
	}
	n->reads[n->reads_count++] = rd;
	node_drain(sim, n);
}

static void client_transfer(struct sim *sim, struct sim_node *leader)
{
	const struct raft_conf *conf = raft_conf(&leader->raft);
	const struct raft_member *m =
	    &conf->members[rng_range(&sim->rng, 0, conf->members_count - 1)];

	if (m->id == leader->id || m->role != RAFT_MEMBER_VOTER)
		return;
	if (raft_transfer(&leader->raft, m->id, node_now(sim, leader)) == 0) {
		sim->stats.transfers++;
		TRACE(sim, "n%llu transfers leadership to n%llu", (unsigned long long)leader->id,
		      (unsigned long long)m->id);
	}
	node_drain(sim, leader);
}

/* A follower throws its state machine away and asks its leader for a
 * snapshot (an operator rebuilding a diverged replica): it must keep its log
 * and its acknowledgements, and end with the group's state. */
static void client_rebuild(struct sim *sim, struct sim_node *n)
{
	if (raft_want_snapshot(&n->raft) == 0) {
		sim->stats.rebuilds++;
		TRACE(sim, "n%llu rebuilds from a snapshot", (unsigned long long)n->id);
	}
	node_drain(sim, n);
}

static void conf_counts(const struct raft_conf *conf, uint32_t *voters, uint32_t *witnesses)
{
	*voters = *witnesses = 0;
	for (uint32_t i = 0; i < conf->members_count; i++) {
		*voters += conf->members[i].role == RAFT_MEMBER_VOTER;
		*witnesses += conf->members[i].role == RAFT_MEMBER_WITNESS;
	}
}

static void conf_remove(struct raft_conf *conf, uint64_t id)
{
	for (uint32_t i = 0; i < conf->members_count; i++) {
		if (conf->members[i].id == id) {
			conf->members[i] = conf->members[--conf->members_count];
			return;
		}
	}
}

/* One random membership change that keeps at least three voting members, two
 * of them able to lead. Witness slots only ever join as witnesses: their logs
 * hold no payloads. */
static bool conf_pick_change(struct sim *sim, const struct sim_node *leader, struct raft_conf *c)
{
	struct sim_node *n = &sim->nodes[rng_range(&sim->rng, 0, sim->p.nodes - 1)];
	enum raft_member_role role = raft_conf_role(c, n->id);
	uint32_t voters, witnesses;

	conf_counts(c, &voters, &witnesses);
	if (role == RAFT_MEMBER_NONE) {
		if (n->witness_slot)
			return raft_conf_add(c, n->id, RAFT_MEMBER_WITNESS) == 0;
		return raft_conf_add(c, n->id,
				     rng_chance(&sim->rng, 5000) ? RAFT_MEMBER_LEARNER
								 : RAFT_MEMBER_VOTER) == 0;
	}
	if (role == RAFT_MEMBER_LEARNER) {
		if (rng_chance(&sim->rng, 7000))
			return raft_conf_add(c, n->id, RAFT_MEMBER_VOTER) == 0;
		conf_remove(c, n->id);
		return true;
	}
	if (voters + witnesses <= 3 || (role == RAFT_MEMBER_VOTER && voters <= 2))
		return false;
	if (n == leader && !sim->p.remove_leader)
		return false;
	if (role == RAFT_MEMBER_VOTER && rng_chance(&sim->rng, 3000))
		return raft_conf_add(c, n->id, RAFT_MEMBER_LEARNER) == 0;
	conf_remove(c, n->id);
	return true;
}

/* Start replacing a voter by a node that is no member: pick both. */
static bool conf_replace_pick(struct sim *sim, const struct raft_conf *c)
{
	struct sim_node *old_node = &sim->nodes[rng_range(&sim->rng, 0, sim->p.nodes - 1)];
	struct sim_node *new_node = &sim->nodes[rng_range(&sim->rng, 0, sim->p.nodes - 1)];

	if (raft_conf_role(c, old_node->id) != RAFT_MEMBER_VOTER || new_node->witness_slot ||
	    new_node->removed || raft_conf_role(c, new_node->id) != RAFT_MEMBER_NONE)
		return false;
	sim->replace_old = old_node->id;
	sim->replace_new = new_node->id;
	return true;
}

/* The next step of replacing voter old by node new, as flotilla-admin move
 * does it: new joins as a learner, becomes a voter once it has caught up
 * (the engine refuses while it lags), leadership leaves old if it leads,
 * and old is removed. The step follows from the configuration, whoever
 * leads now. Returns true with the target in c, false when no change is due
 * now (a transfer was asked for instead, or the replacement ended). */
static bool conf_replace_step(struct sim *sim, struct sim_node *leader, struct raft_conf *c)
{
	enum raft_member_role old_role, new_role;

	if (sim->replace_new == RAFT_NONE && !conf_replace_pick(sim, c))
		return false;
	old_role = raft_conf_role(c, sim->replace_old);
	new_role = raft_conf_role(c, sim->replace_new);
	if (old_role == RAFT_MEMBER_NONE) {
		if (new_role == RAFT_MEMBER_VOTER)
			sim->stats.replacements++;
		sim->replace_old = sim->replace_new = RAFT_NONE; /* Done, or given up. */
		return false;
	}
	if (new_role == RAFT_MEMBER_NONE)
		return raft_conf_add(c, sim->replace_new, RAFT_MEMBER_LEARNER) == 0;
	if (new_role == RAFT_MEMBER_LEARNER)
		return raft_conf_add(c, sim->replace_new, RAFT_MEMBER_VOTER) == 0;
	if (new_role != RAFT_MEMBER_VOTER) {
		sim->replace_old = sim->replace_new = RAFT_NONE;
		return false;
	}
	if (leader->id == sim->replace_old && !sim->p.remove_leader) {
		if (raft_transfer(&leader->raft, sim->replace_new, sim->now_ms) == 0)
			sim->stats.transfers++;
		return false;
	}
	conf_remove(c, sim->replace_old);
	return true;
}

static void client_change(struct sim *sim, struct sim_node *leader)
{
	struct raft_conf conf = *raft_conf(&leader->raft);
	bool picked;
	int rv;

	if (conf.joint)
		return;
	picked = sim->p.replace ? conf_replace_step(sim, leader, &conf)
				: conf_pick_change(sim, leader, &conf);
	if (!picked) {
		node_drain(sim, leader);
		return;
	}
	rv = raft_change(&leader->raft, &conf);
	if (rv == 0) {
		sim->stats.changes++;
		TRACE(sim, "n%llu changes membership (%u members)", (unsigned long long)leader->id,
		      conf.members_count);
	}
	if (rv == RAFT_ERR_LAGGING) {
		sim->stats.promotions_lagging++;
	} else if (rv == 0) {
		/* The joint configuration now in force tells who was promoted. */
		const struct raft_conf *joint = raft_conf(&leader->raft);

		for (uint32_t i = 0; i < joint->members_count; i++)
			sim->stats.promotions += joint->members[i].role == RAFT_MEMBER_VOTER &&
						 joint->members[i].role_old == RAFT_MEMBER_LEARNER;
	}
	node_drain(sim, leader);
}

static void node_compact(struct sim *sim, struct sim_node *n)
{
	struct sim_sm saved = n->snap_mem;
	uint64_t applied = n->raft.applied;

	if (applied < raft_first_index(&n->raft) + sim->p.compact_after &&
	    !raft_is_snapshot_requested(&n->raft))
		return;
	n->snap_mem = n->sm; /* The state machine's state at applied. */
	if (n->sm.index != applied || raft_compact(&n->raft, applied) != 0) {
		n->snap_mem = saved;
		return;
	}
	sim->stats.compactions++;
	disk_compact(sim, n);
}

/* ------------------------------------------------------------- faults */

static void partition_start(struct sim *sim)
{
	uint32_t nodes = sim->p.nodes;

	if (rng_chance(&sim->rng, sim->p.asym_bp)) {
		uint32_t cuts = (uint32_t)rng_range(&sim->rng, 1, nodes);

		for (uint32_t i = 0; i < cuts; i++) {
			uint32_t a = (uint32_t)rng_range(&sim->rng, 0, nodes - 1);
			uint32_t b = (uint32_t)rng_range(&sim->rng, 0, nodes - 1);

			sim->cut[a][b] = a != b;
		}
		sim->stats.asym_cuts++;
	} else {
		uint32_t side = (uint32_t)rng_range(&sim->rng, 1, (1u << nodes) - 2);
		struct sim_node *leader = pick_node(sim, true, true);

		/* Often cut a leader off with a minority: the case that tests
		 * CheckQuorum, leases and reads served by a deposed leader. */
		if (leader != NULL && rng_chance(&sim->rng, 5000)) {
			uint32_t self = 1u << (leader->id - 1), all = (1u << nodes) - 1;

			side = self;
			if (rng_chance(&sim->rng, 5000))
				side |= (uint32_t)rng_next(&sim->rng) & all & ~self;
			side = side == all ? self : side;
		}

		for (uint32_t a = 0; a < nodes; a++)
			for (uint32_t b = 0; b < nodes; b++)
				sim->cut[a][b] = ((side >> a) & 1) != ((side >> b) & 1);
		sim->stats.partitions++;
	}
	sim->partition_until_ms =
	    sim->now_ms + rng_range(&sim->rng, sim->p.election_ms / 2, sim->p.partition_max_ms);
	TRACE(sim, "partition until %llu", (unsigned long long)sim->partition_until_ms);
}

/* Any live node; often one with writes in flight, whose loss the crash tests. */
static struct sim_node *pick_crash_victim(struct sim *sim)
{
	struct sim_node *n = pick_node(sim, false, false);

	for (int tries = 0; tries < 4 && rng_chance(&sim->rng, 6000); tries++) {
		struct sim_node *o = pick_node(sim, false, false);

		if (o != NULL && o->batches_head < o->batches_count)
			return o;
	}
	return n;
}

static void faults_inject(struct sim *sim)
{
	struct sim_node *n;

	if (sim->partition_until_ms != 0 && sim->now_ms >= sim->partition_until_ms) {
		memset(sim->cut, 0, sizeof(sim->cut));
		sim->partition_until_ms = 0;
		TRACE(sim, "partition heals");
	} else if (sim->partition_until_ms == 0 && rng_chance(&sim->rng, sim->p.partition_bp)) {
		partition_start(sim);
	}
	if (rng_chance(&sim->rng, sim->p.crash_bp) && (n = pick_crash_victim(sim)) != NULL) {
		sim->stats.crashes++;
		n->down_until_ms = sim->now_ms + rng_range(&sim->rng, 0, sim->p.down_max_ms);
		node_crash(sim, n);
	}
	if (rng_chance(&sim->rng, sim->p.pause_bp) && (n = pick_node(sim, false, false)) != NULL) {
		sim->stats.pauses++;
		n->paused = true;
		n->paused_until_ms = sim->now_ms + rng_range(&sim->rng, 1, sim->p.pause_max_ms);
		TRACE(sim, "n%llu pauses until %llu", (unsigned long long)n->id,
		      (unsigned long long)n->paused_until_ms);
	}
}

static void clients_act(struct sim *sim)
{
	struct sim_node *n;

	for (int i = 0; i < 2; i++) {
		if (!rng_chance(&sim->rng, sim->p.propose_bp))
			continue;
		n = pick_node(sim, rng_chance(&sim->rng, 8000), true);
		if (n == NULL)
			n = pick_node(sim, false, true);
		/* Clients keep a bounded number of writes outstanding. */
		if (n != NULL &&
		    raft_last_index(&n->raft) - raft_commit_index(&n->raft) < SIM_OUTSTANDING_MAX)
			client_propose(sim, n);
	}
	if (rng_chance(&sim->rng, sim->p.read_bp) &&
	    ((n = pick_node(sim, rng_chance(&sim->rng, 5000), true)) != NULL ||
	     (n = pick_node(sim, false, true)) != NULL))
		client_read(sim, n);
	if (rng_chance(&sim->rng, sim->p.transfer_bp) && (n = pick_node(sim, true, true)) != NULL)
		client_transfer(sim, n);
	if (rng_chance(&sim->rng, sim->p.change_bp) && (n = pick_node(sim, true, true)) != NULL)
		client_change(sim, n);
	if (rng_chance(&sim->rng, sim->p.rebuild_bp) && (n = pick_node(sim, false, true)) != NULL)
		client_rebuild(sim, n);
}

/* Timed recoveries: restarts and the ends of pauses. */
static void nodes_recover(struct sim *sim)
{
	for (uint32_t i = 0; i < sim->p.nodes && !sim->failed; i++) {
		struct sim_node *n = &sim->nodes[i];

		if (!n->up && !n->removed && (sim->healed || sim->now_ms >= n->down_until_ms))
			node_restart(sim, n);
		if (n->up && n->paused && (sim->healed || sim->now_ms >= n->paused_until_ms)) {
			n->paused = false;
			node_drain(sim, n);
		}
		if (n->up && !n->paused)
			node_compact(sim, n);
	}
}

/* --------------------------------------------------------------- run */

static void params_derive(struct sim_params *p, uint64_t seed, uint32_t steps, uint32_t nodes)
{
	struct sim_rng rng = {.state = seed ^ 0x5F1A7D3C0FFEEull};
	struct sim_rng *r = &rng;
	uint32_t data;

	memset(p, 0, sizeof(*p));
	p->seed = seed;
	p->steps = steps;
	p->nodes = nodes ? nodes : (uint32_t)rng_range(r, 3, SIM_NODES_MAX);
	p->step_ms = (uint32_t)rng_range(r, 5, 15);
	p->witness_slots = rng_chance(r, p->nodes >= 4 ? 3000 : 1500) ? 1 : 0;
	data = p->nodes - p->witness_slots;
	p->voters_initial =
	    p->nodes == 3 ? data : (uint32_t)rng_range(r, 3 - p->witness_slots, data);
	p->learners_initial = (uint32_t)rng_range(r, 0, data - p->voters_initial);
	p->election_ms = (uint32_t)rng_range(r, 100, 300);
	p->heartbeat_ms = (uint32_t)rng_range(r, p->election_ms / 10, p->election_ms / 3);
	p->drift_max_ms = p->election_ms / 10;
	p->pre_vote = rng_chance(r, 7500);
	p->check_quorum = rng_chance(r, 7500);
	p->lease_read = p->check_quorum && rng_chance(r, 5000);
	p->quiesce = rng_chance(r, 2500);
	p->quiesce_after_ms = (uint32_t)rng_range(r, 2 * p->election_ms, 10 * p->election_ms);
	p->inflight_count_max = (uint32_t)rng_range(r, 1, RAFT_INFLIGHT_MAX);
	p->msg_size_max = rng_chance(r, 5000) ? (uint32_t)rng_range(r, 16, 256) : 1u << 20;
	p->payload_pad_max = (uint32_t)rng_range(r, 0, 64);
	p->uncommitted_size_max = rng_chance(r, 3000) ? rng_range(r, 256, 4096) : 64ull << 20;
	for (uint32_t i = 0; i < SIM_NODES_MAX; i++)
		p->clock_rate[i] = (int32_t)rng_range(r, 0, 1000) - 500;
	p->net_lat_min_ms = (uint32_t)rng_range(r, 1, 5);
	p->net_lat_max_ms = p->net_lat_min_ms + (uint32_t)rng_range(r, 0, p->election_ms / 4);
	p->drop_bp = (uint32_t)rng_range(r, 10, 2000);
	p->dup_bp = (uint32_t)rng_range(r, 10, 1000);
	p->delay_bp = (uint32_t)rng_range(r, 10, 500);
	p->delay_max_ms = (uint32_t)rng_range(r, p->election_ms, 5 * p->election_ms);
	p->disk_lat_min_ms = (uint32_t)rng_range(r, 0, 5);
	p->disk_lat_max_ms = p->disk_lat_min_ms + (uint32_t)rng_range(r, 0, 30);
	p->crash_bp = (uint32_t)rng_range(r, 5, 60);
	p->down_max_ms = (uint32_t)rng_range(r, 0, 5 * p->election_ms);
	p->partition_bp = (uint32_t)rng_range(r, 5, 60);
	p->asym_bp = (uint32_t)rng_range(r, 1000, 9000);
	p->partition_max_ms = (uint32_t)rng_range(r, p->election_ms, 10 * p->election_ms);
	p->pause_bp = (uint32_t)rng_range(r, 3, 40);
	p->pause_max_ms = (uint32_t)rng_range(r, p->election_ms / 2, 3 * p->election_ms);
	p->propose_bp = (uint32_t)rng_range(r, 500, 5000);
	p->read_bp = (uint32_t)rng_range(r, 200, 3000);
	p->transfer_bp = (uint32_t)rng_range(r, 0, 40);
	p->change_bp = p->nodes > 3 ? (uint32_t)rng_range(r, 0, 60) : 0;
	p->compact_after = (uint32_t)rng_range(r, 8, 256);
	p->peer_down = rng_chance(r, 5000);
	p->remove_leader = rng_chance(r, 5000);
	p->liveness_ms = 40 * p->election_ms + 20 * (p->net_lat_max_ms + p->disk_lat_max_ms);
	p->rebuild_bp = (uint32_t)rng_range(r, 0, 30); /* Last: earlier draws stay as they were. */
	p->replace = p->change_bp > 0 && rng_chance(r, 5000); /* Last: earlier draws stay. */
	/* Last too. Not with membership changes or a witness: a member that
	 * repairs while a joint configuration needs it, or the one data copy
	 * beside a witness, can halt the group (by design: nothing whole is left
	 * to repair from), and liveness is checked after healing. */
	p->loss_pct = rng_chance(r, 5000) && p->change_bp == 0 && p->witness_slots == 0
			  ? (uint32_t)rng_range(r, 5, 50)
			  : 0;
}

static void params_print(const struct sim_params *p)
{
	printf("seed=%llu steps=%u step_ms=%u nodes=%u witness_slots=%u voters=%u learners=%u\n",
	       (unsigned long long)p->seed, p->steps, p->step_ms, p->nodes, p->witness_slots,
	       p->voters_initial, p->learners_initial);
	printf("  raft: election_ms=%u heartbeat_ms=%u drift_max_ms=%u pre_vote=%d "
	       "check_quorum=%d lease_read=%d quiesce=%d quiesce_after_ms=%u\n",
	       p->election_ms, p->heartbeat_ms, p->drift_max_ms, p->pre_vote, p->check_quorum,
	       p->lease_read, p->quiesce, p->quiesce_after_ms);
	printf("  raft: inflight_count_max=%u msg_size_max=%u uncommitted_size_max=%llu "
	       "payload_pad_max=%u compact_after=%u\n",
	       p->inflight_count_max, p->msg_size_max, (unsigned long long)p->uncommitted_size_max,
	       p->payload_pad_max, p->compact_after);
	printf("  clocks (ppm/10):");
	for (uint32_t i = 0; i < p->nodes; i++)
		printf(" %d", p->clock_rate[i]);
	printf("\n  net: latency_ms=%u..%u drop_bp=%u dup_bp=%u delay_bp=%u delay_max_ms=%u\n",
	       p->net_lat_min_ms, p->net_lat_max_ms, p->drop_bp, p->dup_bp, p->delay_bp,
	       p->delay_max_ms);
	printf("  disk: latency_ms=%u..%u\n", p->disk_lat_min_ms, p->disk_lat_max_ms);
	printf("  faults/step: crash_bp=%u down_max_ms=%u partition_bp=%u asym_bp=%u "
	       "partition_max_ms=%u pause_bp=%u pause_max_ms=%u peer_down=%d\n",
	       p->crash_bp, p->down_max_ms, p->partition_bp, p->asym_bp, p->partition_max_ms,
	       p->pause_bp, p->pause_max_ms, p->peer_down);
	printf("  clients/step: propose_bp=%u read_bp=%u transfer_bp=%u change_bp=%u "
	       "rebuild_bp=%u remove_leader=%d replace=%d liveness_ms=%u\n",
	       p->propose_bp, p->read_bp, p->transfer_bp, p->change_bp, p->rebuild_bp,
	       p->remove_leader, p->replace, p->liveness_ms);
	printf("  storage: loss_pct=%u (restarts with a damaged log)\n", p->loss_pct);
}

static void sim_init(struct sim *sim, const struct sim_params *p)
{
	struct raft_conf conf = {0};
	uint32_t data = p->nodes - p->witness_slots;

	memset(sim, 0, sizeof(*sim));
	sim->p = *p;
	sim->rng.state = p->seed;
	sim->now_ms = 0;
	if (sim_check_init(sim) != 0)
		abort();
	for (uint32_t i = 0; i < p->voters_initial; i++)
		raft_conf_add(&conf, i + 1, RAFT_MEMBER_VOTER);
	for (uint32_t i = 0; i < p->learners_initial; i++)
		raft_conf_add(&conf, p->voters_initial + i + 1, RAFT_MEMBER_LEARNER);
	for (uint32_t i = data; i < p->nodes; i++)
		raft_conf_add(&conf, i + 1, RAFT_MEMBER_WITNESS);
	for (uint32_t i = 0; i < p->nodes; i++) {
		struct sim_node *n = &sim->nodes[i];
		struct raft_config *c = &n->config;

		n->id = i + 1;
		n->witness_slot = i >= data;
		n->clock_base = (int64_t)rng_range(&sim->rng, 0, 1000000);
		raft_config_default(c, n->id, 1);
		c->election_timeout_ms = p->election_ms;
		c->heartbeat_interval_ms = p->heartbeat_ms;
		c->clock_drift_max_ms = p->drift_max_ms;
		c->inflight_count_max = p->inflight_count_max;
		c->msg_size_max = p->msg_size_max;
		c->uncommitted_size_max = p->uncommitted_size_max;
		c->reads_max = 64;
		c->pre_vote = p->pre_vote;
		c->check_quorum = p->check_quorum;
		c->lease_read = p->lease_read;
		c->quiesce = p->quiesce;
		c->quiesce_after_ms = p->quiesce_after_ms;
		/* A node outside the bootstrap membership joins with an empty one. */
		if (raft_conf_role(&conf, n->id) != RAFT_MEMBER_NONE)
			n->disk.snap.conf = conf;
		node_start(sim, n);
	}
}

static void sim_deinit(struct sim *sim)
{
	for (uint32_t i = 0; i < sim->p.nodes; i++) {
		struct sim_node *n = &sim->nodes[i];

		if (n->up)
			node_crash(sim, n);
		disk_truncate(&n->disk, 0);
		free(n->disk.entries);
		free(n->batches);
		free(n->proposals);
		free(n->reads);
		free(n->shadow_terms);
	}
	while (sim->events_count > 0) {
		struct sim_event ev = event_pop(sim);

		if (ev.kind == SIM_EVENT_MSG)
			msg_free(ev.msg);
	}
	free(sim->events);
	sim_check_deinit(sim);
}

static void sim_step(struct sim *sim)
{
	nodes_recover(sim);
	if (!sim->healed) {
		faults_inject(sim);
		clients_act(sim);
	}
	run_until(sim, sim->now_ms + sim->p.step_ms);
	if (!sim->failed)
		sim_check_step(sim);
}

static bool conf_has(const struct raft_conf *conf, uint64_t id)
{
	for (uint32_t j = 0; j < conf->members_count; j++)
		if (conf->members[j].id == id)
			return true;
	return false;
}

/* The newest configuration that some live node knows to be committed. */
static const struct raft_conf *conf_committed(const struct sim *sim)
{
	const struct raft_conf *best = NULL;
	uint64_t best_index = 0;

	for (uint32_t i = 0; i < sim->p.nodes; i++) {
		const struct raft *r = &sim->nodes[i].raft;

		if (!sim->nodes[i].up)
			continue;
		for (uint32_t k = r->confs_count; k-- > 0;) {
			if (r->confs[k].index > r->commit)
				continue;
			if (best == NULL || r->confs[k].index > best_index) {
				best = &r->confs[k].conf;
				best_index = r->confs[k].index;
			}
			break;
		}
	}
	return best;
}

/* Nodes removed by a committed membership change are shut down once the
 * faults stop, as an operator would: a removed node that never learned of its
 * removal may otherwise campaign forever. */
static void nodes_retire(struct sim *sim)
{
	const struct raft_conf *conf = conf_committed(sim);
	struct sim_node *retire[SIM_NODES_MAX];
	uint32_t count = 0;

	if (conf == NULL)
		return;
	for (uint32_t i = 0; i < sim->p.nodes; i++) {
		struct sim_node *n = &sim->nodes[i];

		if (n->up && !raft_is_leader(&n->raft) && !conf_has(conf, n->id))
			retire[count++] = n;
	}
	for (uint32_t i = 0; i < count; i++) {
		retire[i]->removed = true;
		node_crash(sim, retire[i]);
	}
}

/* Has every live member of the newest committed configuration applied the
 * liveness write? */
static bool cluster_converged(const struct sim *sim)
{
	const struct raft_conf *conf = conf_committed(sim);

	if (conf == NULL)
		return false;
	for (uint32_t i = 0; i < sim->p.nodes; i++) {
		const struct sim_node *n = &sim->nodes[i];

		if (n->up && conf_has(conf, n->id) && n->sm.index < sim->live_index)
			return false;
	}
	return true;
}

/* The time to ship the log a lagging node misses: one round trip (two network
 * hops and a disk write) moves at most a window of messages of entries. */
static uint64_t catch_up_ms(const struct sim *sim)
{
	const struct sim_params *p = &sim->p;
	uint64_t last = 0, applied = UINT64_MAX, per_msg, rtt;

	for (uint32_t i = 0; i < p->nodes; i++) {
		const struct sim_node *n = &sim->nodes[i];

		if (!n->up)
			continue;
		last = raft_last_index(&n->raft) > last ? raft_last_index(&n->raft) : last;
		applied = n->sm.index < applied ? n->sm.index : applied;
	}
	if (applied >= last)
		return 0;
	per_msg = p->msg_size_max / (PAYLOAD_HEADER_SIZE + p->payload_pad_max);
	per_msg = per_msg < 1 ? 1 : per_msg;
	rtt = 2 * p->net_lat_max_ms + p->disk_lat_max_ms + 1;
	return (last - applied) * rtt / (per_msg * p->inflight_count_max) + 1;
}

/* After the faults: a leader emerges, commits a proposal, and every member
 * applies it, within liveness_ms plus the time to ship the backlog. */
static void sim_liveness(struct sim *sim)
{
	uint64_t start = sim->now_ms, leader_term = 0, bound;
	struct sim_node *leader = NULL;

	sim->healed = true;
	memset(sim->cut, 0, sizeof(sim->cut));
	nodes_recover(sim); /* Everyone up before deciding who was removed. */
	bound = sim->p.liveness_ms + catch_up_ms(sim);
	while (!sim->failed && sim->now_ms < start + bound) {
		nodes_retire(sim);
		if (sim->live_index == 0 &&
		    (leader == NULL || !leader->up || !raft_is_leader(&leader->raft) ||
		     raft_term(&leader->raft) != leader_term)) {
			sim->live_write_id = 0;
			leader = pick_node(sim, true, true);
			if (leader != NULL && client_propose(sim, leader) == 0)
				leader_term = raft_term(&leader->raft);
			else
				leader = NULL;
		}
		if (sim->live_index != 0 && cluster_converged(sim)) {
			sim->stats.liveness_ms = sim->now_ms - start;
			return;
		}
		sim_step(sim);
	}
	if (!sim->failed)
		sim_fail(sim, "liveness: %llu ms after healing, %s (committed log %llu)",
			 (unsigned long long)bound,
			 sim->live_index == 0 ? "no proposal to a leader committed"
					      : "not every node applied the committed proposal",
			 (unsigned long long)sim_check_committed(sim));
}

static void nodes_print(const struct sim *sim)
{
	for (uint32_t i = 0; i < sim->p.nodes; i++) {
		const struct sim_node *n = &sim->nodes[i];

		if (!n->up) {
			printf("  n%llu down%s\n", (unsigned long long)n->id,
			       n->removed ? " (removed)" : "");
			continue;
		}
		printf("  n%llu %-13s term %llu leader %llu commit %llu applied %llu log "
		       "%llu..%llu%s%s members %u%s\n",
		       (unsigned long long)n->id, raft_role_name(raft_role(&n->raft)),
		       (unsigned long long)raft_term(&n->raft),
		       (unsigned long long)raft_leader(&n->raft),
		       (unsigned long long)raft_commit_index(&n->raft),
		       (unsigned long long)n->raft.applied,
		       (unsigned long long)raft_first_index(&n->raft),
		       (unsigned long long)raft_last_index(&n->raft), n->paused ? " paused" : "",
		       raft_is_quiesced(&n->raft) ? " quiesced" : "",
		       raft_conf(&n->raft)->members_count,
		       raft_conf(&n->raft)->joint ? " joint" : "");
	}
}

static void stats_print(const char *prefix, const struct sim_stats *s)
{
	printf("%sfaults: drops=%llu dups=%llu delays=%llu partition_drops=%llu crashes=%llu "
	       "partitions=%llu asym=%llu pauses=%llu peer_downs=%llu\n",
	       prefix, (unsigned long long)s->drops, (unsigned long long)s->dups,
	       (unsigned long long)s->delays, (unsigned long long)s->partition_drops,
	       (unsigned long long)s->crashes, (unsigned long long)s->partitions,
	       (unsigned long long)s->asym_cuts, (unsigned long long)s->pauses,
	       (unsigned long long)s->peer_downs);
	printf("%sops: msgs=%llu proposals=%llu acked=%llu lost=%llu reads=%llu ok=%llu "
	       "failed=%llu transfers=%llu changes=%llu compactions=%llu snapshots=%llu/%llu "
	       "rebuilds=%llu elections=%llu leaders=%llu max_term=%llu\n",
	       prefix, (unsigned long long)s->msgs, (unsigned long long)s->proposals,
	       (unsigned long long)s->acked, (unsigned long long)s->lost,
	       (unsigned long long)s->reads, (unsigned long long)s->reads_ok,
	       (unsigned long long)s->reads_failed, (unsigned long long)s->transfers,
	       (unsigned long long)s->changes, (unsigned long long)s->compactions,
	       (unsigned long long)s->snapshots_installed, (unsigned long long)s->snapshots_sent,
	       (unsigned long long)s->rebuilds, (unsigned long long)s->elections,
	       (unsigned long long)s->leaders, (unsigned long long)s->max_term);
	printf("%smembership: promotions=%llu refused_lagging=%llu replacements=%llu\n", prefix,
	       (unsigned long long)s->promotions, (unsigned long long)s->promotions_lagging,
	       (unsigned long long)s->replacements);
	printf("%sstorage: losses=%llu repairs=%llu\n", prefix, (unsigned long long)s->losses,
	       (unsigned long long)s->repairs);
}

static_assert(sizeof(struct sim_stats) % sizeof(uint64_t) == 0, "stats are u64 counters");

static void stats_add(struct sim_stats *t, const struct sim_stats *s)
{
	const uint64_t *src = (const uint64_t *)s;
	uint64_t *dst = (uint64_t *)t;

	uint64_t liveness = t->liveness_ms > s->liveness_ms ? t->liveness_ms : s->liveness_ms;
	uint64_t term = t->max_term > s->max_term ? t->max_term : s->max_term;

	for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
		dst[i] += src[i];
	t->liveness_ms = liveness; /* Maxima, not sums. */
	t->max_term = term;
}

/* One seed. Returns true when no violation was found. */
static bool sim_run(const struct sim_params *p, bool verbose, struct sim_stats *total)
{
	struct sim *sim = malloc(sizeof(*sim));
	bool ok;

	if (sim == NULL)
		abort();
	if (verbose)
		params_print(p);
	sim_init(sim, p);
	for (sim->step = 0; sim->step < p->steps && !sim->failed; sim->step++)
		sim_step(sim);
	if (!sim->failed)
		sim_liveness(sim);
	ok = !sim->failed;
	if (!ok) {
		printf("VIOLATION seed=%llu step=%u t=%llums: %s\n", (unsigned long long)p->seed,
		       sim->step, (unsigned long long)sim->now_ms, sim->failure);
		nodes_print(sim);
	}
	if (verbose || !ok) {
		printf("seed=%llu: %s, committed=%llu, liveness_ms=%llu\n",
		       (unsigned long long)p->seed, ok ? "ok" : "FAILED",
		       (unsigned long long)sim_check_committed(sim),
		       (unsigned long long)sim->stats.liveness_ms);
		stats_print("  ", &sim->stats);
	}
	stats_add(total, &sim->stats);
	sim_deinit(sim);
	free(sim);
	return ok;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f, "usage: flotilla-sim [--seed S] [--seeds N] [--steps M] [--nodes K] "
		   "[--verbose] [--trace]\n"
		   "  --seed S    first seed (default 1); alone, replays that one seed\n"
		   "  --seeds N   run seeds S .. S+N-1 (default 1)\n"
		   "  --steps M   steps of fault injection per seed (default 2000)\n"
		   "  --nodes K   cluster size 3..7 (default: derived from the seed)\n"
		   "  --verbose   print each seed's parameters and summary\n"
		   "  --trace     print every delivered message and role change\n");
}

/* Accepts "--name value" and "--name=value". */
static bool arg_value(int argc, char **argv, int *i, const char *name, uint64_t *out)
{
	size_t len = strlen(name);
	const char *v;
	char *end;

	if (strncmp(argv[*i], name, len) != 0)
		return false;
	if (argv[*i][len] == '=') {
		v = argv[*i] + len + 1;
	} else if (argv[*i][len] == '\0' && *i + 1 < argc) {
		v = argv[++*i];
	} else {
		return false;
	}
	errno = 0;
	*out = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || end == v) {
		fprintf(stderr, "flotilla-sim: bad value for %s: %s\n", name, v);
		exit(2);
	}
	return true;
}

int main(int argc, char **argv)
{
	uint64_t seed = 1, seeds = 1, steps = 2000, nodes = 0, failures = 0, ran = 0;
	bool verbose = false;
	struct sim_stats total = {0};
	struct timespec t0, t1;

	for (int i = 1; i < argc; i++) {
		if (arg_value(argc, argv, &i, "--seeds", &seeds) ||
		    arg_value(argc, argv, &i, "--seed", &seed) ||
		    arg_value(argc, argv, &i, "--steps", &steps) ||
		    arg_value(argc, argv, &i, "--nodes", &nodes))
			continue;
		if (strcmp(argv[i], "--verbose") == 0) {
			verbose = true;
		} else if (strcmp(argv[i], "--trace") == 0) {
			trace_on = verbose = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if ((nodes != 0 && (nodes < 3 || nodes > SIM_NODES_MAX)) || seeds == 0 ||
	    steps > UINT32_MAX) {
		usage(stderr);
		return 2;
	}
	verbose |= seeds == 1;
	setvbuf(stdout, NULL, _IOLBF, 0); /* A crash keeps what was printed. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t s = seed; s < seed + seeds; s++) {
		struct sim_params p;

		params_derive(&p, s, (uint32_t)steps, (uint32_t)nodes);
		ran++;
		if (sim_run(&p, verbose, &total))
			continue;
		failures++;
		printf("reproduce: flotilla-sim --seed=%llu --steps=%llu", (unsigned long long)s,
		       (unsigned long long)steps);
		if (nodes != 0)
			printf(" --nodes=%llu", (unsigned long long)nodes);
		printf("\n");
		break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("flotilla-sim: seeds %llu..%llu, %llu run, %llu steps each, %llu violation%s, "
	       "%.1f s\n",
	       (unsigned long long)seed, (unsigned long long)(seed + seeds - 1),
	       (unsigned long long)ran, (unsigned long long)steps, (unsigned long long)failures,
	       failures == 1 ? "" : "s",
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	stats_print("total ", &total);
	printf("total max liveness_ms=%llu\n", (unsigned long long)total.liveness_ms);
	return failures == 0 ? 0 : 1;
}
