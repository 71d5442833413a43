/* The hand-driven cluster of the engine's unit tests: see raft_fixture.h.
 *
 * The network is one FIFO queue of deep-copied messages. A message is
 * dropped when its link is cut or its receiver has crashed, at the moment it
 * would be delivered. Pending writes are kept per node, oldest first, and
 * made durable strictly in order, as the contract in raft.h requires. */
#include "tests/unit/raft_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FX_DELIVERIES_MAX 100000 /* More in one fx_deliver_all() is a livelock. */

static void *fx_alloc(size_t size)
{
	return raft_driver_alloc(size);
}

/* ------------------------------------------------------------- messages */

/* The durability contract, checked on everything that leaves a node. */
static void fx_check_durable(const struct fx_node *node, const struct raft_msg *m)
{
	switch (m->type) {
	case RAFT_MSG_VOTE:
		assert_true(node->hard.term >= m->term);
		assert_int_equal(node->hard.vote, m->from);
		break;
	case RAFT_MSG_VOTE_RESP:
		if (!m->reject) {
			assert_true(node->hard.term >= m->term);
			assert_int_equal(node->hard.vote, m->to);
		}
		break;
	case RAFT_MSG_APPEND_RESP:
		if (!m->reject)
			assert_true(m->index <= node->durable_last);
		break;
	default:
		break;
	}
}

static void fx_send(void *arg, uint64_t from, const struct raft_msg *m)
{
	struct fixture *f = arg;

	assert_int_equal(m->from, from);
	assert_true(m->type > 0 && m->type < RAFT_MSG_TYPE_COUNT);
	if (m->entries_count > 0)
		assert_non_null(m->entries);
	fx_check_durable(fx_node(f, from), m);
	if (f->net_count == f->net_cap) {
		f->net_cap = f->net_cap ? f->net_cap * 2 : 64;
		f->net = realloc(f->net, f->net_cap * sizeof(*f->net));
		assert_non_null(f->net);
	}
	raft_driver_msg_copy(&f->net[f->net_count++], m, false);
	f->sent[m->type]++;
}

/* --------------------------------------------------------------- readies */

/* Record what one ready hands over besides its write (the driver queues
 * that); its pointers die at the next engine call. */
static void fx_take_ready(void *arg, uint64_t id, const struct raft_ready *rd)
{
	struct fixture *f = arg;
	struct fx_node *node = fx_node(f, id);

	node->readies_count++;
	if (rd->snapshot != NULL) {
		node->snapshots_count++;
		node->snapshot_last = *rd->snapshot;
		node->applied_index = rd->snapshot->index;
	}
	for (uint32_t i = 0; i < rd->msgs_count; i++)
		fx_send(f, id, &rd->msgs[i]);
	for (uint32_t i = 1; i < rd->entries_count; i++)
		assert_int_equal(rd->entries[i].index, rd->entries[i - 1].index + 1);
	for (uint32_t i = 0; i < rd->committed_count; i++) {
		const struct raft_entry *e = &rd->committed[i];

		assert_int_equal(e->index, node->applied_index + 1); /* Applied in order. */
		if (e->index <= FX_LOG_MAX)
			node->applied_terms[e->index] = e->term;
		node->applied_index = e->index;
		node->applied_count++;
	}
	for (uint32_t i = 0; i < rd->reads_count; i++) {
		assert_true(node->reads_count < FX_READS_MAX);
		node->reads[node->reads_count++] = rd->reads[i];
	}
}

static struct raft_driver_store fx_store(struct fx_node *node)
{
	return (struct raft_driver_store){.writes = &node->writes,
					  .writes_count = &node->writes_count,
					  .writes_cap = &node->writes_cap,
					  .hard = &node->hard,
					  .durable_last = &node->durable_last};
}

static struct raft_driver_ops fx_ops(struct fixture *f)
{
	return (struct raft_driver_ops){.send = fx_send, .take = fx_take_ready, .arg = f};
}

/* Make node id's oldest pending writes durable, in order. */
static void fx_persist_writes(struct fixture *f, uint64_t id)
{
	struct fx_node *node = fx_node(f, id);
	struct raft_driver_store store = fx_store(node);
	struct raft_driver_ops ops = fx_ops(f);

	raft_driver_persist(&node->raft, id, &store, &ops);
}

void fx_collect(struct fixture *f, uint64_t id)
{
	struct fx_node *node = fx_node(f, id);
	struct raft_driver_store store = fx_store(node);
	struct raft_driver_ops ops = fx_ops(f);

	assert_true(raft_driver_drain(&node->raft, id, &store, node->hold, &node->applied_index,
				      1000, &ops));
}

void fx_persist(struct fixture *f, uint64_t id)
{
	fx_collect(f, id);
	fx_persist_writes(f, id);
	fx_collect(f, id);
}

void fx_hold(struct fixture *f, uint64_t id, bool hold)
{
	fx_node(f, id)->hold = hold;
	if (!hold)
		fx_persist(f, id);
}

/* ------------------------------------------------------------ lifecycle */

void fx_setup(struct fixture *f, uint32_t n)
{
	assert_true(n >= 1 && n <= FX_NODES_MAX);
	memset(f, 0, sizeof(*f));
	f->n = n;
	f->now = FX_START_MS;
	raft_config_default(&f->config, 1, 7);
	f->config.seed = 0x5eed;
	f->config.election_timeout_ms = FX_ELECTION_MS;
	f->config.heartbeat_interval_ms = FX_HEARTBEAT_MS;
	f->config.clock_drift_max_ms = FX_DRIFT_MS;
	f->config.pre_vote = true;
	f->config.check_quorum = true;
	for (uint64_t id = 1; id <= n; id++)
		assert_int_equal(raft_conf_add(&f->conf, id, RAFT_MEMBER_VOTER), 0);
}

static void fx_start_node(struct fixture *f, uint64_t id)
{
	struct fx_node *node = fx_node(f, id);
	struct raft_entry entries[FX_LOG_MAX];
	uint64_t payload[FX_LOG_MAX];
	struct raft_boot boot = {0};
	struct raft_config config = f->config;

	config.id = id;
	config.seed = f->config.seed + id * 0x9E3779B97F4A7C15ull;
	boot.snapshot.conf = node->boot_conf_set ? node->boot_conf : f->conf;
	for (uint32_t i = 0; i < node->boot_count; i++) {
		payload[i] = i + 1;
		entries[i] = (struct raft_entry){.term = node->boot_terms[i],
						 .index = i + 1,
						 .type = RAFT_ENTRY_NORMAL,
						 .size = sizeof(payload[i]),
						 .data = &payload[i]};
	}
	boot.entries = entries;
	boot.entries_count = node->boot_count;
	boot.hard = node->boot_hard;
	boot.repair = node->boot_repair;
	boot.repair_id = ++f->starts;
	assert_int_equal(raft_init(&node->raft, &config, &boot, f->now), 0);
	node->started = true;
	node->hard = boot.hard;
	node->durable_last = node->boot_count;
	fx_collect(f, id);
}

void fx_restart(struct fixture *f, uint64_t id)
{
	struct fx_node *node = fx_node(f, id);
	struct raft_driver_store store = fx_store(node);

	raft_driver_writes_drop(&store);
	raft_deinit(&node->raft);
	node->crashed = false;
	node->applied_index = 0;
	fx_start_node(f, id);
}

void fx_start(struct fixture *f)
{
	for (uint64_t id = 1; id <= f->n; id++)
		fx_start_node(f, id);
}

void fx_init(struct fixture *f, uint32_t n)
{
	fx_setup(f, n);
	fx_start(f);
}

void fx_deinit(struct fixture *f)
{
	for (uint32_t i = 0; i < f->net_count; i++)
		raft_driver_msg_free(&f->net[i]);
	free(f->net);
	for (uint64_t id = 1; id <= f->n; id++) {
		struct fx_node *node = fx_node(f, id);
		struct raft_driver_store store = fx_store(node);

		raft_driver_writes_drop(&store);
		free(node->writes);
		if (node->started)
			raft_deinit(&node->raft);
	}
	memset(f, 0, sizeof(*f));
}

void fx_boot_log(struct fixture *f, uint64_t id, const uint64_t *terms, uint32_t count,
		 uint64_t hard_term, uint64_t commit)
{
	struct fx_node *node = fx_node(f, id);

	assert_true(count <= FX_LOG_MAX);
	memcpy(node->boot_terms, terms, count * sizeof(*terms));
	node->boot_count = count;
	node->boot_hard.term = hard_term;
	if (count > 0 && terms[count - 1] > hard_term)
		node->boot_hard.term = terms[count - 1];
	node->boot_hard.commit = commit;
}

void fx_boot_log_all(struct fixture *f, const uint64_t *terms, uint32_t count, uint64_t hard_term,
		     uint64_t commit)
{
	for (uint64_t id = 1; id <= f->n; id++)
		fx_boot_log(f, id, terms, count, hard_term, commit);
}

struct fx_node *fx_node(struct fixture *f, uint64_t id)
{
	assert_true(id >= 1 && id <= f->n);
	return &f->nodes[id];
}

struct raft *fx_raft(struct fixture *f, uint64_t id)
{
	return &fx_node(f, id)->raft;
}

/* --------------------------------------------------------- engine calls */

void fx_tick(struct fixture *f, uint64_t id)
{
	raft_tick(fx_raft(f, id), f->now);
	fx_collect(f, id);
}

void fx_step(struct fixture *f, uint64_t id, const struct raft_msg *m)
{
	raft_step(fx_raft(f, id), m, f->now);
	fx_collect(f, id);
}

int fx_propose_many(struct fixture *f, uint64_t id, uint32_t count, uint32_t size)
{
	struct raft_buf bufs[FX_LOG_MAX];
	uint8_t *payload = fx_alloc(size);
	uint64_t first = 0;
	int rv;

	assert_true(count >= 1 && count <= FX_LOG_MAX);
	memset(payload, 0xab, size);
	for (uint32_t i = 0; i < count; i++)
		bufs[i] = (struct raft_buf){.data = payload, .size = size};
	rv = raft_propose(fx_raft(f, id), bufs, count, &first);
	free(payload);
	fx_collect(f, id);
	return rv;
}

int fx_propose(struct fixture *f, uint64_t id, uint32_t size)
{
	return fx_propose_many(f, id, 1, size);
}

int fx_read(struct fixture *f, uint64_t id, uint64_t context)
{
	int rv = raft_read_index(fx_raft(f, id), context, f->now);

	fx_collect(f, id);
	return rv;
}

int fx_transfer(struct fixture *f, uint64_t id, uint64_t target)
{
	int rv = raft_transfer(fx_raft(f, id), target, f->now);

	fx_collect(f, id);
	return rv;
}

int fx_change(struct fixture *f, uint64_t id, const struct raft_conf *target)
{
	int rv = raft_change(fx_raft(f, id), target);

	fx_collect(f, id);
	return rv;
}

void fx_peer_down(struct fixture *f, uint64_t id, uint64_t node)
{
	raft_peer_down(fx_raft(f, id), node, f->now);
	fx_collect(f, id);
}

void fx_peer_suspect(struct fixture *f, uint64_t id, uint64_t node)
{
	raft_peer_suspect(fx_raft(f, id), node, f->now);
	fx_collect(f, id);
}

/* ------------------------------------------------------------------ time */

void fx_advance(struct fixture *f, uint64_t ms)
{
	f->now += ms;
	for (uint64_t id = 1; id <= f->n; id++)
		if (fx_node(f, id)->started && !fx_node(f, id)->crashed)
			fx_tick(f, id);
}

void fx_past_boot(struct fixture *f)
{
	f->now += FX_ELECTION_MS;
}

void fx_takeover(struct fixture *f, uint64_t id)
{
	struct raft *r = fx_raft(f, id);

	if (raft_role(r) != RAFT_ROLE_FOLLOWER)
		return;
	/* Its turn comes at most a few half-heartbeats later. */
	assert_true(r->election_deadline_ms <= f->now + FX_NODES_MAX * FX_HEARTBEAT_MS / 2);
	fx_timeout(f, id);
}

void fx_run(struct fixture *f, uint64_t ms, uint64_t step_ms)
{
	for (uint64_t t = 0; t < ms; t += step_ms) {
		fx_advance(f, step_ms);
		fx_deliver_all(f);
	}
}

void fx_timeout(struct fixture *f, uint64_t id)
{
	struct raft *r = fx_raft(f, id);

	if (f->now < r->election_deadline_ms)
		f->now = r->election_deadline_ms;
	fx_tick(f, id);
}

void fx_elect(struct fixture *f, uint64_t id)
{
	fx_timeout(f, id);
	fx_deliver_all(f);
	assert_int_equal(raft_role(fx_raft(f, id)), RAFT_ROLE_LEADER);
}

/* --------------------------------------------------------------- network */

static bool fx_match(const struct raft_driver_msg *fm, uint32_t type, uint64_t from, uint64_t to)
{
	return (type == FX_ANY || fm->m.type == type) && (from == FX_ANY || fm->m.from == from) &&
	       (to == FX_ANY || fm->m.to == to);
}

/* Take message slot out of the queue and step it into its receiver. */
static void fx_deliver_slot(struct fixture *f, uint32_t slot)
{
	struct raft_driver_msg fm = f->net[slot];
	struct raft_msg m = *raft_driver_msg_view(&fm);
	uint64_t to = m.to;

	memmove(&f->net[slot], &f->net[slot + 1], (f->net_count - slot - 1) * sizeof(*f->net));
	f->net_count--;
	if (to >= 1 && to <= f->n && fx_node(f, to)->started && !fx_node(f, to)->crashed &&
	    !(m.from <= FX_NODES_MAX && f->cut[m.from][to])) {
		f->delivered[m.type]++;
		raft_step(fx_raft(f, to), &m, f->now);
		/* The engine copied what it keeps: our copy can go now. */
		raft_driver_msg_free(&fm);
		fx_collect(f, to);
		return;
	}
	raft_driver_msg_free(&fm);
}

uint32_t fx_count(const struct fixture *f, uint32_t type, uint64_t from, uint64_t to)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < f->net_count; i++)
		n += fx_match(&f->net[i], type, from, to);
	return n;
}

const struct raft_msg *fx_find(const struct fixture *f, uint32_t type, uint64_t from, uint64_t to)
{
	for (uint32_t i = 0; i < f->net_count; i++)
		if (fx_match(&f->net[i], type, from, to)) {
			/* The caller reads entries through the copy. */
			return raft_driver_msg_view(&f->net[i]);
		}
	return NULL;
}

bool fx_deliver(struct fixture *f, uint32_t type, uint64_t from, uint64_t to)
{
	for (uint32_t i = 0; i < f->net_count; i++) {
		if (fx_match(&f->net[i], type, from, to)) {
			fx_deliver_slot(f, i);
			return true;
		}
	}
	return false;
}

uint32_t fx_deliver_matching(struct fixture *f, uint32_t type, uint64_t from, uint64_t to)
{
	uint32_t n = 0, queued = fx_count(f, type, from, to);

	/* Only those queued now, not the answers they cause. */
	while (n < queued && fx_deliver(f, type, from, to))
		n++;
	return n;
}

uint32_t fx_deliver_all(struct fixture *f)
{
	uint32_t n = 0;

	while (f->net_count > 0) {
		assert_true(n < FX_DELIVERIES_MAX);
		fx_deliver_slot(f, 0);
		n++;
	}
	return n;
}

uint32_t fx_deliver_round(struct fixture *f)
{
	uint32_t queued = f->net_count;

	for (uint32_t i = 0; i < queued; i++)
		fx_deliver_slot(f, 0);
	return queued;
}

uint32_t fx_drop(struct fixture *f, uint32_t type, uint64_t from, uint64_t to)
{
	uint32_t kept = 0, dropped = 0;

	for (uint32_t i = 0; i < f->net_count; i++) {
		if (fx_match(&f->net[i], type, from, to)) {
			raft_driver_msg_free(&f->net[i]);
			dropped++;
		} else {
			f->net[kept++] = f->net[i];
		}
	}
	f->net_count = kept;
	return dropped;
}

uint32_t fx_count_rejects(const struct fixture *f, uint32_t type, uint64_t from, uint64_t to)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < f->net_count; i++)
		n += fx_match(&f->net[i], type, from, to) && f->net[i].m.reject;
	return n;
}

uint32_t fx_deliver_votes(struct fixture *f)
{
	static const uint32_t types[] = {RAFT_MSG_PRE_VOTE, RAFT_MSG_PRE_VOTE_RESP, RAFT_MSG_VOTE,
					 RAFT_MSG_VOTE_RESP};
	uint32_t total = 0, n;

	do {
		n = 0;
		for (uint32_t i = 0; i < 4; i++)
			n += fx_deliver_matching(f, types[i], FX_ANY, FX_ANY);
		total += n;
	} while (n > 0);
	return total;
}

void fx_cut(struct fixture *f, uint64_t a, uint64_t b)
{
	f->cut[a][b] = true;
	f->cut[b][a] = true;
}

void fx_isolate(struct fixture *f, uint64_t id)
{
	for (uint64_t other = 1; other <= f->n; other++)
		if (other != id)
			fx_cut(f, id, other);
}

void fx_heal(struct fixture *f)
{
	memset(f->cut, 0, sizeof(f->cut));
}

/* ----------------------------------------------------------------- misc */

struct raft_msg fx_msg(uint32_t type, uint64_t from, uint64_t to, uint64_t term)
{
	return (struct raft_msg){.group = 7, .from = from, .to = to, .term = term, .type = type};
}

int64_t fx_read_index_of(const struct fx_node *node, uint64_t context)
{
	for (uint32_t i = 0; i < node->reads_count; i++)
		if (node->reads[i].context == context)
			return (int64_t)node->reads[i].index;
	return -1;
}

struct raft_conf fx_conf_of(const uint64_t *voters, uint32_t voters_count, const uint64_t *learners,
			    uint32_t learners_count)
{
	struct raft_conf c = {0};

	for (uint32_t i = 0; i < voters_count; i++)
		assert_int_equal(raft_conf_add(&c, voters[i], RAFT_MEMBER_VOTER), 0);
	for (uint32_t i = 0; i < learners_count; i++)
		assert_int_equal(raft_conf_add(&c, learners[i], RAFT_MEMBER_LEARNER), 0);
	return c;
}
