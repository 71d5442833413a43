/* The linearizability checker (tools/lincheck.h): small histories whose
 * verdict is known by hand, generated ones of a few thousand operations on
 * one key (linearizable by construction, then broken on purpose), and the
 * history file format. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/lincheck.h"

#define P LINCHECK_PENDING

static struct lincheck_op w(uint32_t client, uint64_t key, uint64_t value, uint64_t call,
			    uint64_t ret)
{
	return (struct lincheck_op){.key = key,
				    .value = value,
				    .call_ns = call,
				    .return_ns = ret,
				    .kind = LINCHECK_WRITE,
				    .client = client};
}

static struct lincheck_op r(uint32_t client, uint64_t key, uint64_t value, uint64_t call,
			    uint64_t ret)
{
	return (struct lincheck_op){.key = key,
				    .value = value,
				    .call_ns = call,
				    .return_ns = ret,
				    .kind = LINCHECK_READ,
				    .client = client};
}

/* What the violation callback saw. */
struct seen {
	uint32_t count;
	uint64_t key;
	struct lincheck_op stuck;
	struct lincheck_op window[LINCHECK_WINDOW_MAX];
	uint32_t window_count;
};

static void on_violation(const struct lincheck_violation *v, void *arg)
{
	struct seen *seen = arg;

	if (seen->count++ > 0)
		return;
	seen->key = v->key;
	seen->stuck = v->ops[v->stuck];
	seen->window_count = v->window_count;
	for (uint32_t i = 0; i < v->window_count; i++)
		seen->window[i] = v->ops[v->window[i]];
}

/* Check a history with keys starting absent; returns the violations. */
static uint64_t check(struct lincheck_op *ops, uint64_t count, bool initial_unknown,
		      struct seen *seen, struct lincheck_result *result)
{
	struct lincheck_config config = {.initial_unknown = initial_unknown};
	struct lincheck_result local;

	if (result == NULL)
		result = &local;
	memset(seen, 0, sizeof(*seen));
	assert_int_equal(lincheck_check(ops, count, &config, result, on_violation, seen), 0);
	assert_int_equal(result->undecided, 0);
	assert_int_equal(seen->count, result->violations);
	return result->violations;
}

#define CHECK(ops, unknown, seen) check(ops, sizeof(ops) / sizeof(ops[0]), unknown, seen, NULL)

/* Writes then reads, one after the other: each read sees the last write. */
static void test_sequential_history_is_linearizable(void **state)
{
	struct lincheck_op ops[] = {
	    r(1, 7, LINCHECK_ABSENT, 0, 10),
	    w(1, 7, 1, 20, 30),
	    r(2, 7, 1, 40, 50),
	    w(2, 7, 2, 60, 70),
	    r(1, 7, 2, 80, 90),
	};
	struct seen seen;

	(void)state;
	assert_int_equal(CHECK(ops, false, &seen), 0);
}

/* A read that sees a value overwritten before it was called is stale. */
static void test_stale_read_is_caught(void **state)
{
	struct lincheck_op ops[] = {
	    w(1, 7, 1, 0, 10),
	    w(2, 7, 2, 20, 30),
	    r(3, 7, 1, 40, 50),
	};
	struct seen seen;

	(void)state;
	assert_int_equal(CHECK(ops, false, &seen), 1);
	assert_int_equal(seen.key, 7);
	assert_int_equal(seen.stuck.kind, LINCHECK_READ);
	assert_int_equal(seen.stuck.value, 1);
	/* The window: the write it read, the one that overwrote it before the
	 * read was called, and the read. */
	assert_int_equal(seen.window_count, 3);
	assert_int_equal(seen.window[0].value, 1);
	assert_int_equal(seen.window[1].value, 2);
	assert_int_equal(seen.window[2].client, 3);
}

/* An acknowledged write that a later read does not see was lost. */
static void test_lost_write_is_caught(void **state)
{
	struct lincheck_op ops[] = {
	    w(1, 7, 1, 0, 10),
	    r(2, 7, LINCHECK_ABSENT, 20, 30),
	    w(3, 7, 3, 25, 35),
	    w(4, 7, 4, 40, 50),
	};
	struct seen seen;

	(void)state;
	assert_int_equal(CHECK(ops, false, &seen), 1);
	assert_int_equal(seen.stuck.client, 2);
	/* The window: the write before it, the read, the write concurrent
	 * with it; not the write after it. */
	assert_int_equal(seen.window_count, 3);
	assert_int_equal(seen.window[0].client, 1);
	assert_int_equal(seen.window[1].client, 2);
	assert_int_equal(seen.window[2].client, 3);
}

/* A value that no write wrote cannot be read, neither from a fresh key nor
 * after a write. */
static void test_read_of_a_value_never_written_is_caught(void **state)
{
	struct lincheck_op fresh[] = {r(1, 7, 99, 0, 10)};
	struct lincheck_op later[] = {w(1, 7, 1, 0, 10), r(2, 7, LINCHECK_FOREIGN | 5, 20, 30)};
	struct seen seen;

	(void)state;
	assert_int_equal(CHECK(fresh, false, &seen), 1);
	assert_int_equal(seen.stuck.value, 99);
	assert_int_equal(CHECK(later, false, &seen), 1);
	/* Even when keys may hold older values, a write hid them already. */
	assert_int_equal(CHECK(later, true, &seen), 1);
}

/* Concurrent operations may take effect in either order: a read overlapping
 * a write sees the old or the new value, and of two overlapping writes
 * either may be the last. */
static void test_concurrent_operations_fit_either_order(void **state)
{
	struct lincheck_op old_value[] = {w(1, 7, 1, 0, 10), w(2, 7, 2, 20, 60),
					  r(3, 7, 1, 30, 40)};
	struct lincheck_op new_value[] = {w(1, 7, 1, 0, 10), w(2, 7, 2, 20, 60),
					  r(3, 7, 2, 30, 40)};
	struct lincheck_op first_last[] = {w(1, 7, 1, 0, 50), w(2, 7, 2, 0, 50),
					   r(3, 7, 1, 60, 70)};
	struct lincheck_op second_last[] = {w(1, 7, 1, 0, 50), w(2, 7, 2, 0, 50),
					    r(3, 7, 2, 60, 70)};
	/* Both reads overlap both writes, but they disagree in an impossible way:
	 * one sees 2 then 1, the other 1 then 2, in real time order. */
	struct lincheck_op flip_flop[] = {w(1, 7, 1, 0, 100), w(2, 7, 2, 0, 100),
					  r(3, 7, 2, 10, 20), r(3, 7, 1, 30, 40),
					  r(4, 7, 2, 50, 60), r(4, 7, 1, 70, 80)};
	/* Calls and returns at the same instant may still overlap. */
	struct lincheck_op touching[] = {w(1, 7, 1, 0, 10), r(2, 7, 1, 10, 20)};
	struct seen seen;

	(void)state;
	assert_int_equal(CHECK(old_value, false, &seen), 0);
	assert_int_equal(CHECK(new_value, false, &seen), 0);
	assert_int_equal(CHECK(first_last, false, &seen), 0);
	assert_int_equal(CHECK(second_last, false, &seen), 0);
	assert_int_equal(CHECK(touching, false, &seen), 0);
	assert_int_equal(CHECK(flip_flop, false, &seen), 1);
}

/* A write of unknown outcome may have taken effect at any time after its
 * call, or never; but not before it was called. */
static void test_pending_writes_may_or_may_not_take_effect(void **state)
{
	struct lincheck_op took_effect[] = {w(1, 7, 1, 0, P), w(2, 7, 2, 10, 20),
					    r(3, 7, 1, 1000, 1010)};
	struct lincheck_op never[] = {w(1, 7, 1, 0, P), w(2, 7, 2, 10, 20), r(3, 7, 2, 1000, 1010)};
	struct lincheck_op before_call[] = {r(3, 7, 1, 0, 10), w(1, 7, 1, 20, P)};
	/* Seen once, it stays until overwritten: a later read cannot go back. */
	struct lincheck_op undone[] = {w(2, 7, 2, 0, 5), w(1, 7, 1, 10, P), r(3, 7, 1, 20, 30),
				       r(3, 7, 2, 40, 50)};
	struct lincheck_result result;
	struct seen seen;

	(void)state;
	assert_int_equal(CHECK(took_effect, false, &seen), 0);
	assert_int_equal(check(never, 3, false, &seen, &result), 0);
	assert_int_equal(result.pending_count, 1);
	assert_int_equal(result.dropped_count, 1); /* No read saw it. */
	assert_int_equal(CHECK(before_call, false, &seen), 1);
	assert_int_equal(CHECK(undone, false, &seen), 1);
	/* The window holds the whole story: 2 written, 1 seen, 2 seen again. */
	assert_int_equal(seen.window_count, 4);
}

/* A read of unknown outcome says nothing, whatever value it carries. */
static void test_pending_reads_are_ignored(void **state)
{
	struct lincheck_op ops[] = {w(1, 7, 1, 0, 10), r(2, 7, 12345, 20, P), r(2, 7, 1, 30, 40)};
	struct lincheck_result result;
	struct seen seen;

	(void)state;
	assert_int_equal(check(ops, 3, false, &seen, &result), 0);
	assert_int_equal(result.dropped_count, 1);
}

/* When keys may hold values from before, reads may see one such value until
 * a write takes effect, but only one. */
static void test_unknown_initial_value_is_one_value(void **state)
{
	uint64_t old = LINCHECK_FOREIGN | 42, other = LINCHECK_FOREIGN | 43;
	struct lincheck_op ok[] = {r(1, 7, old, 0, 10), r(2, 7, old, 20, 30), w(1, 7, 1, 40, 50),
				   r(2, 7, 1, 60, 70)};
	struct lincheck_op two[] = {r(1, 7, old, 0, 10), r(2, 7, other, 20, 30)};
	struct seen seen;

	(void)state;
	assert_int_equal(CHECK(ok, true, &seen), 0);
	assert_int_equal(CHECK(two, true, &seen), 1);
	assert_int_equal(CHECK(ok, false, &seen), 1); /* A fresh key holds nothing. */
}

/* Keys are checked one by one: a history fine on each key is fine, and a
 * violation names its key. */
static void test_keys_are_independent(void **state)
{
	struct lincheck_op ops[] = {
	    w(1, 1, 1, 0, 10),  w(1, 2, 2, 5, 15),  r(2, 1, 1, 20, 30),
	    r(2, 2, 2, 20, 30), w(3, 3, 3, 40, 50), r(3, 3, LINCHECK_ABSENT, 60, 70),
	};
	struct lincheck_result result;
	struct seen seen;

	(void)state;
	assert_int_equal(check(ops, 6, false, &seen, &result), 1);
	assert_int_equal(result.keys_count, 3);
	assert_int_equal(seen.key, 3);
}

/* Histories that are not well formed are refused. */
static void test_malformed_histories_are_refused(void **state)
{
	struct lincheck_op twice[] = {w(1, 7, 1, 0, 10), w(2, 7, 1, 20, 30)};
	struct lincheck_op backwards[] = {w(1, 7, 1, 10, 5)};
	struct lincheck_op absent[] = {w(1, 7, LINCHECK_ABSENT, 0, 10)};
	struct lincheck_op foreign[] = {w(1, 7, LINCHECK_FOREIGN | 1, 0, 10)};
	struct lincheck_config config = {0};
	struct lincheck_result result;

	(void)state;
	assert_int_equal(lincheck_check(twice, 2, &config, &result, NULL, NULL), -EINVAL);
	assert_int_equal(lincheck_check(backwards, 1, &config, &result, NULL, NULL), -EINVAL);
	assert_int_equal(lincheck_check(absent, 1, &config, &result, NULL, NULL), -EINVAL);
	assert_int_equal(lincheck_check(foreign, 1, &config, &result, NULL, NULL), -EINVAL);
	assert_int_equal(lincheck_check(NULL, 0, &config, &result, NULL, NULL), 0);
	assert_int_equal(result.keys_count, 0);
}

/* --- Generated histories. --- */

static uint64_t rng_state = 1;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct gen_op {
	struct lincheck_op op;
	uint64_t at_ns; /* When it takes effect; UINT64_MAX: never. */
};

static int gen_cmp(const void *a, const void *b)
{
	const struct gen_op *x = a, *y = b;

	return (x->at_ns > y->at_ns) - (x->at_ns < y->at_ns);
}

/* A linearizable history of count operations on one key by clients
 * concurrent clients: each operation takes effect at a random instant of
 * its interval, and reads see what the writes so far left. About 2% of the
 * operations end with unknown outcome, half of those writes never taking
 * effect. */
static struct lincheck_op *gen_history(uint32_t count, uint32_t clients, uint64_t seed)
{
	struct gen_op *gen = calloc(count, sizeof(*gen));
	struct lincheck_op *ops = calloc(count, sizeof(*ops));
	uint64_t next_call[64] = {0}, value = 0, next_value = 1;

	assert_true(gen != NULL && ops != NULL && clients <= 64);
	rng_state = seed;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t c = (uint32_t)(rng() % clients);
		uint64_t call = next_call[c], duration = 1 + rng() % 50;
		struct gen_op *g = &gen[i];

		g->op = (struct lincheck_op){
		    .key = 9, .call_ns = call, .return_ns = call + duration, .client = c};
		g->op.kind = rng() % 2 == 0 ? LINCHECK_WRITE : LINCHECK_READ;
		if (g->op.kind == LINCHECK_WRITE)
			g->op.value = next_value++;
		g->at_ns = call + rng() % (duration + 1);
		if (rng() % 50 == 0) {
			g->op.return_ns = LINCHECK_PENDING;
			if (g->op.kind == LINCHECK_WRITE && rng() % 2 == 0)
				g->at_ns = UINT64_MAX;
		}
		next_call[c] = call + duration + rng() % 5;
	}
	qsort(gen, count, sizeof(*gen), gen_cmp);
	for (uint32_t i = 0; i < count; i++) {
		if (gen[i].at_ns == UINT64_MAX)
			continue;
		if (gen[i].op.kind == LINCHECK_WRITE)
			value = gen[i].op.value;
		else
			gen[i].op.value = value;
	}
	for (uint32_t i = 0; i < count; i++)
		ops[i] = gen[i].op;
	free(gen);
	return ops;
}

/* Thousands of operations on one key by 8, then 32 concurrent clients, with
 * pending ones: linearizable, and decided within the default memory bound. */
static void test_generated_history_is_linearizable(void **state)
{
	static const uint32_t clients[] = {8, 32};
	struct lincheck_result result;
	struct seen seen;

	(void)state;
	for (uint64_t seed = 1; seed <= 6; seed++) {
		struct lincheck_op *ops = gen_history(4000, clients[seed % 2], seed);

		assert_int_equal(check(ops, 4000, false, &seen, &result), 0);
		assert_int_equal(result.keys_count, 1);
		assert_true(result.pending_count > 0);
		assert_true(result.ops_max_per_key > 3800);
		free(ops);
	}
}

/* The same history with one read made stale: it sees a write that another
 * write had overwritten before the read was called. */
static void test_generated_history_with_a_stale_read_is_caught(void **state)
{
	struct lincheck_op *ops = gen_history(4000, 8, 7);
	struct seen seen;
	uint32_t older = UINT32_MAX, newer = UINT32_MAX, read = UINT32_MAX;
	uint64_t ops_value_of_older;

	(void)state;
	/* ops are in effect order: find completed writes older, then newer,
	 * each over before the next begins, then a read called after both. */
	for (uint32_t i = 0; i < 4000 && read == UINT32_MAX; i++) {
		const struct lincheck_op *op = &ops[i];

		if (op->return_ns == P)
			continue;
		if (op->kind == LINCHECK_WRITE && older == UINT32_MAX)
			older = i;
		else if (op->kind == LINCHECK_WRITE && newer == UINT32_MAX &&
			 op->call_ns > ops[older].return_ns)
			newer = i;
		else if (op->kind == LINCHECK_READ && newer != UINT32_MAX &&
			 op->call_ns > ops[newer].return_ns && i > 2000)
			read = i;
	}
	assert_int_not_equal(read, UINT32_MAX);
	ops_value_of_older = ops[older].value;
	ops[read].value = ops_value_of_older;
	assert_int_equal(check(ops, 4000, false, &seen, NULL), 1);
	assert_int_equal(seen.stuck.kind, LINCHECK_READ);
	assert_int_equal(seen.stuck.value, ops_value_of_older);
	free(ops);
}

/* The same history without one acknowledged write that a read saw: the read
 * now sees a value nobody wrote. */
static void test_generated_history_missing_a_write_is_caught(void **state)
{
	struct lincheck_op *ops = gen_history(4000, 8, 11);
	struct seen seen;
	uint64_t seen_value = 0;
	uint32_t n = 0;

	(void)state;
	for (uint32_t i = 2000; i < 4000 && seen_value == 0; i++)
		if (ops[i].kind == LINCHECK_READ && ops[i].return_ns != P && ops[i].value != 0)
			seen_value = ops[i].value;
	assert_int_not_equal(seen_value, 0);
	for (uint32_t i = 0; i < 4000; i++)
		if (!(ops[i].kind == LINCHECK_WRITE && ops[i].value == seen_value))
			ops[n++] = ops[i];
	assert_int_equal(n, 3999);
	assert_int_equal(check(ops, n, false, &seen, NULL), 1);
	assert_int_equal(seen.stuck.value, seen_value);
	free(ops);
}

/* A cache too small for the search leaves the key undecided, not wrong. */
static void test_small_cache_leaves_key_undecided(void **state)
{
	struct lincheck_op *ops = gen_history(4000, 8, 1);
	struct lincheck_config config = {.cache_size_max = 64 << 10};
	struct lincheck_result result;

	(void)state;
	assert_int_equal(lincheck_check(ops, 4000, &config, &result, NULL, NULL), 0);
	assert_int_equal(result.undecided, 1);
	assert_int_equal(result.violations, 0);
	free(ops);
}

/* --- Against brute force. --- */

#define BRUTE_OPS_MAX 7

struct brute {
	const struct lincheck_op *ops;
	uint32_t count;
	bool initial_unknown;
	bool included[BRUTE_OPS_MAX];
	bool placed[BRUTE_OPS_MAX];
};

static bool brute_is_written(const struct brute *b, uint64_t value)
{
	for (uint32_t i = 0; i < b->count; i++)
		if (b->ops[i].kind == LINCHECK_WRITE && b->ops[i].value == value)
			return true;
	return false;
}

/* Whether the included operations not placed yet can follow, in some order
 * that keeps real time, a register holding state (unknown: UINT64_MAX). */
static bool brute_extend(struct brute *b, uint64_t state, uint32_t left)
{
	if (left == 0)
		return true;
	for (uint32_t i = 0; i < b->count; i++) {
		const struct lincheck_op *op = &b->ops[i];
		uint64_t after = state;
		bool ready = b->included[i] && !b->placed[i], ok;

		/* Every included operation that returned before it was called
		 * must be placed already. */
		for (uint32_t j = 0; j < b->count && ready; j++)
			if (b->included[j] && !b->placed[j] && j != i &&
			    b->ops[j].return_ns < op->call_ns)
				ready = false;
		if (!ready)
			continue;
		if (op->kind == LINCHECK_WRITE)
			after = op->value;
		else if (state == UINT64_MAX && !brute_is_written(b, op->value))
			after = op->value;
		else if (state != op->value)
			continue;
		b->placed[i] = true;
		ok = brute_extend(b, after, left - 1);
		b->placed[i] = false;
		if (ok)
			return true;
	}
	return false;
}

/* Linearizable iff for some choice of the pending writes that took effect,
 * some order of the operations works. */
static bool brute_is_linearizable(const struct lincheck_op *ops, uint32_t count,
				  bool initial_unknown)
{
	struct brute b = {.ops = ops, .count = count, .initial_unknown = initial_unknown};
	uint32_t pending[BRUTE_OPS_MAX], pending_count = 0;

	for (uint32_t i = 0; i < count; i++) {
		b.included[i] = ops[i].return_ns != P;
		if (ops[i].return_ns == P && ops[i].kind == LINCHECK_WRITE)
			pending[pending_count++] = i;
	}
	for (uint32_t mask = 0; mask < (1u << pending_count); mask++) {
		uint32_t left = 0;

		for (uint32_t j = 0; j < pending_count; j++)
			b.included[pending[j]] = (mask >> j) & 1;
		for (uint32_t i = 0; i < count; i++)
			left += b.included[i];
		if (brute_extend(&b, initial_unknown ? UINT64_MAX : LINCHECK_ABSENT, left))
			return true;
	}
	return false;
}

/* Thousands of small random histories, with ties, overlaps, pending
 * operations, stale and foreign values: the checker and an exhaustive
 * search agree on every one. */
static void test_agrees_with_brute_force(void **state)
{
	uint32_t agreed[2] = {0};

	(void)state;
	rng_state = 42;
	for (uint32_t round = 0; round < 6000; round++) {
		struct lincheck_op ops[BRUTE_OPS_MAX], copy[BRUTE_OPS_MAX];
		uint32_t count = 1 + (uint32_t)(rng() % BRUTE_OPS_MAX), writes = 0;
		bool unknown = round % 3 == 0, expected;
		struct lincheck_config config = {.initial_unknown = unknown};
		struct lincheck_result result;

		for (uint32_t i = 0; i < count; i++) {
			uint64_t call = rng() % 12, length = rng() % 6;

			ops[i] = (struct lincheck_op){
			    .key = 1, .call_ns = call, .return_ns = call + length, .client = i};
			ops[i].kind = rng() % 2 ? LINCHECK_WRITE : LINCHECK_READ;
			if (ops[i].kind == LINCHECK_WRITE)
				ops[i].value = ++writes;
			if (rng() % 6 == 0)
				ops[i].return_ns = P;
		}
		for (uint32_t i = 0; i < count; i++) {
			uint64_t pick = rng() % (writes + 3);

			if (ops[i].kind == LINCHECK_WRITE)
				continue;
			ops[i].value = pick < writes        ? pick + 1
				       : pick == writes     ? LINCHECK_ABSENT
				       : pick == writes + 1 ? (LINCHECK_FOREIGN | 1)
							    : (LINCHECK_FOREIGN | 2);
		}
		memcpy(copy, ops, sizeof(ops));
		expected = brute_is_linearizable(ops, count, unknown);
		assert_int_equal(lincheck_check(copy, count, &config, &result, NULL, NULL), 0);
		if ((result.violations == 0) != expected) {
			for (uint32_t i = 0; i < count; i++) {
				char line[LINCHECK_LINE_SIZE_MAX];

				lincheck_format(&ops[i], line);
				print_message("%s", line);
			}
			fail_msg("round %u (initial %s): brute force says %s", round,
				 unknown ? "unknown" : "absent", expected ? "yes" : "no");
		}
		agreed[expected]++;
	}
	/* Both verdicts came up often. */
	assert_true(agreed[0] > 1000 && agreed[1] > 1000);
}

/* --- History files. --- */

/* Every kind of operation survives a round trip through its line. */
static void test_format_and_parse_round_trip(void **state)
{
	struct lincheck_op ops[] = {
	    w(3, 17, 0x1234abcd, 100, 200),
	    w(4, 18, 5, 100, P),
	    r(5, 19, LINCHECK_ABSENT, 1, 2),
	    r(6, 20, LINCHECK_FOREIGN | 0x77, 1, 2),
	    r(UINT32_MAX, UINT64_MAX, 9, UINT64_MAX - 2, UINT64_MAX - 1),
	};
	char line[LINCHECK_LINE_SIZE_MAX];
	struct lincheck_op back;

	(void)state;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		assert_true(lincheck_format(&ops[i], line) < LINCHECK_LINE_SIZE_MAX);
		assert_int_equal(lincheck_parse(line, &back), 0);
		assert_memory_equal(&back, &ops[i], sizeof(back));
	}
	ops[0] = r(1, 2, 3, 4, P);
	lincheck_format(&ops[0], line);
	assert_string_equal(line, "1 2 r ? 4 ?\n");
	assert_int_equal(lincheck_parse(line, &back), 0);
	assert_int_equal(back.return_ns, P);
}

/* Malformed lines are refused, never half read. */
static void test_malformed_lines_are_refused(void **state)
{
	static const char *const bad[] = {
	    "",
	    "1 2 w 3 4",
	    "1 2 w 3 4 5 6",
	    "1 2 x 3 4 5",
	    "1 2 w absent 4 5",
	    "1 2 w ? 4 5",
	    "1 2 r ? 4 5",
	    "1 2 r 3 4 ?x",
	    "1 2 r 3 5 4",
	    "1  2 r 3 4 5",
	    "-1 2 r 3 4 5",
	    "1 2 r 3 4 5 ",
	    "4294967296 2 r 3 4 5",
	    "1 18446744073709551616 r 3 4 5",
	    "1 2 r ffffffffffffffff 4 5",
	    "1 2 r fffffffffffffffe 4 5",
	    "1 2 w 8000000000000001 4 5",
	    "1 2 r 3 4 5\n\n",
	};
	struct lincheck_op op;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(lincheck_parse(bad[i], &op), -EINVAL);
}

/* Random lines, mostly made of the characters of real ones: each is refused
 * or read as an operation that prints back as the same operation. */
static void test_random_lines_are_refused_or_round_trip(void **state)
{
	static const char alphabet[] = "0123456789abcdef ?rwx\n\t-absent";
	char line[64], again[LINCHECK_LINE_SIZE_MAX];
	struct lincheck_op op, back;
	uint32_t parsed = 0;

	(void)state;
	rng_state = 5;
	for (uint32_t round = 0; round < 200000; round++) {
		uint32_t length = (uint32_t)(rng() % (sizeof(line) - 1));

		for (uint32_t i = 0; i < length; i++)
			line[i] = rng() % 16 == 0 ? (char)(1 + rng() % 255)
						  : alphabet[rng() % (sizeof(alphabet) - 1)];
		line[length] = '\0';
		if (round % 2 == 0 && length > 12) /* Often well formed up to a point. */
			memcpy(line, "1 2 r 3 4 5", 11);
		if (lincheck_parse(line, &op) != 0)
			continue;
		parsed++;
		lincheck_format(&op, again);
		assert_int_equal(lincheck_parse(again, &back), 0);
		assert_memory_equal(&back, &op, sizeof(op));
	}
	assert_true(parsed > 0);
}

/* A file reads back as written; a bad line is named by its number. */
static void test_history_file_round_trip(void **state)
{
	struct lincheck_op ops[] = {w(1, 7, 1, 0, 10), r(2, 7, 0, 20, P), r(2, 7, 1, 30, 40)};
	struct lincheck_op *back = NULL;
	char line[LINCHECK_LINE_SIZE_MAX];
	uint64_t count = 0, bad_line = 0;
	FILE *f = tmpfile();

	(void)state;
	assert_non_null(f);
	fputs(LINCHECK_FILE_HEADER, f);
	for (size_t i = 0; i < 3; i++) {
		lincheck_format(&ops[i], line);
		fputs(line, f);
	}
	rewind(f);
	assert_int_equal(lincheck_read_file(f, &back, &count, &bad_line), 0);
	assert_int_equal(count, 3);
	assert_memory_equal(back, ops, sizeof(ops));
	free(back);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	fputs("\n1 2 r 3 4 oops\n", f);
	rewind(f);
	assert_int_equal(lincheck_read_file(f, &back, &count, &bad_line), -EINVAL);
	assert_int_equal(bad_line, 6);
	fclose(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sequential_history_is_linearizable),
	    cmocka_unit_test(test_stale_read_is_caught),
	    cmocka_unit_test(test_lost_write_is_caught),
	    cmocka_unit_test(test_read_of_a_value_never_written_is_caught),
	    cmocka_unit_test(test_concurrent_operations_fit_either_order),
	    cmocka_unit_test(test_pending_writes_may_or_may_not_take_effect),
	    cmocka_unit_test(test_pending_reads_are_ignored),
	    cmocka_unit_test(test_unknown_initial_value_is_one_value),
	    cmocka_unit_test(test_keys_are_independent),
	    cmocka_unit_test(test_malformed_histories_are_refused),
	    cmocka_unit_test(test_generated_history_is_linearizable),
	    cmocka_unit_test(test_generated_history_with_a_stale_read_is_caught),
	    cmocka_unit_test(test_generated_history_missing_a_write_is_caught),
	    cmocka_unit_test(test_small_cache_leaves_key_undecided),
	    cmocka_unit_test(test_agrees_with_brute_force),
	    cmocka_unit_test(test_format_and_parse_round_trip),
	    cmocka_unit_test(test_malformed_lines_are_refused),
	    cmocka_unit_test(test_random_lines_are_refused_or_round_trip),
	    cmocka_unit_test(test_history_file_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
