/* Fuzz target: the Raft engine (engine/raft*.c) of 1 to 3 nodes in memory,
 * driven by a program read from the input: time passes, messages between
 * the nodes are delivered, dropped or duplicated, clients propose, read,
 * transfer leadership and change membership, writes are held and made
 * durable, logs are compacted, and arbitrary messages (anything the wire
 * decoder can produce) are injected as if from a peer.
 *
 * INPUT: u8 nodes (1 + nodes % 3), u8 config bits, then up to FUZZ_RAFT_OPS
 * operations, each a u8 opcode and its operands (see fuzz_raft_op()).
 *
 * Checked on every node after every operation (whatever was injected):
 *   - the term never decreases, and a node votes at most once per term
 *     (in memory and in what it persists);
 *   - commit never decreases; applied <= commit <= last index;
 *   - entry terms never decrease along the log;
 *   - committed entries are handed out in order, once, and an entry once
 *     committed keeps its term in the log for as long as the log holds it;
 *     a snapshot to install is past what was applied;
 *   - the durability contract of raft.h on every message that leaves: a
 *     vote request or granted vote only once the vote is durable, an
 *     append acknowledgement only up to what is durable.
 * Checked across nodes when nothing was injected (the nodes are then all
 * honest, and Raft's safety must hold under any delivery order):
 *   - at most one leader per term;
 *   - no two nodes commit different terms at the same index. */
#include <errno.h>

#include "engine/raft.h"
#include "tests/driver/raft_driver.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_RAFT_NODES_MAX    3
#define FUZZ_RAFT_IDS_MAX      4 /* Node ids in memberships and injected messages. */
#define FUZZ_RAFT_OPS          300
#define FUZZ_RAFT_NET_MAX      256
#define FUZZ_RAFT_LOG_MAX      1024 /* Indexes tracked by the checks. */
#define FUZZ_RAFT_SCAN_MAX     256  /* Log entries walked per check. */
#define FUZZ_RAFT_READY_ROUNDS 64
#define FUZZ_RAFT_LEADERS_MAX  256
#define FUZZ_RAFT_START_MS     10000

struct fr_node {
	struct raft raft;
	bool hold;
	struct raft_driver_write *writes; /* Pending, oldest first. */
	uint32_t writes_count, writes_cap;
	/* Durable, as the harness's storage saw it. */
	struct raft_hard_state hard;
	uint64_t durable_last;
	/* Handed out to the state machine. */
	uint64_t applied_index;
	uint64_t applied_terms[FUZZ_RAFT_LOG_MAX + 1];
	/* Seen at the last check. */
	uint64_t term, vote, commit;
};

struct fr_cluster {
	uint32_t n;
	uint64_t now;
	bool injected;
	struct fr_node nodes[FUZZ_RAFT_NODES_MAX + 1];
	struct raft_driver_msg net[FUZZ_RAFT_NET_MAX];
	uint32_t net_count;
	uint64_t committed_terms[FUZZ_RAFT_LOG_MAX + 1]; /* First commit seen at each index. */
	uint64_t leader_terms[FUZZ_RAFT_LEADERS_MAX], leader_ids[FUZZ_RAFT_LEADERS_MAX];
	uint32_t leaders_count;
};

/* ------------------------------------------------------------- messages */

/* The durability contract (raft.h) on a message leaving node. */
static void fr_check_durable(const struct fr_node *node, uint64_t id, const struct raft_msg *m)
{
	FUZZ_CHECK(m->from == id);
	FUZZ_CHECK(m->type > 0 && m->type < RAFT_MSG_TYPE_COUNT);
	if (m->type == RAFT_MSG_VOTE) {
		FUZZ_CHECK(node->hard.term >= m->term);
		FUZZ_CHECK(node->hard.vote == id);
	} else if (m->type == RAFT_MSG_VOTE_RESP && !m->reject) {
		FUZZ_CHECK(node->hard.term >= m->term);
		FUZZ_CHECK(node->hard.vote == m->to);
	} else if (m->type == RAFT_MSG_APPEND_RESP && !m->reject) {
		FUZZ_CHECK(m->index <= node->durable_last);
	}
}

static void fr_send(void *arg, uint64_t id, const struct raft_msg *m)
{
	struct fr_cluster *c = arg;

	fr_check_durable(&c->nodes[id], id, m);
	FUZZ_CHECK(m->entries_count == 0 || m->entries != NULL);
	if (c->net_count == FUZZ_RAFT_NET_MAX)
		return; /* The network lost it. */
	raft_driver_msg_copy(&c->net[c->net_count++], m, false);
}

/* --------------------------------------------------------------- readies */

/* One vote per term, in what reaches the disk. */
static void fr_durable(void *arg, uint64_t id, const struct raft_driver_write *w)
{
	struct fr_cluster *c = arg;
	const struct fr_node *node = &c->nodes[id];

	FUZZ_CHECK(w->hard.term >= node->hard.term);
	if (w->hard.term == node->hard.term && node->hard.vote != RAFT_NONE)
		FUZZ_CHECK(w->hard.vote == node->hard.vote);
}

static void fr_take_ready(void *arg, uint64_t id, const struct raft_ready *rd)
{
	struct fr_cluster *c = arg;
	struct fr_node *node = &c->nodes[id];

	if (rd->snapshot != NULL) {
		/* Installing must move the state machine forward, never back. */
		FUZZ_CHECK(rd->snapshot->index > node->applied_index);
		node->applied_index = rd->snapshot->index;
		if (rd->snapshot->index <= FUZZ_RAFT_LOG_MAX)
			node->applied_terms[rd->snapshot->index] = rd->snapshot->term;
	}
	for (uint32_t i = 0; i < rd->msgs_count; i++)
		fr_send(c, id, &rd->msgs[i]);
	for (uint32_t i = 0; i < rd->entries_count; i++)
		FUZZ_CHECK(rd->entries[i].index == rd->entries[0].index + i);
	for (uint32_t i = 0; i < rd->committed_count; i++) {
		const struct raft_entry *e = &rd->committed[i];

		FUZZ_CHECK(e->index == node->applied_index + 1); /* In order, once. */
		node->applied_index = e->index;
		if (e->index <= FUZZ_RAFT_LOG_MAX) {
			node->applied_terms[e->index] = e->term;
			if (c->committed_terms[e->index] == 0)
				c->committed_terms[e->index] = e->term;
			else if (!c->injected)
				FUZZ_CHECK(c->committed_terms[e->index] == e->term);
		}
	}
}

static struct raft_driver_store fr_store(struct fr_node *node)
{
	return (struct raft_driver_store){.writes = &node->writes,
					  .writes_count = &node->writes_count,
					  .writes_cap = &node->writes_cap,
					  .hard = &node->hard,
					  .durable_last = &node->durable_last};
}

static struct raft_driver_ops fr_ops(struct fr_cluster *c)
{
	return (struct raft_driver_ops){
	    .send = fr_send, .durable = fr_durable, .take = fr_take_ready, .arg = c};
}

/* Make node's pending writes durable, in order, then release what waited. */
static void fr_persist(struct fr_cluster *c, uint64_t id)
{
	struct raft_driver_store store = fr_store(&c->nodes[id]);
	struct raft_driver_ops ops = fr_ops(c);

	raft_driver_persist(&c->nodes[id].raft, id, &store, &ops);
}

static void fr_collect(struct fr_cluster *c, uint64_t id)
{
	struct fr_node *node = &c->nodes[id];
	struct raft_driver_store store = fr_store(node);
	struct raft_driver_ops ops = fr_ops(c);

	FUZZ_CHECK(raft_driver_drain(&node->raft, id, &store, node->hold, &node->applied_index,
				     FUZZ_RAFT_READY_ROUNDS, &ops));
}

/* ---------------------------------------------------------------- checks */

static void fr_check_node(struct fr_cluster *c, uint64_t id)
{
	struct fr_node *node = &c->nodes[id];
	struct raft *r = &node->raft;
	uint64_t first = raft_first_index(r), last = raft_last_index(r), prev_term = 0;
	uint64_t from = last > FUZZ_RAFT_SCAN_MAX ? last - FUZZ_RAFT_SCAN_MAX : 0;

	FUZZ_CHECK(r->term >= node->term);
	if (r->term == node->term && node->vote != RAFT_NONE)
		FUZZ_CHECK(r->vote == node->vote);
	FUZZ_CHECK(r->commit >= node->commit);
	FUZZ_CHECK(raft_applied_index(r) <= r->commit);
	FUZZ_CHECK(r->commit <= last);
	node->term = r->term;
	node->vote = r->vote;
	node->commit = r->commit;
	if (from < first)
		from = first;
	for (uint64_t i = from; i <= last; i++) {
		uint64_t term = raft_term_at(r, i);

		FUZZ_CHECK(term >= prev_term);
		prev_term = term;
		/* A committed entry keeps its term while the log holds it. */
		if (i <= node->applied_index && i <= FUZZ_RAFT_LOG_MAX &&
		    node->applied_terms[i] != 0)
			FUZZ_CHECK(term == node->applied_terms[i]);
	}
	if (raft_is_leader(r)) {
		const struct raft_conf *conf = raft_conf(r);

		for (uint32_t i = 0; i < conf->members_count; i++) {
			const struct raft_progress *pr = raft_progress_of(r, conf->members[i].id);

			if (pr != NULL)
				FUZZ_CHECK(pr->match <= last);
		}
	}
}

static void fr_check(struct fr_cluster *c)
{
	for (uint64_t id = 1; id <= c->n; id++) {
		const struct raft *r = &c->nodes[id].raft;
		bool known = false;

		fr_check_node(c, id);
		if (c->injected || !raft_is_leader(r))
			continue;
		for (uint32_t i = 0; i < c->leaders_count; i++) {
			if (c->leader_terms[i] == r->term) {
				FUZZ_CHECK(c->leader_ids[i] == id); /* One leader per term. */
				known = true;
			}
		}
		if (!known && c->leaders_count < FUZZ_RAFT_LEADERS_MAX) {
			c->leader_terms[c->leaders_count] = r->term;
			c->leader_ids[c->leaders_count++] = id;
		}
	}
}

/* ------------------------------------------------------------ operations */

static uint64_t fr_pick_node(struct fr_cluster *c, struct fuzz_in *in)
{
	return 1 + fuzz_u8(in) % c->n;
}

static void fr_deliver(struct fr_cluster *c, uint32_t slot, bool keep)
{
	struct raft_driver_msg fm = c->net[slot];
	uint64_t to = fm.m.to;

	if (keep) {
		/* A duplicate: the original stays queued. */
		raft_driver_msg_copy(&fm, raft_driver_msg_view(&c->net[slot]), false);
	} else {
		memmove(&c->net[slot], &c->net[slot + 1],
			(c->net_count - slot - 1) * sizeof(c->net[0]));
		c->net_count--;
	}
	if (to >= 1 && to <= c->n) {
		raft_step(&c->nodes[to].raft, raft_driver_msg_view(&fm), c->now);
		fr_collect(c, to);
	}
	raft_driver_msg_free(&fm);
}

static void fr_read_conf(struct fuzz_in *in, struct raft_conf *conf)
{
	uint8_t count = 1 + fuzz_u8(in) % FUZZ_RAFT_IDS_MAX;

	memset(conf, 0, sizeof(*conf));
	conf->joint = fuzz_u8(in) % 4 == 0;
	for (uint8_t i = 0; i < count; i++) {
		uint8_t roles = fuzz_u8(in);
		struct raft_member m = {.id = 1 + (uint64_t)i,
					.role = roles % 4,
					.role_old = conf->joint ? (roles >> 2) % 4 : 0};

		if (m.role == RAFT_MEMBER_NONE && m.role_old == RAFT_MEMBER_NONE)
			m.role = RAFT_MEMBER_VOTER;
		conf->members[conf->members_count++] = m;
	}
}

/* A message as the wire decoder could deliver it from peer from. */
static void fr_inject(struct fr_cluster *c, struct fuzz_in *in)
{
	struct raft_entry entries[4];
	uint8_t payload[4][16 + 8 + 16 * FUZZ_RAFT_IDS_MAX];
	struct raft_snapshot_meta snap;
	uint64_t to = fr_pick_node(c, in);
	const struct raft *r = &c->nodes[to].raft;
	uint8_t shape = fuzz_u8(in), term_mode = fuzz_u8(in);
	struct raft_msg m = {
	    .group = r->config.group,
	    .from = 1 + shape % FUZZ_RAFT_IDS_MAX,
	    .to = to,
	    .type = 1 + (shape >> 2) % (RAFT_MSG_TYPE_COUNT - 1),
	};

	switch (term_mode % 4) {
	case 0:
		m.term = r->term;
		break;
	case 1:
		m.term = r->term + 1;
		break;
	case 2:
		m.term = r->term > 0 ? r->term - 1 : 0;
		break;
	default:
		m.term = term_mode & 0x80 ? fuzz_u64(in) : fuzz_u8(in);
		break;
	}
	m.log_term = term_mode & 0x40 ? fuzz_u64(in) : fuzz_u8(in);
	m.index = term_mode & 0x20 ? fuzz_u64(in) : fuzz_u8(in);
	m.commit = term_mode & 0x10 ? fuzz_u64(in) : fuzz_u8(in);
	m.context = fuzz_u8(in);
	m.hint_index = fuzz_u8(in);
	m.hint_term = fuzz_u8(in);
	m.flags = fuzz_u8(in) & 7;
	m.reject = fuzz_u8(in) & 1;
	if (m.type == RAFT_MSG_APPEND && m.index <= UINT64_MAX - 4) {
		m.entries_count = fuzz_u8(in) % 5;
		for (uint32_t i = 0; i < m.entries_count; i++) {
			struct raft_entry *e = &entries[i];
			size_t got;

			e->index = m.index + 1 + i;
			e->term = fuzz_u8(in);
			e->type = fuzz_u8(in) % 3;
			if (e->type == RAFT_ENTRY_CONF && fuzz_u8(in) % 2 == 0) {
				struct raft_conf conf;

				fr_read_conf(in, &conf);
				e->size = raft_conf_encoded_size(&conf);
				raft_conf_encode(&conf, payload[i]);
			} else {
				const uint8_t *b = fuzz_bytes(in, fuzz_u8(in) % 16, &got);

				memcpy(payload[i], b, got);
				e->size = (uint32_t)got;
			}
			e->data = e->size ? payload[i] : NULL;
		}
		m.entries = m.entries_count ? entries : NULL;
	}
	if (m.type == RAFT_MSG_SNAPSHOT) {
		snap.index = fuzz_u8(in);
		snap.term = fuzz_u8(in);
		fr_read_conf(in, &snap.conf);
		m.snapshot = &snap;
	}
	c->injected = true;
	if (getenv("FUZZ_VERBOSE") != NULL) {
		printf("  inject %s %llu->%llu term %llu log_term %llu index %llu commit %llu",
		       raft_msg_type_name(m.type), (unsigned long long)m.from,
		       (unsigned long long)m.to, (unsigned long long)m.term,
		       (unsigned long long)m.log_term, (unsigned long long)m.index,
		       (unsigned long long)m.commit);
		for (uint32_t i = 0; i < m.entries_count; i++)
			printf(" [%llu:t%llu]", (unsigned long long)entries[i].index,
			       (unsigned long long)entries[i].term);
		if (m.snapshot != NULL)
			printf(" snapshot %llu:t%llu", (unsigned long long)snap.index,
			       (unsigned long long)snap.term);
		printf("\n");
	}
	raft_step(&c->nodes[to].raft, &m, c->now);
	fr_collect(c, to);
}

static void fr_op(struct fr_cluster *c, struct fuzz_in *in)
{
	uint8_t op = fuzz_u8(in) % 14;
	uint64_t id = fr_pick_node(c, in);
	struct fr_node *node = &c->nodes[id];
	uint8_t arg = fuzz_u8(in);

	switch (op) {
	case 0: /* Time passes for everyone. */
		c->now += (uint64_t)(arg + 1) * 20;
		for (uint64_t i = 1; i <= c->n; i++) {
			raft_tick(&c->nodes[i].raft, c->now);
			fr_collect(c, i);
		}
		break;
	case 1: /* Deliver one message. */
	case 2: /* Deliver one, keep a copy queued (duplicate). */
		if (c->net_count > 0)
			fr_deliver(c, arg % c->net_count, op == 2);
		break;
	case 3: /* Deliver everything queued now, in order. */
		for (uint32_t k = c->net_count; k > 0 && c->net_count > 0; k--)
			fr_deliver(c, 0, false);
		break;
	case 4: /* Lose one message. */
		if (c->net_count > 0) {
			uint32_t slot = arg % c->net_count;

			raft_driver_msg_free(&c->net[slot]);
			memmove(&c->net[slot], &c->net[slot + 1],
				(c->net_count - slot - 1) * sizeof(c->net[0]));
			c->net_count--;
		}
		break;
	case 5: { /* A client proposes. */
		uint8_t data[32] = {arg};
		struct raft_buf bufs[2] = {{data, arg % 32u}, {data, 1}};
		uint64_t first;

		(void)raft_propose(&node->raft, bufs, 1 + arg % 2, &first);
		fr_collect(c, id);
		break;
	}
	case 6:
		fr_inject(c, in);
		break;
	case 7: /* Writes are held, or everything held becomes durable. */
		node->hold = arg % 2 == 0;
		fr_collect(c, id);
		fr_persist(c, id);
		fr_collect(c, id);
		break;
	case 8:
		(void)raft_read_index(&node->raft, arg, c->now);
		fr_collect(c, id);
		break;
	case 9:
		(void)raft_transfer(&node->raft, 1 + arg % FUZZ_RAFT_IDS_MAX, c->now);
		fr_collect(c, id);
		break;
	case 10:
		if (arg % 2)
			raft_peer_down(&node->raft, 1 + (arg >> 1) % FUZZ_RAFT_IDS_MAX, c->now);
		else
			raft_peer_up(&node->raft, 1 + (arg >> 1) % FUZZ_RAFT_IDS_MAX);
		fr_collect(c, id);
		break;
	case 11: { /* A snapshot at or below what was applied. */
		uint64_t applied = raft_applied_index(&node->raft);

		(void)raft_compact(&node->raft, applied > arg % 4 ? applied - arg % 4 : applied);
		fr_collect(c, id);
		break;
	}
	case 12: {
		struct raft_conf conf;

		fr_read_conf(in, &conf);
		conf.joint = false;
		for (uint32_t i = 0; i < conf.members_count; i++)
			conf.members[i].role_old = 0;
		(void)raft_change(&node->raft, &conf);
		fr_collect(c, id);
		break;
	}
	default:
		raft_snapshot_sent(&node->raft, 1 + arg % FUZZ_RAFT_IDS_MAX, arg & 0x80, c->now);
		fr_collect(c, id);
		break;
	}
}

static void fr_init(struct fr_cluster *c, uint32_t n, uint8_t bits)
{
	struct raft_conf conf = {0};

	memset(c, 0, sizeof(*c));
	c->n = n;
	c->now = FUZZ_RAFT_START_MS;
	for (uint64_t id = 1; id <= n; id++)
		FUZZ_CHECK(raft_conf_add(&conf, id, RAFT_MEMBER_VOTER) == 0);
	for (uint64_t id = 1; id <= n; id++) {
		struct raft_config config;
		struct raft_boot boot = {0};

		raft_config_default(&config, id, 7);
		config.seed = 0x5eed + id;
		config.pre_vote = bits & 1;
		config.check_quorum = bits & 2;
		config.lease_read = bits & 4;
		config.quiesce = bits & 8;
		config.quiesce_after_ms = 2000;
		config.inflight_count_max = 1 + (bits >> 4) % 4;
		boot.snapshot.conf = conf;
		FUZZ_CHECK(raft_init(&c->nodes[id].raft, &config, &boot, c->now) == 0);
		fr_collect(c, id);
	}
}

static void fr_deinit(struct fr_cluster *c)
{
	for (uint32_t i = 0; i < c->net_count; i++)
		raft_driver_msg_free(&c->net[i]);
	for (uint64_t id = 1; id <= c->n; id++) {
		struct fr_node *node = &c->nodes[id];
		struct raft_driver_store store = fr_store(node);

		raft_driver_writes_drop(&store);
		free(node->writes);
		raft_deinit(&node->raft);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fr_cluster c;
	struct fuzz_in in = {data, size};
	uint32_t n = 1 + fuzz_u8(&in) % FUZZ_RAFT_NODES_MAX;

	fr_init(&c, n, fuzz_u8(&in));
	fr_check(&c);
	for (int i = 0; i < FUZZ_RAFT_OPS && fuzz_more(&in); i++) {
		if (getenv("FUZZ_VERBOSE") != NULL && in.size >= 3)
			printf("op %u node %u arg %u\n", in.data[0] % 14u, in.data[1], in.data[2]);
		fr_op(&c, &in);
		fr_check(&c);
		for (uint64_t id = 1; id <= n && getenv("FUZZ_VERBOSE") != NULL; id++) {
			const struct raft *r = &c.nodes[id].raft;

			printf("  node %llu: %s term %llu commit %llu log %llu..%llu (t%llu)\n",
			       (unsigned long long)id, raft_role_name(raft_role(r)),
			       (unsigned long long)r->term, (unsigned long long)r->commit,
			       (unsigned long long)raft_first_index(r),
			       (unsigned long long)raft_last_index(r),
			       (unsigned long long)raft_term_at(r, raft_last_index(r)));
		}
	}
	for (uint64_t id = 1; id <= n && getenv("FUZZ_VERBOSE") != NULL; id++) {
		const struct raft *r = &c.nodes[id].raft;

		printf("node %llu: %s term %llu commit %llu last %llu%s\n", (unsigned long long)id,
		       raft_role_name(raft_role(r)), (unsigned long long)r->term,
		       (unsigned long long)r->commit, (unsigned long long)raft_last_index(r),
		       c.injected ? " (injected)" : "");
	}
	fr_deinit(&c);
	return 0;
}
