/* Crash test: a child process appends to a WAL and reports, over a pipe,
 * every operation before it can reach the disk and every durable batch once
 * it is durable. The parent kills the child with SIGKILL at a random moment,
 * reopens the WAL and checks that what recovered is exactly the state after
 * some prefix of the operations issued, and that this prefix includes every
 * operation reported durable: nothing acknowledged is missing, damaged or
 * out of order, and nothing appears that was never written.
 *
 * The child uses small segments and compacts, so recovery also meets
 * recycled segment files, rewritten groups and deleted segments.
 *
 * Usage: test_io_wal_crash [--kills=N] [--seed=S]  (FLOTILLA_CRASH_KILLS too) */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "io/wal.h"
#include "tests/io/io_test.h"

#define GROUPS      16
#define WINDOW      4096 /* Live entries per group stay below this. */
#define LIVE_MAX    1500 /* The child compacts past this many live entries. */
#define PAYLOAD_MAX 200
#define OPS_MAX     (1u << 16)

enum crash_msg_kind {
	CRASH_MSG_OP = 1,
	CRASH_MSG_DURABLE = 2,
};

enum crash_op_type {
	CRASH_OP_ENTRIES = 1,
	CRASH_OP_HARD,
	CRASH_OP_MARK,
	CRASH_OP_REMOVED,
};

/* One message on the pipe: 64 bytes, written atomically. */
struct crash_msg {
	uint32_t kind;
	uint32_t type;
	uint64_t batch; /* OP: the batch holding its last record. DURABLE: the batch. */
	uint64_t group;
	uint64_t index; /* ENTRIES: first index; MARK: index. HARD: vote. */
	uint64_t count; /* ENTRIES: count. HARD: commit. */
	uint64_t term;
	uint64_t pad[2];
};

static_assert(sizeof(struct crash_msg) == 64, "messages are 64 bytes");

/* The expected state of one group. */
struct model_group {
	bool removed;
	uint64_t first, last, mark_index, mark_term;
	bool has_hard;
	struct wal_hard hard;
	uint64_t terms[WINDOW]; /* Term of index i at terms[i % WINDOW]. */
};

struct model {
	struct model_group groups[GROUPS];
};

static const struct wal_config *crash_config(void)
{
	static struct wal_config config;

	wal_config_default(&config);
	config.segment_size = 256u << 10;
	config.batch_size_max = 16u << 10;
	config.buffers_count = 8;
	config.spares_max = 2;
	config.segments_soft_max = 4;
	config.rewrite_size_max = 8u << 10;
	config.direct_io = getenv("FLOTILLA_WAL_DIRECT") != NULL;
	return &config;
}

static void model_reset_group(struct model_group *g)
{
	memset(g, 0, sizeof(*g));
	g->first = 1;
}

static bool model_term_at(const struct model_group *g, uint64_t index, uint64_t *term)
{
	if (index == g->mark_index && index + 1 == g->first) {
		*term = g->mark_term;
		return true;
	}
	if (index < g->first || index > g->last)
		return false;
	*term = g->terms[index % WINDOW];
	return true;
}

/* Apply an operation, or only its first `partial` entries if partial > 0.
 * An independent statement of the WAL's log rules. */
static void model_apply(struct model *m, const struct crash_msg *op, uint64_t partial)
{
	struct model_group *g = &m->groups[op->group];
	uint64_t count = partial ? partial : op->count, at;

	if (op->type != CRASH_OP_REMOVED)
		g->removed = false;
	switch (op->type) {
	case CRASH_OP_ENTRIES:
		for (uint64_t i = 0; i < count; i++)
			g->terms[(op->index + i) % WINDOW] = op->term;
		g->last = op->index + count - 1;
		break;
	case CRASH_OP_HARD:
		g->has_hard = true;
		g->hard =
		    (struct wal_hard){.term = op->term, .vote = op->index, .commit = op->count};
		break;
	case CRASH_OP_MARK:
		if (model_term_at(g, op->index, &at) && at == op->term) {
			if (g->last < op->index)
				g->last = op->index;
		} else {
			g->last = op->index;
		}
		g->first = op->index + 1;
		g->mark_index = op->index;
		g->mark_term = op->term;
		break;
	case CRASH_OP_REMOVED:
		model_reset_group(g);
		g->removed = true;
		break;
	default:
		abort();
	}
}

static bool model_group_is_empty(const struct model_group *g)
{
	return g->last == 0 && g->mark_index == 0 && !g->has_hard;
}

/* Does the recovered WAL hold exactly this model's state (terms included)? */
static bool model_matches(const struct model *m, const struct wal *wal)
{
	for (uint64_t group = 0; group < GROUPS; group++) {
		const struct model_group *mg = &m->groups[group];
		const struct wal_group *g = wal_group_find(wal, group);

		if (g == NULL || g->removed) {
			if (!model_group_is_empty(mg))
				return false;
			continue;
		}
		if (g->first_index != mg->first || g->last_index != mg->last ||
		    g->mark_index != mg->mark_index || g->mark_term != mg->mark_term ||
		    g->has_hard != mg->has_hard)
			return false;
		if (g->has_hard &&
		    (g->hard.term != mg->hard.term || g->hard.vote != mg->hard.vote ||
		     g->hard.commit != mg->hard.commit || g->hard.repairing != mg->hard.repairing))
			return false;
		for (uint64_t i = mg->first; i <= mg->last; i++) {
			uint64_t term;

			if (wal_term(wal, group, i, &term) != 0 || term != mg->terms[i % WINDOW])
				return false;
		}
	}
	return true;
}

/* Read every live entry back and compare its bytes. */
static bool model_check_payloads(const struct model *m, struct wal *wal)
{
	uint8_t expect[PAYLOAD_MAX];

	for (uint64_t group = 0; group < GROUPS; group++) {
		const struct model_group *mg = &m->groups[group];
		uint64_t index = mg->first;

		while (index <= mg->last) {
			struct wal_read read;
			int rv = wal_read_sync(wal, &read, group, index, mg->last, 1u << 20);

			if (rv != 0 || read.entries_count == 0) {
				fprintf(stderr, "read group %" PRIu64 " at %" PRIu64 ": %s %s\n",
					group, index, err_str(rv), wal_why(wal));
				wal_read_release(&read);
				return false;
			}
			for (uint32_t i = 0; i < read.entries_count; i++, index++) {
				uint64_t term = mg->terms[index % WINDOW];
				uint32_t size =
				    io_test_payload(group, index, term, PAYLOAD_MAX, expect);
				const struct wal_entry *e = &read.entries[i];

				if (e->term != term || e->size != size ||
				    memcmp(e->data, expect, size) != 0) {
					fprintf(stderr,
						"group %" PRIu64 " index %" PRIu64 " differs\n",
						group, index);
					wal_read_release(&read);
					return false;
				}
			}
			wal_read_release(&read);
		}
	}
	return true;
}

/* The child */

struct child {
	struct loop loop;
	struct wal wal;
	int out;
	uint64_t rng;
	uint8_t scratch[64 * PAYLOAD_MAX];
};

static void child_send(struct child *c, const struct crash_msg *msg)
{
	const char *p = (const char *)msg;
	size_t left = sizeof(*msg);

	while (left > 0) {
		ssize_t n = write(c->out, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(3);
		p += n;
		left -= (size_t)n;
	}
}

static void child_durable(struct wal *wal, uint64_t batch, int rv)
{
	struct child *c = (struct child *)(void *)((char *)wal - offsetof(struct child, wal));
	struct crash_msg msg = {.kind = CRASH_MSG_DURABLE, .batch = batch};

	if (rv != 0)
		_exit(4);
	child_send(c, &msg);
}

/* Run an append until it is not refused for lack of buffers. */
static void child_retry(struct child *c, int rv)
{
	if (rv != 0) {
		fprintf(stderr, "child append: %s: %s\n", err_str(rv), wal_why(&c->wal));
		_exit(5);
	}
}

static int child_entries(struct child *c, uint64_t group, uint64_t first, uint32_t n, uint64_t term)
{
	struct wal_entry entries[64];
	uint8_t *p = c->scratch;

	for (uint32_t i = 0; i < n; i++) {
		entries[i].term = term;
		entries[i].type = 0;
		entries[i].data = p;
		entries[i].size = io_test_payload(group, first + i, term, PAYLOAD_MAX, p);
		p += entries[i].size;
	}
	return wal_append_entries(&c->wal, group, first, entries, n);
}

/* One random operation on one group. Reports it before anything is
 * submitted: the pipe then always knows more than the disk. */
static void child_op(struct child *c)
{
	uint64_t group = io_test_rand(&c->rng) % GROUPS, r = io_test_rand(&c->rng) % 100;
	const struct wal_group *g = wal_group_find(&c->wal, group);
	bool live = g != NULL && !g->removed;
	uint64_t first = live ? g->first_index : 1, last = live ? g->last_index : 0;
	uint64_t mark = live ? g->mark_index : 0, term = 1;
	struct crash_msg msg = {.kind = CRASH_MSG_OP, .group = group};
	int rv;

	if (live && last >= first)
		wal_term(&c->wal, group, last, &term);
	else if (live)
		term = g->mark_term ? g->mark_term : 1;
	if (last - mark > LIVE_MAX)
		r = 90; /* Compact: keeps the model's window small. */
	if (r < 75 || (r < 83 && last < first)) {
		msg.type = CRASH_OP_ENTRIES;
		msg.index = last + 1;
		msg.term = term;
	} else if (r < 83) {
		/* A follower replacing a conflicting suffix with a newer term. */
		uint64_t back = io_test_rand(&c->rng) % 4;

		msg.type = CRASH_OP_ENTRIES;
		msg.index = last >= first + back ? last - back : first;
		msg.term = term + 1;
	} else if (r < 88) {
		msg.type = CRASH_OP_HARD;
		msg.term = term + io_test_rand(&c->rng) % 2;
		msg.index = io_test_rand(&c->rng) % 5; /* vote */
		msg.count = last;                      /* commit */
	} else if (r < 97 && last > mark) {
		msg.type = CRASH_OP_MARK;
		msg.index = mark + 1 + io_test_rand(&c->rng) % (last - mark);
		wal_term(&c->wal, group, msg.index, &msg.term);
	} else if (r < 99) {
		/* A snapshot from a leader that replaces the log. */
		msg.type = CRASH_OP_MARK;
		msg.index = last + 1 + io_test_rand(&c->rng) % 10;
		msg.term = term + 1;
	} else {
		msg.type = CRASH_OP_REMOVED;
	}
	if (msg.type == CRASH_OP_ENTRIES)
		msg.count = 1 + io_test_rand(&c->rng) % 12;
	for (int tries = 0;; tries++) {
		if (msg.type == CRASH_OP_ENTRIES)
			rv = child_entries(c, group, msg.index, (uint32_t)msg.count, msg.term);
		else if (msg.type == CRASH_OP_HARD)
			rv = wal_append_hard(&c->wal, group,
					     &(struct wal_hard){.term = msg.term,
								.vote = msg.index,
								.commit = msg.count});
		else if (msg.type == CRASH_OP_MARK)
			rv = wal_append_mark(&c->wal, group, msg.index, msg.term);
		else
			rv = wal_append_removed(&c->wal, group);
		if (rv != -EAGAIN || tries > 1000)
			break;
		wal_flush(&c->wal);
		loop_run(&c->loop, 1);
	}
	child_retry(c, rv);
	msg.batch = wal_position(&c->wal);
	child_send(c, &msg);
}

static void child_run(const char *dir, int out, uint64_t seed)
{
	struct child *c = calloc(1, sizeof(*c));
	struct wal_config config = *crash_config();
	struct wal_pin pins[16];
	uint32_t pins_count;
	int rv;

	c->out = out;
	c->rng = seed | 1;
	io_test_loop_init(&c->loop);
	config.durable_cb = child_durable;
	rv = wal_init(&c->wal, &c->loop, dir, &config);
	if (rv != 0) {
		fprintf(stderr, "child open: %s\n", wal_why(&c->wal));
		_exit(6);
	}
	/* Bounded: the parent kills us long before this ends. */
	for (uint64_t turn = 0; turn < 1000000; turn++) {
		uint64_t ops = 1 + io_test_rand(&c->rng) % 24;

		for (uint64_t i = 0; i < ops; i++)
			child_op(c);
		if (turn % 8 == 0) {
			rv = wal_reclaim(&c->wal, pins, 16, &pins_count);
			if (rv != 0)
				_exit(7);
			for (uint32_t p = 0; p < pins_count; p++) {
				const struct wal_group *g = wal_group_find(&c->wal, pins[p].group);
				struct crash_msg msg = {.kind = CRASH_MSG_OP,
							.type = CRASH_OP_MARK,
							.group = pins[p].group};

				/* A snapshot of the group: compact it to its last entry. */
				if (pins[p].action != WAL_PIN_SNAPSHOT || g == NULL || g->removed ||
				    g->last_index <= g->mark_index)
					continue;
				msg.index = g->last_index;
				wal_term(&c->wal, msg.group, msg.index, &msg.term);
				child_retry(
				    c, wal_append_mark(&c->wal, msg.group, msg.index, msg.term));
				msg.batch = wal_position(&c->wal);
				child_send(c, &msg);
			}
		}
		wal_flush(&c->wal);
		loop_run(&c->loop, 1);
	}
	_exit(0);
}

/* The parent */

struct parent {
	struct model base; /* State after every operation known durable. */
	struct model work;
	struct crash_msg *ops; /* Operations not yet known durable, in order. */
	uint32_t ops_count;
	uint8_t inbuf[64 * 1024];
	size_t inlen;
	uint64_t durable_ops, kills, matched_partial;
};

static void parent_take(struct parent *p, const struct crash_msg *msg)
{
	if (msg->kind == CRASH_MSG_OP) {
		if (p->ops_count == OPS_MAX) {
			fprintf(stderr, "too many pending operations\n");
			exit(1);
		}
		p->ops[p->ops_count++] = *msg;
		return;
	}
	/* Everything in batches up to this one is durable: fold it in. */
	uint32_t n = 0;

	while (n < p->ops_count && p->ops[n].batch <= msg->batch)
		model_apply(&p->base, &p->ops[n++], 0);
	memmove(p->ops, p->ops + n, sizeof(*p->ops) * (p->ops_count - n));
	p->ops_count -= n;
	p->durable_ops += n;
}

/* Read what the pipe has; returns the bytes read (0 at end of file or on
 * timeout). */
static ssize_t parent_read(struct parent *p, int fd, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return 0;
	n = read(fd, p->inbuf + p->inlen, sizeof(p->inbuf) - p->inlen);
	if (n <= 0)
		return 0;
	p->inlen += (size_t)n;
	size_t whole = p->inlen / sizeof(struct crash_msg) * sizeof(struct crash_msg);

	for (size_t at = 0; at < whole; at += sizeof(struct crash_msg)) {
		struct crash_msg msg;

		memcpy(&msg, p->inbuf + at, sizeof(msg));
		parent_take(p, &msg);
	}
	memmove(p->inbuf, p->inbuf + whole, p->inlen - whole);
	p->inlen -= whole;
	return n;
}

/* Find the prefix of pending operations (possibly ending inside an entries
 * operation cut by a batch boundary) that the recovered WAL equals. */
static bool parent_match(struct parent *p, struct wal *wal)
{
	p->work = p->base;
	for (uint32_t k = 0;; k++) {
		if (model_matches(&p->work, wal))
			break;
		if (k == p->ops_count)
			return false;
		if (p->ops[k].type == CRASH_OP_ENTRIES) {
			struct model_group saved = p->work.groups[p->ops[k].group];
			bool found = false;

			for (uint64_t j = 1; j < p->ops[k].count && !found; j++) {
				model_apply(&p->work, &p->ops[k], j);
				found = model_matches(&p->work, wal);
				if (!found)
					p->work.groups[p->ops[k].group] = saved;
			}
			if (found) {
				p->matched_partial++;
				break;
			}
		}
		model_apply(&p->work, &p->ops[k], 0);
	}
	if (!model_check_payloads(&p->work, wal))
		return false;
	p->base = p->work;
	p->ops_count = 0;
	return true;
}

static int parent_round(struct parent *p, const char *dir, uint64_t seed, uint64_t *rng)
{
	struct loop loop;
	struct wal wal;
	int fds[2], status;
	uint64_t wait_ms = 2 + io_test_rand(rng) % 40;
	uint64_t start;
	pid_t pid;
	int rv;

	if (pipe(fds) != 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(fds[0]);
		child_run(dir, fds[1], seed);
	}
	close(fds[1]);
	start = loop_now_ns(NULL);
	while (loop_now_ns(NULL) - start < wait_ms * 1000000)
		parent_read(p, fds[0], 1);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	if (!WIFSIGNALED(status)) {
		fprintf(stderr, "child exited early with status %d\n", WEXITSTATUS(status));
		return -1;
	}
	/* The child is dead: everything it wrote is in the pipe. Read to the
	 * end (bounded: the pipe holds at most its capacity). */
	for (int i = 0; i < 100000 && parent_read(p, fds[0], 100) > 0; i++)
		;
	close(fds[0]);
	p->inlen = 0; /* A torn last message was never a report. */
	p->kills++;

	io_test_loop_init(&loop);
	rv = wal_init(&wal, &loop, dir, crash_config());
	if (rv != 0) {
		fprintf(stderr, "reopen after kill %" PRIu64 ": %s\n", p->kills, wal_why(&wal));
		loop_deinit(&loop);
		return -1;
	}
	rv = parent_match(p, &wal) ? 0 : -1;
	if (rv != 0)
		fprintf(stderr,
			"kill %" PRIu64 ": the recovered WAL is not the state after any prefix of "
			"the operations that includes every durable one (%u pending)\n",
			p->kills, p->ops_count);
	wal_deinit(&wal);
	loop_deinit(&loop);
	return rv;
}

int main(int argc, char **argv)
{
	long kills = io_test_env_long("FLOTILLA_CRASH_KILLS", 200);
	uint64_t seed = (uint64_t)time(NULL), rng;
	struct parent *p = calloc(1, sizeof(*p));
	char dir[256];
	int rv = 0;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--kills=", 8) == 0)
			kills = strtol(argv[i] + 8, NULL, 10);
		else if (strncmp(argv[i], "--seed=", 7) == 0)
			seed = strtoull(argv[i] + 7, NULL, 10);
	}
	printf("crash test: kills=%ld seed=%" PRIu64 "\n", kills, seed);
	fflush(stdout);
	rng = seed | 1;
	p->ops = calloc(OPS_MAX, sizeof(*p->ops));
	for (int g = 0; g < GROUPS; g++)
		model_reset_group(&p->base.groups[g]);
	io_test_mkdtemp(dir, "test_wal_crash");
	{
		/* Fail early (or skip) if io_uring is unavailable. */
		struct loop probe;

		io_test_loop_init(&probe);
		loop_deinit(&probe);
	}
	for (long k = 0; k < kills && rv == 0; k++)
		rv = parent_round(p, dir, io_test_rand(&rng), &rng);
	printf("%s after %" PRIu64 " kills: %" PRIu64 " operations confirmed durable, %" PRIu64
	       " recoveries ended inside an append\n",
	       rv == 0 ? "passed" : "FAILED", p->kills, p->durable_ops, p->matched_partial);
	if (rv != 0)
		printf("reproduce: test_io_wal_crash --kills=%ld --seed=%" PRIu64 "\n", kills,
		       seed);
	else
		io_test_rmtree(dir);
	free(p->ops);
	free(p);
	return rv == 0 ? 0 : 1;
}
