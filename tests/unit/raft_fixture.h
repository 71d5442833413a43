/* A cluster of Raft engines driven by hand, for the engine's unit tests.
 *
 * Node ids are 1..n. Nothing happens on its own: the test decides when time
 * passes (fx_advance), which messages are delivered, dropped or held
 * (fx_deliver*, fx_drop, fx_cut), and, for nodes put in hold mode, when
 * what a node handed out for persistence becomes durable (fx_persist).
 *
 * After every call into an engine the fixture drains its readies: messages
 * in msgs go to the network queue at once; entries, hard state and
 * msgs_after form one pending write per ready, which is persisted at once
 * (the default) or held until fx_persist(). Everything borrowed from a ready
 * is deep-copied before the next engine call. Readies are carried out by the
 * shared engine driver (tests/driver/raft_driver.h).
 *
 * The fixture also checks the durability contract on every message that
 * leaves a node: a granted vote, a vote request and an append
 * acknowledgement may only leave once what they promise is durable. */
#ifndef TESTS_UNIT_RAFT_FIXTURE_H
#define TESTS_UNIT_RAFT_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/raft.h"
#include "tests/driver/raft_driver.h"

#define FX_NODES_MAX    7
#define FX_ANY          0 /* Wildcard for a message type, sender or receiver. */
#define FX_LOG_MAX      256
#define FX_READS_MAX    64
#define FX_ELECTION_MS  1000
#define FX_HEARTBEAT_MS 100
#define FX_DRIFT_MS     100
#define FX_START_MS     10000 /* The virtual clock starts here, not at zero. */

struct fx_node {
	struct raft raft;
	bool started;
	bool hold;    /* Hold writes until fx_persist(). */
	bool crashed; /* Receives nothing, ticks never. */
	/* Boot state, set before fx_start(). */
	uint64_t boot_terms[FX_LOG_MAX];
	uint32_t boot_count;
	struct raft_hard_state boot_hard;
	bool boot_conf_set;
	struct raft_conf boot_conf;
	bool boot_repair; /* Boot in repair (raft_boot.repair). */
	/* Pending writes, oldest first (the shared driver's). */
	struct raft_driver_write *writes;
	uint32_t writes_count, writes_cap;
	/* What is durable. */
	struct raft_hard_state hard;
	uint64_t durable_last;
	/* What was handed out. */
	uint64_t applied_index;
	uint32_t applied_count;
	uint64_t applied_terms[FX_LOG_MAX + 1]; /* Term of each applied index. */
	uint32_t snapshots_count;
	struct raft_snapshot_meta snapshot_last;
	struct raft_read reads[FX_READS_MAX];
	uint32_t reads_count;
	uint32_t readies_count;
};

struct fixture {
	uint32_t n;
	uint64_t now;
	struct raft_config config; /* Base config; id and seed are set per node. */
	struct raft_conf conf;     /* Bootstrap membership; n voters by default. */
	struct fx_node nodes[FX_NODES_MAX + 1];
	bool cut[FX_NODES_MAX + 1][FX_NODES_MAX + 1]; /* [from][to]: dropped on delivery. */
	struct raft_driver_msg *net;                  /* Deep copies, in the order sent. */
	uint32_t net_count, net_cap;
	uint32_t sent[RAFT_MSG_TYPE_COUNT];      /* Messages put on the network, by type. */
	uint64_t starts;                         /* Engines started: each boot's repair id. */
	uint32_t delivered[RAFT_MSG_TYPE_COUNT]; /* Messages stepped into an engine, by type. */
};

/* Prepare n voters with the default test config; tweak f->config, f->conf and
 * the nodes' boot state, then fx_start(). */
void fx_setup(struct fixture *f, uint32_t n);
void fx_start(struct fixture *f);
/* fx_setup() and fx_start() in one. */
void fx_init(struct fixture *f, uint32_t n);
void fx_deinit(struct fixture *f);

/* Boot node id with a log of count entries whose terms are terms[]; its hard
 * term is the last term (or hard_term if larger); commit is commit. */
void fx_boot_log(struct fixture *f, uint64_t id, const uint64_t *terms, uint32_t count,
		 uint64_t hard_term, uint64_t commit);
/* Crash node id and start it again from its boot state (set it first with
 * fx_boot_log and boot_repair): its pending writes are lost. */
void fx_restart(struct fixture *f, uint64_t id);

/* Boot every node with the same log. */
void fx_boot_log_all(struct fixture *f, const uint64_t *terms, uint32_t count, uint64_t hard_term,
		     uint64_t commit);

struct raft *fx_raft(struct fixture *f, uint64_t id);
struct fx_node *fx_node(struct fixture *f, uint64_t id);

/* Engine calls, each followed by draining the node's readies. */
void fx_tick(struct fixture *f, uint64_t id);
void fx_step(struct fixture *f, uint64_t id, const struct raft_msg *m);
int fx_propose(struct fixture *f, uint64_t id, uint32_t size);
int fx_propose_many(struct fixture *f, uint64_t id, uint32_t count, uint32_t size);
int fx_read(struct fixture *f, uint64_t id, uint64_t context);
int fx_transfer(struct fixture *f, uint64_t id, uint64_t target);
int fx_change(struct fixture *f, uint64_t id, const struct raft_conf *target);
void fx_peer_down(struct fixture *f, uint64_t id, uint64_t node);
void fx_peer_suspect(struct fixture *f, uint64_t id, uint64_t node);
void fx_collect(struct fixture *f, uint64_t id);

/* Time: move the clock by ms, then tick every live node. */
void fx_advance(struct fixture *f, uint64_t ms);
/* Move the clock past the election timeout that freshly started nodes keep
 * their promise to an unknown leader for (see raft_in_lease), without ticking. */
void fx_past_boot(struct fixture *f);
/* peer_down(dead) reached id: make id campaign now if its turn is later. */
void fx_takeover(struct fixture *f, uint64_t id);
/* Run for ms in steps of step_ms: advance, then deliver everything. */
void fx_run(struct fixture *f, uint64_t ms, uint64_t step_ms);

/* Persistence of a held node: make every pending write durable, in order. */
void fx_persist(struct fixture *f, uint64_t id);
/* Hold (true) or auto-persist (false) node id's writes. */
void fx_hold(struct fixture *f, uint64_t id, bool hold);

/* Network. Filters take FX_ANY as a wildcard. */
uint32_t fx_count(const struct fixture *f, uint32_t type, uint64_t from, uint64_t to);
const struct raft_msg *fx_find(const struct fixture *f, uint32_t type, uint64_t from, uint64_t to);
bool fx_deliver(struct fixture *f, uint32_t type, uint64_t from, uint64_t to);
uint32_t fx_deliver_matching(struct fixture *f, uint32_t type, uint64_t from, uint64_t to);
uint32_t fx_deliver_all(struct fixture *f);
uint32_t fx_deliver_round(struct fixture *f); /* Only what is queued now. */
uint32_t fx_drop(struct fixture *f, uint32_t type, uint64_t from, uint64_t to);
/* Queued messages that match and have reject set. */
uint32_t fx_count_rejects(const struct fixture *f, uint32_t type, uint64_t from, uint64_t to);
/* Deliver only (pre)vote requests and responses until none is queued. */
uint32_t fx_deliver_votes(struct fixture *f);
void fx_cut(struct fixture *f, uint64_t a, uint64_t b); /* Both directions. */
void fx_isolate(struct fixture *f, uint64_t id);        /* From everyone. */
void fx_heal(struct fixture *f);

/* Make id the leader by its own election timeout, deliver everything, and
 * check that it won. */
void fx_elect(struct fixture *f, uint64_t id);
/* Fire id's election timer now (moves the clock to its deadline). */
void fx_timeout(struct fixture *f, uint64_t id);

/* A membership of the voters, then the learners, given. */
struct raft_conf fx_conf_of(const uint64_t *voters, uint32_t voters_count, const uint64_t *learners,
			    uint32_t learners_count);

/* A message as a peer would send it, for injection with fx_step(). */
struct raft_msg fx_msg(uint32_t type, uint64_t from, uint64_t to, uint64_t term);

/* Is the read with context among those handed out by id? Its index, or -1. */
int64_t fx_read_index_of(const struct fx_node *node, uint64_t context);

#endif /* TESTS_UNIT_RAFT_FIXTURE_H */
