/* The linearizability checker (tools/lincheck.h): one register per key,
 * searched the way of Wing & Gong with Lowe's memoisation.
 *
 * The search for one key, as Lowe describes it: the operations' calls and
 * returns form one list in time order (a call before a return at the same
 * time, which admits more orders and so never reports a false violation).
 * Walking the list from its head, a call is an operation that may take
 * effect now: if the register allows it (a read must see the current value)
 * and the configuration it leads to (the set of operations linearized, the
 * register's value) was never explored, the operation is linearized: its
 * call and return leave the list, the step is pushed on a stack, and the
 * walk starts over from the head. Meeting a return means its operation had
 * to take effect before now and no order placed it: undo the last step and
 * try the next call after it. The history is linearizable when the list is
 * empty, and is not when a return is met with nothing left to undo.
 *
 * Explored configurations live in an open-addressing hash set; the set of
 * operations linearized is a bitset, hashed incrementally (Zobrist: one
 * random word per operation, XORed in and out). Its memory is bounded by
 * config->cache_size_max; a key that needs more is undecided.
 *
 * Which operation to blame: over the whole search, the return met furthest
 * down the time order. No order got past it, so its operation cannot be
 * linearized after all those before it. When that operation is a write kept
 * from taking effect by reads still to see the value it would overwrite,
 * the blame goes to the last called of those reads instead: it came too
 * late. The report shows the blamed operation with those around it that
 * explain it (lincheck_window()). */
#include "tools/lincheck.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define LINCHECK_STATE_UNKNOWN UINT64_MAX       /* The register's initial, unknown value. */
#define LINCHECK_STATE_UNSEEN  (UINT64_MAX - 1) /* The value of a write no read saw. */
#define LINCHECK_NONE          UINT32_MAX

/* One call or return in the time-ordered list. */
struct lincheck_event {
	uint64_t time_ns;
	uint32_t op; /* Local index of its operation. */
	bool is_return;
};

/* An explored configuration: its hash, the register value, and where its
 * bitset lives in the arena. Only the words from the first that is not all
 * ones to the last that is not zero are kept: the operations linearized are
 * nearly always every one up to some point plus a few concurrent ones, so
 * a configuration takes a few words however long the history. */
struct lincheck_slot {
	uint64_t hash;
	uint64_t state;
	uint64_t bits_at;     /* Word offset in the arena + 1; 0: empty slot. */
	uint32_t word_from;   /* Words before it are all ones, from it on as stored, */
	uint32_t words_count; /* and after those all zero. */
};

struct lincheck_cache {
	struct lincheck_slot *slots;
	uint64_t slots_count; /* A power of two. */
	uint64_t used;
	uint64_t *arena;
	uint64_t arena_used, arena_size; /* Words. */
	uint32_t words;                  /* Per bitset, in full. */
	uint64_t size_max;               /* Bytes of slots and arena together. */
};

/* The search of one key: its kept operations and their events. */
struct lincheck_key {
	const struct lincheck_op *ops; /* Sorted history. */
	uint64_t *global;              /* [local op] index into ops. */
	bool *foreign;                 /* [local op] a read of a value no write made. */
	bool *unseen;                  /* [local op] a write whose value no read saw. */
	/* Which value a read saw, as a slot: the local index of its write,
	 * count for the initial value, count + 1 for a value no write made on a
	 * key that starts absent (such a read never fits). A write's slot is
	 * its own index. reads_left[slot]: reads of it not linearized yet. */
	uint32_t *slot;
	uint32_t *reads_left;
	uint64_t *zobrist;             /* [local op] */
	uint32_t count;                /* Kept operations. */
	struct lincheck_event *events; /* 2 count, time order. */
	uint32_t *next, *prev;         /* Over events; head 2 count, tail 2 count + 1. */
	uint32_t *match;               /* [call event] its return event. */
	uint32_t *call_event;          /* [local op] its call event. */
	uint64_t *bits;                /* Operations linearized now. */
};

/* --- The hash set of explored configurations. --- */

static uint64_t lincheck_mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ull;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dull;
	return x ^ (x >> 33);
}

static uint64_t lincheck_cache_hash(uint64_t bits_hash, uint64_t state)
{
	return bits_hash ^ lincheck_mix(state + 0x9e3779b97f4a7c15ull);
}

static int lincheck_cache_init(struct lincheck_cache *c, uint32_t words, uint64_t size_max)
{
	memset(c, 0, sizeof(*c));
	c->words = words;
	c->size_max = size_max;
	c->slots_count = 1024;
	c->slots = calloc(c->slots_count, sizeof(*c->slots));
	c->arena_size = (uint64_t)words + 4096;
	c->arena = malloc(c->arena_size * sizeof(*c->arena));
	if (c->slots == NULL || c->arena == NULL) {
		free(c->slots);
		free(c->arena);
		return -ENOMEM;
	}
	return 0;
}

static void lincheck_cache_deinit(struct lincheck_cache *c)
{
	free(c->slots);
	free(c->arena);
}

static uint64_t lincheck_cache_size(const struct lincheck_cache *c)
{
	return c->slots_count * sizeof(*c->slots) + c->arena_size * sizeof(*c->arena);
}

/* Double the slots and reinsert. Returns 0, -ENOSPC past size_max, -ENOMEM. */
static int lincheck_cache_grow_slots(struct lincheck_cache *c)
{
	uint64_t count = c->slots_count * 2, mask = count - 1;
	struct lincheck_slot *slots;

	if (lincheck_cache_size(c) + c->slots_count * sizeof(*slots) > c->size_max)
		return -ENOSPC;
	slots = calloc(count, sizeof(*slots));
	if (slots == NULL)
		return -ENOMEM;
	for (uint64_t i = 0; i < c->slots_count; i++) {
		uint64_t at = c->slots[i].hash & mask;

		if (c->slots[i].bits_at == 0)
			continue;
		while (slots[at].bits_at != 0)
			at = (at + 1) & mask;
		slots[at] = c->slots[i];
	}
	free(c->slots);
	c->slots = slots;
	c->slots_count = count;
	return 0;
}

static int lincheck_cache_grow_arena(struct lincheck_cache *c, uint64_t need)
{
	uint64_t size = c->arena_size * 2 > need ? c->arena_size * 2 : need;
	uint64_t *arena;

	if (lincheck_cache_size(c) + (size - c->arena_size) * sizeof(*arena) > c->size_max)
		return -ENOSPC;
	arena = realloc(c->arena, size * sizeof(*arena));
	if (arena == NULL)
		return -ENOMEM;
	c->arena = arena;
	c->arena_size = size;
	return 0;
}

/* Add (bits, state) unless present. Returns 1 when added, 0 when it was
 * there already, -ENOSPC when the cache is full, -ENOMEM. */
static int lincheck_cache_add(struct lincheck_cache *c, const uint64_t *bits, uint64_t bits_hash,
			      uint64_t state)
{
	uint64_t hash = lincheck_cache_hash(bits_hash, state), mask, at;
	uint32_t from = 0, to = c->words; /* Words [from, to) are kept. */
	size_t bytes;
	int rv;

	while (from + 1 < c->words && bits[from] == UINT64_MAX)
		from++;
	while (to > from + 1 && bits[to - 1] == 0)
		to--;
	bytes = (to - from) * sizeof(uint64_t);
	if ((c->used + 1) * 4 > c->slots_count * 3 && (rv = lincheck_cache_grow_slots(c)) != 0)
		return rv;
	if (c->arena_used + (to - from) > c->arena_size &&
	    (rv = lincheck_cache_grow_arena(c, c->arena_used + (to - from))) != 0)
		return rv;
	mask = c->slots_count - 1;
	for (at = hash & mask; c->slots[at].bits_at != 0; at = (at + 1) & mask) {
		const struct lincheck_slot *s = &c->slots[at];

		if (s->hash == hash && s->state == state && s->word_from == from &&
		    s->words_count == to - from &&
		    memcmp(c->arena + s->bits_at - 1, bits + from, bytes) == 0)
			return 0;
	}
	memcpy(c->arena + c->arena_used, bits + from, bytes);
	c->slots[at] = (struct lincheck_slot){.hash = hash,
					      .state = state,
					      .bits_at = c->arena_used + 1,
					      .word_from = from,
					      .words_count = to - from};
	c->arena_used += to - from;
	c->used++;
	return 1;
}

/* --- The register. --- */

/* Whether op may take effect on a register holding *state (whose slot is
 * *slot); if so, *state and *slot become the value after it. */
static bool lincheck_step(const struct lincheck_key *k, uint32_t local, uint64_t *state,
			  uint32_t *slot)
{
	const struct lincheck_op *op = &k->ops[k->global[local]];

	if (op->kind == LINCHECK_WRITE) {
		/* Values are never written twice: once overwritten, a value is
		 * gone for good, and so are the reads still to see it. */
		if (k->reads_left[*slot] > 0)
			return false;
		/* Which write no read saw holds the register makes no difference:
		 * one state for them all lets the cache merge their orders. */
		*state = k->unseen[local] ? LINCHECK_STATE_UNSEEN : op->value;
		*slot = local;
		return true;
	}
	if (*state == op->value)
		return true;
	/* An unknown initial value is one no write of this history made (or
	 * absence); the first read to see it pins it down. */
	if (*state == LINCHECK_STATE_UNKNOWN && k->foreign[local]) {
		*state = op->value;
		return true;
	}
	return false;
}

/* --- The list of events. --- */

static int lincheck_event_cmp(const void *a, const void *b)
{
	const struct lincheck_event *x = a, *y = b;

	if (x->time_ns != y->time_ns)
		return x->time_ns < y->time_ns ? -1 : 1;
	if (x->is_return != y->is_return)
		return x->is_return ? 1 : -1; /* Calls first: more orders allowed. */
	return x->op < y->op ? -1 : x->op > y->op;
}

/* Take call event e and its return out of the list. */
static void lincheck_lift(struct lincheck_key *k, uint32_t e)
{
	uint32_t r = k->match[e];

	k->next[k->prev[e]] = k->next[e];
	k->prev[k->next[e]] = k->prev[e];
	k->next[k->prev[r]] = k->next[r];
	k->prev[k->next[r]] = k->prev[r];
}

/* Put them back: the exact reverse of lincheck_lift(), in LIFO order. */
static void lincheck_unlift(struct lincheck_key *k, uint32_t e)
{
	uint32_t r = k->match[e];

	k->prev[k->next[r]] = r;
	k->next[k->prev[r]] = r;
	k->prev[k->next[e]] = e;
	k->next[k->prev[e]] = e;
}

static void lincheck_bit_flip(uint64_t *bits, uint32_t i)
{
	bits[i / 64] ^= UINT64_C(1) << (i % 64);
}

/* Build the time-ordered list of the kept operations' calls and returns. */
static void lincheck_key_link(struct lincheck_key *k)
{
	uint32_t n = k->count, head = 2 * n, tail = 2 * n + 1;

	for (uint32_t i = 0; i < n; i++) {
		const struct lincheck_op *op = &k->ops[k->global[i]];

		k->events[2 * i] = (struct lincheck_event){.time_ns = op->call_ns, .op = i};
		k->events[2 * i + 1] =
		    (struct lincheck_event){.time_ns = op->return_ns, .op = i, .is_return = true};
	}
	if (n > 0)
		qsort(k->events, 2 * (size_t)n, sizeof(*k->events), lincheck_event_cmp);
	for (uint32_t e = 0; e < 2 * n; e++) {
		if (k->events[e].is_return)
			k->match[k->call_event[k->events[e].op]] = e;
		else
			k->call_event[k->events[e].op] = e;
		k->next[e] = e + 1 < 2 * n ? e + 1 : tail;
		k->prev[e] = e > 0 ? e - 1 : head;
	}
	k->next[head] = n > 0 ? 0 : tail;
	k->prev[tail] = n > 0 ? 2 * n - 1 : head;
}

struct lincheck_frame {
	uint32_t event;
	uint32_t slot;
	bool eager; /* Taken by the rule of lincheck_key_search(): no alternative. */
	uint64_t state;
};

/* The register and the explored state of one key during its search. */
struct lincheck_cursor {
	uint64_t state;
	uint32_t slot;
	uint64_t bits_hash;
	uint32_t depth;
};

/* Linearize the operation of call event e, after which the register holds
 * after (in slot after_slot). */
static void lincheck_push(struct lincheck_key *k, struct lincheck_frame *stack,
			  struct lincheck_cursor *c, uint32_t e, bool eager, uint64_t after,
			  uint32_t after_slot)
{
	uint32_t op = k->events[e].op;

	stack[c->depth++] = (struct lincheck_frame){e, c->slot, eager, c->state};
	if (k->ops[k->global[op]].kind == LINCHECK_READ)
		k->reads_left[k->slot[op]]--;
	c->state = after;
	c->slot = after_slot;
	c->bits_hash ^= k->zobrist[op];
	lincheck_bit_flip(k->bits, op);
	lincheck_lift(k, e);
}

/* Undo the last step, and the eager ones before it, which have no
 * alternative to try (see lincheck_key_search()). Returns the event to go
 * on from, or LINCHECK_NONE when nothing is left to undo. */
static uint32_t lincheck_backtrack(struct lincheck_key *k, struct lincheck_frame *stack,
				   struct lincheck_cursor *c)
{
	const struct lincheck_frame *f;
	uint32_t op;

	do {
		if (c->depth == 0)
			return LINCHECK_NONE;
		f = &stack[--c->depth];
		op = k->events[f->event].op;
		c->state = f->state;
		c->slot = f->slot;
		c->bits_hash ^= k->zobrist[op];
		if (k->ops[k->global[op]].kind == LINCHECK_READ)
			k->reads_left[k->slot[op]]++;
		lincheck_bit_flip(k->bits, op);
		lincheck_unlift(k, f->event);
	} while (f->eager);
	return k->next[f->event];
}

/* Search one key. Returns 1 when linearizable, 0 when not (with *stuck the
 * local op whose return no order got past, furthest in time, and *blocked
 * the slot whose reads kept it, a write, from taking effect, or
 * LINCHECK_NONE), -ENOSPC when undecided, -ENOMEM.
 *
 * Two rules beyond Lowe's. A write may not overwrite a value that reads
 * still have to see (lincheck_step()). And an operation that may take
 * effect now and leaves the register as it was (a read, or a write no read
 * saw over another such write) is linearized now, eagerly, and never tried
 * later instead. Any order that places it later works as well with it here:
 * every operation that had to precede it has taken effect (its call comes
 * before the first return left in the list), and it changes nothing for the
 * operations it then precedes, nor, once gone from its old place, for those
 * after it (an unseen write is followed by a write, or by nothing). The same
 * holds for a read that pins an unknown initial value: it pins the value
 * every read before the first write must see. Both rules prune the orders of
 * concurrent operations, which otherwise multiply. */
static int lincheck_key_search(struct lincheck_key *k, uint64_t initial,
			       struct lincheck_cache *cache, struct lincheck_frame *stack,
			       uint64_t *steps, uint32_t *stuck, uint32_t *blocked)
{
	uint32_t n = k->count, head = 2 * n, tail = 2 * n + 1, e, best = 0;
	struct lincheck_cursor c = {.state = initial, .slot = n};
	int rv;

	*stuck = LINCHECK_NONE;
	*blocked = LINCHECK_NONE;
	lincheck_key_link(k);
	e = k->next[head];
	while (k->next[head] != tail) {
		struct lincheck_event *ev = &k->events[e];
		uint64_t after = c.state;
		uint32_t after_slot = c.slot;

		if (ev->is_return) {
			/* ev's operation had to take effect by now and none could. */
			if (*stuck == LINCHECK_NONE || e > best) {
				best = e;
				*stuck = ev->op;
				*blocked = k->ops[k->global[ev->op]].kind == LINCHECK_WRITE &&
						   k->reads_left[c.slot] > 0
					       ? c.slot
					       : LINCHECK_NONE;
			}
		} else if (!lincheck_step(k, ev->op, &after, &after_slot)) {
			e = k->next[e];
			continue;
		} else {
			bool eager =
			    after == c.state || k->ops[k->global[ev->op]].kind == LINCHECK_READ;

			lincheck_bit_flip(k->bits, ev->op);
			rv = lincheck_cache_add(cache, k->bits, c.bits_hash ^ k->zobrist[ev->op],
						after);
			lincheck_bit_flip(k->bits, ev->op);
			if (rv < 0)
				return rv;
			if (rv == 1) {
				(*steps)++;
				lincheck_push(k, stack, &c, e, eager, after, after_slot);
				e = k->next[head];
				continue;
			}
			if (!eager) {
				e = k->next[e];
				continue;
			}
			/* Eager, and explored already: this configuration fails. */
		}
		e = lincheck_backtrack(k, stack, &c);
		if (e == LINCHECK_NONE)
			return 0;
	}
	return 1;
}

/* --- One key's operations. --- */

static int lincheck_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool lincheck_has(const uint64_t *sorted, uint64_t count, uint64_t v)
{
	return bsearch(&v, sorted, count, sizeof(v), lincheck_u64_cmp) != NULL;
}

static bool lincheck_op_is_valid(const struct lincheck_op *op)
{
	if (op->return_ns < op->call_ns || op->value >= LINCHECK_STATE_UNSEEN)
		return false;
	if (op->kind == LINCHECK_READ)
		return true;
	return op->kind == LINCHECK_WRITE && op->value != LINCHECK_ABSENT &&
	       (op->value & LINCHECK_FOREIGN) == 0;
}

/* A write's value and its local index, to find a read's write. */
struct lincheck_pair {
	uint64_t value;
	uint32_t local;
};

static int lincheck_pair_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct lincheck_pair *)a)->value;
	uint64_t y = ((const struct lincheck_pair *)b)->value;

	return x < y ? -1 : x > y;
}

/* Scratch space for the keys, sized for the largest. */
struct lincheck_scratch {
	struct lincheck_pair *pairs;
	uint64_t *written; /* Values written to the key, sorted. */
	uint64_t *seen;    /* Values completed reads saw, sorted. */
	struct lincheck_key key;
	struct lincheck_frame *stack;
};

static void lincheck_scratch_deinit(struct lincheck_scratch *s)
{
	free(s->written);
	free(s->seen);
	free(s->key.global);
	free(s->key.foreign);
	free(s->key.unseen);
	free(s->key.slot);
	free(s->key.reads_left);
	free(s->pairs);
	free(s->key.zobrist);
	free(s->key.events);
	free(s->key.next);
	free(s->key.prev);
	free(s->key.match);
	free(s->key.call_event);
	free(s->key.bits);
	free(s->stack);
}

static int lincheck_scratch_init(struct lincheck_scratch *s, uint64_t n)
{
	struct lincheck_key *k = &s->key;

	memset(s, 0, sizeof(*s));
	if (n >= UINT32_MAX / 2 - 2)
		return -ENOMEM;
	s->written = malloc((n + 1) * sizeof(*s->written));
	s->seen = malloc((n + 1) * sizeof(*s->seen));
	k->global = malloc((n + 1) * sizeof(*k->global));
	k->foreign = malloc((n + 1) * sizeof(*k->foreign));
	k->unseen = malloc((n + 1) * sizeof(*k->unseen));
	k->slot = malloc((n + 1) * sizeof(*k->slot));
	k->reads_left = malloc((n + 2) * sizeof(*k->reads_left));
	s->pairs = malloc((n + 1) * sizeof(*s->pairs));
	k->zobrist = malloc((n + 1) * sizeof(*k->zobrist));
	k->events = malloc((2 * n + 1) * sizeof(*k->events));
	k->next = malloc((2 * n + 2) * sizeof(*k->next));
	k->prev = malloc((2 * n + 2) * sizeof(*k->prev));
	k->match = malloc((2 * n + 1) * sizeof(*k->match));
	k->call_event = malloc((n + 1) * sizeof(*k->call_event));
	k->bits = malloc((n / 64 + 1) * sizeof(*k->bits));
	s->stack = malloc((n + 1) * sizeof(*s->stack));
	if (s->written == NULL || s->seen == NULL || k->global == NULL || k->foreign == NULL ||
	    k->unseen == NULL || k->slot == NULL || k->reads_left == NULL || s->pairs == NULL ||
	    k->zobrist == NULL || k->events == NULL || k->next == NULL || k->prev == NULL ||
	    k->match == NULL || k->call_event == NULL || k->bits == NULL || s->stack == NULL) {
		lincheck_scratch_deinit(s);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i <= n; i++)
		k->zobrist[i] = lincheck_mix(i * 0x9e3779b97f4a7c15ull + 1);
	return 0;
}

/* Give each kept operation of s->key its slot, and count the reads of each. */
static void lincheck_key_slots(struct lincheck_scratch *s, bool initial_unknown)
{
	struct lincheck_key *k = &s->key;
	uint32_t writes = 0, n = k->count;

	for (uint32_t i = 0; i < n; i++) {
		const struct lincheck_op *op = &k->ops[k->global[i]];

		if (op->kind == LINCHECK_WRITE)
			s->pairs[writes++] = (struct lincheck_pair){op->value, i};
	}
	if (writes > 0)
		qsort(s->pairs, writes, sizeof(*s->pairs), lincheck_pair_cmp);
	memset(k->reads_left, 0, (n + 2) * sizeof(*k->reads_left));
	for (uint32_t i = 0; i < n; i++) {
		const struct lincheck_op *op = &k->ops[k->global[i]];
		struct lincheck_pair key = {.value = op->value}, *found;

		if (op->kind == LINCHECK_WRITE) {
			k->slot[i] = i;
			continue;
		}
		found = bsearch(&key, s->pairs, writes, sizeof(*s->pairs), lincheck_pair_cmp);
		if (found != NULL)
			k->slot[i] = found->local;
		else if (initial_unknown || op->value == LINCHECK_ABSENT)
			k->slot[i] = n; /* The initial value. */
		else
			k->slot[i] = n + 1;
		k->reads_left[k->slot[i]]++;
	}
}

/* Pick the operations of ops[lo..hi) that matter (see lincheck.h) into s->key.
 * Returns 0, or -EINVAL for a malformed operation or a value written twice. */
static int lincheck_key_select(struct lincheck_scratch *s, const struct lincheck_op *ops,
			       uint64_t lo, uint64_t hi, bool initial_unknown,
			       struct lincheck_result *result)
{
	struct lincheck_key *k = &s->key;
	uint64_t written = 0, seen = 0;

	for (uint64_t i = lo; i < hi; i++) {
		if (!lincheck_op_is_valid(&ops[i]))
			return -EINVAL;
		if (ops[i].kind == LINCHECK_WRITE)
			s->written[written++] = ops[i].value;
		else if (ops[i].return_ns != LINCHECK_PENDING)
			s->seen[seen++] = ops[i].value;
	}
	if (written > 0)
		qsort(s->written, written, sizeof(uint64_t), lincheck_u64_cmp);
	if (seen > 0)
		qsort(s->seen, seen, sizeof(uint64_t), lincheck_u64_cmp);
	for (uint64_t i = 1; i < written; i++)
		if (s->written[i] == s->written[i - 1])
			return -EINVAL;
	k->ops = ops;
	k->count = 0;
	for (uint64_t i = lo; i < hi; i++) {
		const struct lincheck_op *op = &ops[i];
		bool pending = op->return_ns == LINCHECK_PENDING;

		result->pending_count += pending;
		if (pending &&
		    (op->kind == LINCHECK_READ || !lincheck_has(s->seen, seen, op->value))) {
			result->dropped_count++;
			continue;
		}
		k->foreign[k->count] =
		    op->kind == LINCHECK_READ && !lincheck_has(s->written, written, op->value);
		k->unseen[k->count] =
		    op->kind == LINCHECK_WRITE && !lincheck_has(s->seen, seen, op->value);
		k->global[k->count++] = i;
	}
	lincheck_key_slots(s, initial_unknown);
	memset(k->bits, 0, ((uint64_t)k->count / 64 + 1) * sizeof(*k->bits));
	return 0;
}

/* --- Reports. --- */

static bool lincheck_overlaps(const struct lincheck_op *a, const struct lincheck_op *b)
{
	return a->call_ns <= b->return_ns && b->call_ns <= a->return_ns;
}

static uint64_t lincheck_distance(const struct lincheck_op *a, const struct lincheck_op *b)
{
	return a->call_ns > b->call_ns ? a->call_ns - b->call_ns : b->call_ns - a->call_ns;
}

/* Fill v->window: the stuck operation, the last write that returned before
 * its call, the write whose value it read (if it is a read), the first read
 * after it that saw the value of that last write, and the operations
 * concurrent with it, nearest first when they do not all fit; then in call
 * order. */
static void lincheck_window(const struct lincheck_key *k, struct lincheck_violation *v)
{
	const struct lincheck_op *x = &k->ops[v->stuck];
	uint64_t before = UINT64_MAX, source = UINT64_MAX, later = UINT64_MAX;

	v->window_count = 0;
	v->window_omitted = 0;
	v->window[v->window_count++] = v->stuck;
	for (uint32_t i = 0; i < k->count; i++) {
		const struct lincheck_op *op = &k->ops[k->global[i]];

		if (op->kind == LINCHECK_WRITE && op->return_ns < x->call_ns &&
		    (before == UINT64_MAX || op->return_ns > k->ops[before].return_ns))
			before = k->global[i];
	}
	if (before != UINT64_MAX)
		v->window[v->window_count++] = before;
	for (uint32_t i = 0; i < k->count && x->kind == LINCHECK_READ; i++) {
		const struct lincheck_op *op = &k->ops[k->global[i]];

		if (op->kind == LINCHECK_WRITE && op->value == x->value && k->global[i] != before)
			source = k->global[i];
	}
	if (source != UINT64_MAX && !lincheck_overlaps(&k->ops[source], x))
		v->window[v->window_count++] = source;
	/* The first read called later that still saw the value of `before`:
	 * the register went back to it. */
	for (uint32_t i = 0; i < k->count && before != UINT64_MAX && later == UINT64_MAX; i++) {
		const struct lincheck_op *op = &k->ops[k->global[i]];

		if (op->kind == LINCHECK_READ && op->value == k->ops[before].value &&
		    op->call_ns > x->call_ns && !lincheck_overlaps(op, x))
			later = k->global[i];
	}
	if (later != UINT64_MAX)
		v->window[v->window_count++] = later;
	for (uint32_t i = 0; i < k->count; i++) {
		uint64_t g = k->global[i];
		uint32_t far = 0;

		if (g == v->stuck || g == before || !lincheck_overlaps(&k->ops[g], x))
			continue;
		if (v->window_count < LINCHECK_WINDOW_MAX) {
			v->window[v->window_count++] = g;
			continue;
		}
		v->window_omitted++;
		/* Full: replace the farthest concurrent one if g is nearer. */
		for (uint32_t j = 1; j < v->window_count; j++)
			if (v->window[j] != before && v->window[j] != source &&
			    v->window[j] != later &&
			    (far == 0 || lincheck_distance(&k->ops[v->window[j]], x) >
					     lincheck_distance(&k->ops[v->window[far]], x)))
				far = j;
		if (far != 0 && lincheck_distance(&k->ops[g], x) <
				    lincheck_distance(&k->ops[v->window[far]], x))
			v->window[far] = g;
	}
	if (v->window_count > 0)
		qsort(v->window, v->window_count, sizeof(uint64_t),
		      lincheck_u64_cmp); /* ops are in call order. */
}

/* The operation to blame for a violation: the one whose return no order got
 * past, unless it is a write that could not take effect because reads still
 * had to see the value it would overwrite; then the one of those reads
 * called last, which comes too late to see it. */
static uint32_t lincheck_blame(const struct lincheck_key *k, uint32_t stuck, uint32_t blocked)
{
	uint32_t blame = stuck;

	for (uint32_t i = 0; i < k->count && blocked != LINCHECK_NONE; i++) {
		const struct lincheck_op *op = &k->ops[k->global[i]];

		if (op->kind == LINCHECK_READ && k->slot[i] == blocked &&
		    (blame == stuck || op->call_ns >= k->ops[k->global[blame]].call_ns))
			blame = i;
	}
	return blame;
}

/* --- The whole history. --- */

static int lincheck_op_cmp(const void *a, const void *b)
{
	const struct lincheck_op *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	if (x->call_ns != y->call_ns)
		return x->call_ns < y->call_ns ? -1 : 1;
	return (x->return_ns > y->return_ns) - (x->return_ns < y->return_ns);
}

/* Check ops[lo..hi), one key. */
static int lincheck_check_key(struct lincheck_scratch *s, struct lincheck_op *ops, uint64_t lo,
			      uint64_t hi, const struct lincheck_config *config,
			      struct lincheck_result *result, lincheck_violation_fn violation,
			      void *arg)
{
	struct lincheck_key *k = &s->key;
	struct lincheck_cache cache;
	uint64_t size_max =
	    config->cache_size_max != 0 ? config->cache_size_max : LINCHECK_CACHE_SIZE_DEFAULT;
	uint32_t stuck, blocked;
	int rv;

	rv = lincheck_key_select(s, ops, lo, hi, config->initial_unknown, result);
	if (rv != 0)
		return rv;
	if (k->count > result->ops_max_per_key)
		result->ops_max_per_key = k->count;
	rv = lincheck_cache_init(&cache, k->count / 64 + 1, size_max);
	if (rv != 0)
		return rv;
	rv = lincheck_key_search(k,
				 config->initial_unknown ? LINCHECK_STATE_UNKNOWN : LINCHECK_ABSENT,
				 &cache, s->stack, &result->steps, &stuck, &blocked);
	lincheck_cache_deinit(&cache);
	if (rv == -ENOSPC) {
		result->undecided++;
		return 0;
	}
	if (rv < 0)
		return rv;
	if (rv == 0) {
		struct lincheck_violation v = {.key = ops[lo].key, .ops = ops};

		result->violations++;
		v.stuck = k->global[lincheck_blame(k, stuck, blocked)];
		lincheck_window(k, &v);
		if (violation != NULL)
			violation(&v, arg);
	}
	return 0;
}

int lincheck_check(struct lincheck_op *ops, uint64_t ops_count,
		   const struct lincheck_config *config, struct lincheck_result *result,
		   lincheck_violation_fn violation, void *arg)
{
	struct lincheck_scratch scratch;
	uint64_t largest = 0;
	int rv = 0;

	memset(result, 0, sizeof(*result));
	result->ops_count = ops_count;
	if (ops_count > 0)
		qsort(ops, ops_count, sizeof(*ops), lincheck_op_cmp);
	for (uint64_t lo = 0, hi; lo < ops_count; lo = hi) {
		for (hi = lo + 1; hi < ops_count && ops[hi].key == ops[lo].key; hi++)
			;
		if (hi - lo > largest)
			largest = hi - lo;
	}
	rv = lincheck_scratch_init(&scratch, largest);
	if (rv != 0)
		return rv;
	for (uint64_t lo = 0, hi; lo < ops_count && rv == 0; lo = hi) {
		for (hi = lo + 1; hi < ops_count && ops[hi].key == ops[lo].key; hi++)
			;
		result->keys_count++;
		rv = lincheck_check_key(&scratch, ops, lo, hi, config, result, violation, arg);
	}
	lincheck_scratch_deinit(&scratch);
	return rv;
}

/* --- History files. --- */

int lincheck_format(const struct lincheck_op *op, char *line)
{
	char value[24], ret[24];

	if (op->kind == LINCHECK_READ && op->return_ns == LINCHECK_PENDING)
		strcpy(value, "?");
	else if (op->kind == LINCHECK_READ && op->value == LINCHECK_ABSENT)
		strcpy(value, "absent");
	else
		snprintf(value, sizeof(value), "%" PRIx64, op->value);
	if (op->return_ns == LINCHECK_PENDING)
		strcpy(ret, "?");
	else
		snprintf(ret, sizeof(ret), "%" PRIu64, op->return_ns);
	return snprintf(line, LINCHECK_LINE_SIZE_MAX,
			"%" PRIu32 " %" PRIu64 " %c %s %" PRIu64 " %s\n", op->client, op->key,
			op->kind == LINCHECK_WRITE ? 'w' : 'r', value, op->call_ns, ret);
}

/* Parse one number (base 10 or 16) ending at a space or the end of text.
 * Returns the rest, or NULL. */
static const char *lincheck_parse_u64(const char *text, int base, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = text;

	for (; *p != '\0' && *p != ' ' && *p != '\n'; p++) {
		int digit;

		if (*p >= '0' && *p <= '9')
			digit = *p - '0';
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			digit = *p - 'a' + 10;
		else
			return NULL;
		if (v > (UINT64_MAX - (uint64_t)digit) / (uint64_t)base)
			return NULL; /* Overflow. */
		v = v * (uint64_t)base + (uint64_t)digit;
	}
	if (p == text)
		return NULL;
	*out = v;
	return p;
}

/* Match the word at text exactly; returns the rest or NULL. */
static const char *lincheck_parse_word(const char *text, const char *word)
{
	size_t n = strlen(word);

	if (strncmp(text, word, n) != 0 || (text[n] != ' ' && text[n] != '\n' && text[n] != '\0'))
		return NULL;
	return text + n;
}

/* Skip exactly one space. */
static const char *lincheck_parse_space(const char *text)
{
	return text != NULL && *text == ' ' ? text + 1 : NULL;
}

int lincheck_parse(const char *line, struct lincheck_op *op)
{
	const char *p = line, *q;
	uint64_t client = 0;
	bool value_pending = false;

	memset(op, 0, sizeof(*op));
	p = lincheck_parse_space(lincheck_parse_u64(p, 10, &client));
	p = p == NULL ? NULL : lincheck_parse_space(lincheck_parse_u64(p, 10, &op->key));
	if (p == NULL || client > UINT32_MAX || (p[0] != 'r' && p[0] != 'w') || p[1] != ' ')
		return -EINVAL;
	op->client = (uint32_t)client;
	op->kind = p[0] == 'w' ? LINCHECK_WRITE : LINCHECK_READ;
	p += 2;
	if ((q = lincheck_parse_word(p, "absent")) != NULL && op->kind == LINCHECK_READ) {
		op->value = LINCHECK_ABSENT;
	} else if ((q = lincheck_parse_word(p, "?")) != NULL && op->kind == LINCHECK_READ) {
		value_pending = true;
	} else {
		q = lincheck_parse_u64(p, 16, &op->value);
	}
	p = lincheck_parse_space(q);
	p = p == NULL ? NULL : lincheck_parse_space(lincheck_parse_u64(p, 10, &op->call_ns));
	if (p == NULL)
		return -EINVAL;
	if ((q = lincheck_parse_word(p, "?")) != NULL)
		op->return_ns = LINCHECK_PENDING;
	else
		q = lincheck_parse_u64(p, 10, &op->return_ns);
	if (q == NULL || (*q != '\0' && !(q[0] == '\n' && q[1] == '\0')))
		return -EINVAL;
	/* A read of unknown outcome saw nothing; one that completed saw a value. */
	if (value_pending != (op->kind == LINCHECK_READ && op->return_ns == LINCHECK_PENDING))
		return -EINVAL;
	return lincheck_op_is_valid(op) ? 0 : -EINVAL;
}

int lincheck_read_file(FILE *f, struct lincheck_op **ops, uint64_t *ops_count, uint64_t *bad_line)
{
	char line[LINCHECK_LINE_SIZE_MAX + 2];
	uint64_t count = 0, size = 0, number = 0;
	struct lincheck_op *all = NULL;
	int rv = 0;

	*bad_line = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t len = strlen(line);

		number++;
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			rv = -EINVAL; /* Longer than any line we write. */
			break;
		}
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (count == size) {
			uint64_t grown = size == 0 ? 4096 : size * 2;
			struct lincheck_op *more = realloc(all, grown * sizeof(*all));

			if (more == NULL) {
				rv = -ENOMEM;
				break;
			}
			all = more;
			size = grown;
		}
		if (lincheck_parse(line, &all[count]) != 0) {
			rv = -EINVAL;
			break;
		}
		count++;
	}
	if (rv == 0 && ferror(f))
		rv = -EIO;
	if (rv == -EINVAL)
		*bad_line = number;
	if (rv != 0) {
		free(all);
		return rv;
	}
	*ops = all;
	*ops_count = count;
	return 0;
}

static void lincheck_print_value(FILE *out, const struct lincheck_op *op)
{
	if (op->kind == LINCHECK_READ && op->return_ns == LINCHECK_PENDING)
		fprintf(out, "?");
	else if (op->kind == LINCHECK_READ && op->value == LINCHECK_ABSENT)
		fprintf(out, "absent");
	else
		fprintf(out, "%" PRIx64 "%s", op->value,
			(op->value & LINCHECK_FOREIGN) != 0 ? " (no write made it)" : "");
}

void lincheck_print_violation(FILE *out, const struct lincheck_violation *v)
{
	uint64_t origin = v->ops[v->window[0]].call_ns;

	fprintf(out,
		"key %" PRIu64 ": not linearizable; no order of its operations places the one "
		"marked '>>' within its call and return (times in ms from the first call shown):\n",
		v->key);
	for (uint32_t i = 0; i < v->window_count; i++) {
		const struct lincheck_op *op = &v->ops[v->window[i]];

		fprintf(out, "  %s client %" PRIu32 " %-5s ",
			v->window[i] == v->stuck ? ">>" : "  ", op->client,
			op->kind == LINCHECK_WRITE ? "write" : "read");
		lincheck_print_value(out, op);
		fprintf(out, "  call %.3f", (double)(op->call_ns - origin) / 1e6);
		if (op->return_ns == LINCHECK_PENDING)
			fprintf(out, "  return ? (unknown outcome)\n");
		else
			fprintf(out, "  return %.3f\n", (double)(op->return_ns - origin) / 1e6);
	}
	if (v->window_omitted > 0)
		fprintf(out, "  (and %" PRIu32 " more concurrent operations)\n", v->window_omitted);
}
