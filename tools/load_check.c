/* flotilla-load --check: the history of every request (a call time read
 * before its first send, a return time after its answer, and the write it
 * names), then tools/lincheck.h's check of it key by key, --check-history to
 * save it and --check-file to check a saved one. See flotilla-load.c,
 * Checking, for what makes each GET name the write it saw. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/le.h"
#include "tools/load_internal.h"

/* --- The history (--check). --- */

/* The identifier of a value a GET returned: the write id in it when this run
 * wrote it, else a hash of its bytes marked foreign (a value from before this
 * run, or one nobody wrote). */
static uint64_t load_value_id(const struct load_run *run, const void *value, uint32_t size)
{
	const unsigned char *p = value;
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a. */

	if (size >= LOAD_CHECK_VALUE_SIZE && le_get64(p) == run->nonce) {
		uint64_t id = le_get64(p + 8);

		if (id != LINCHECK_ABSENT && (id & LINCHECK_FOREIGN) == 0)
			return id;
	}
	for (uint32_t i = 0; i < size; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	h |= LINCHECK_FOREIGN;
	return h >= UINT64_MAX - 1 ? h - 2 : h; /* The top two are no values. */
}

/* Record the call of the request in slot, made no later than now. */
void load_history_call(struct load_thread *t, uint32_t slot, uint64_t now)
{
	struct load_req *req = &t->reqs[slot];

	req->hist_slot = UINT64_MAX;
	if (t->history_count == t->history_size) {
		uint64_t size = t->history_size == 0 ? 65536 : t->history_size * 2;
		struct lincheck_op *more = realloc(t->history, size * sizeof(*more));

		if (more == NULL) {
			t->history_failed = true;
			return;
		}
		t->history = more;
		t->history_size = size;
	}
	req->hist_slot = t->history_count++;
	t->history[req->hist_slot] = (struct lincheck_op){
	    .key = req->key,
	    .value = req->op == CLIENT_OP_PUT ? req->value_id : LINCHECK_ABSENT,
	    .call_ns = now,
	    .return_ns = LINCHECK_PENDING,
	    .kind = req->op == CLIENT_OP_PUT ? LINCHECK_WRITE : LINCHECK_READ,
	    .client = t->index << LOAD_SLOT_BITS | slot,
	};
}

/* Record the answer (OK or NOT_FOUND) to req. Its time is read now, after
 * the bytes were received: a time taken before the read could precede the
 * node's answer. Requests never answered stay of unknown outcome. */
void load_history_return(struct load_thread *t, const struct load_req *req,
			 const struct client_response *resp)
{
	struct lincheck_op *op;

	if (req->hist_slot == UINT64_MAX)
		return;
	op = &t->history[req->hist_slot];
	op->return_ns = load_now_ns();
	if (op->kind == LINCHECK_READ)
		op->value = resp->status == CLIENT_STATUS_NOT_FOUND
				? LINCHECK_ABSENT
				: load_value_id(t->run, resp->value, resp->value_size);
}

/* --- The check. --- */

static void load_check_print(const struct lincheck_violation *violation, void *arg)
{
	struct load_check *c = arg;

	if (c->printed++ < LOAD_CHECK_PRINT_MAX)
		lincheck_print_violation(c->out, violation);
}

static int load_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A test of the checker on a real history, enabled by the environment
 * variable FLOTILLA_LOAD_CHECK_DROP_WRITE=1: leave out of ops one
 * acknowledged write that a read saw. A read then sees a value nobody wrote,
 * which the check must report. Returns the new count. */
static uint64_t load_check_drop_write(FILE *out, struct lincheck_op *ops, uint64_t count)
{
	const char *env = getenv("FLOTILLA_LOAD_CHECK_DROP_WRITE");
	uint64_t *seen, seen_count = 0, drop = UINT64_MAX;

	if (env == NULL || strcmp(env, "1") != 0)
		return count;
	seen = malloc((count + 1) * sizeof(*seen));
	if (seen == NULL)
		return count;
	for (uint64_t i = 0; i < count; i++)
		if (ops[i].kind == LINCHECK_READ && ops[i].return_ns != LINCHECK_PENDING &&
		    ops[i].value != LINCHECK_ABSENT)
			seen[seen_count++] = ops[i].value;
	qsort(seen, seen_count, sizeof(*seen), load_u64_cmp);
	/* The middle one of them, in the order of the history: a write among
	 * others, not the first of the run. */
	for (uint64_t pass = 0, found = 0; pass < 2 && drop == UINT64_MAX; pass++) {
		uint64_t target = found / 2, n = 0;

		for (uint64_t i = 0; i < count && drop == UINT64_MAX; i++) {
			if (ops[i].kind != LINCHECK_WRITE || ops[i].return_ns == LINCHECK_PENDING ||
			    bsearch(&ops[i].value, seen, seen_count, sizeof(*seen), load_u64_cmp) ==
				NULL)
				continue;
			if (pass == 1 && n == target)
				drop = i;
			n++;
		}
		found = n;
	}
	free(seen);
	if (drop == UINT64_MAX) {
		fprintf(out, "FLOTILLA_LOAD_CHECK_DROP_WRITE: no acknowledged write was read\n");
		return count;
	}
	fprintf(out,
		"FLOTILLA_LOAD_CHECK_DROP_WRITE: leaving out the acknowledged write of %llx to key "
		"%llu (a read saw it): the check must fail\n",
		(unsigned long long)ops[drop].value, (unsigned long long)ops[drop].key);
	memmove(&ops[drop], &ops[drop + 1], (count - drop - 1) * sizeof(*ops));
	return count - 1;
}

/* Returns 0 or EXIT_RUN after saying why. */
static int load_check_save(const char *path, const struct lincheck_op *ops, uint64_t count)
{
	FILE *f = fopen(path, "w");
	char line[LINCHECK_LINE_SIZE_MAX];
	int failed;

	if (f == NULL) {
		fprintf(stderr, "flotilla-load: cannot write %s: %s\n", path, strerror(errno));
		return EXIT_RUN;
	}
	fputs(LINCHECK_FILE_HEADER, f);
	for (uint64_t i = 0; i < count; i++) {
		lincheck_format(&ops[i], line);
		fputs(line, f);
	}
	failed = ferror(f);
	failed |= fclose(f) != 0;
	if (failed) {
		fprintf(stderr, "flotilla-load: writing %s failed\n", path);
		return EXIT_RUN;
	}
	return 0;
}

/* Check a history and print the verdict. Returns 0, EXIT_NOT_LINEARIZABLE,
 * EXIT_UNDECIDED or EXIT_RUN. */
static int load_check_history(struct load_check *c, bool initial_unknown, struct lincheck_op *ops,
			      uint64_t count)
{
	struct lincheck_config config = {.initial_unknown = initial_unknown};
	const struct lincheck_result *r = &c->result;
	uint64_t started = load_now_ns();
	int rv;

	count = load_check_drop_write(c->out, ops, count);
	rv = lincheck_check(ops, count, &config, &c->result, load_check_print, c);
	c->seconds = (double)(load_now_ns() - started) / NS_PER_S;
	if (rv != 0) {
		fprintf(stderr, "flotilla-load: cannot check the history: %s\n",
			rv == -EINVAL ? "an operation is malformed or a value was written twice"
				      : strerror(-rv));
		return EXIT_RUN;
	}
	c->done = true;
	if (c->printed > LOAD_CHECK_PRINT_MAX)
		fprintf(c->out, "(%llu more violations not shown)\n",
			(unsigned long long)(c->printed - LOAD_CHECK_PRINT_MAX));
	fprintf(
	    c->out,
	    "check        %s: %llu keys, %llu operations (%llu of unknown outcome, %llu of them "
	    "left out as irrelevant), at most %llu checked on one key; %llu configurations in "
	    "%.2f s\n",
	    r->violations > 0  ? "NOT LINEARIZABLE"
	    : r->undecided > 0 ? "UNDECIDED"
			       : "linearizable",
	    (unsigned long long)r->keys_count, (unsigned long long)r->ops_count,
	    (unsigned long long)r->pending_count, (unsigned long long)r->dropped_count,
	    (unsigned long long)r->ops_max_per_key, (unsigned long long)r->steps, c->seconds);
	if (r->violations > 0)
		fprintf(c->out, "check        %llu keys violate linearizability (above)\n",
			(unsigned long long)r->violations);
	if (r->undecided > 0)
		fprintf(c->out,
			"check        %llu keys undecided: their search needed more than %u MiB\n",
			(unsigned long long)r->undecided, LINCHECK_CACHE_SIZE_DEFAULT >> 20);
	if (r->violations > 0)
		return EXIT_NOT_LINEARIZABLE;
	return r->undecided > 0 ? EXIT_UNDECIDED : 0;
}

/* After the run: gather the threads' histories, save and check them. */
int load_check_run(struct load_run *run)
{
	uint64_t count = 0, at = 0;
	struct lincheck_op *ops;
	int rv;

	for (uint32_t i = 0; i < run->opt.threads; i++) {
		if (run->threads[i].history_failed) {
			fprintf(stderr,
				"flotilla-load: out of memory for the history: not checked\n");
			return EXIT_RUN;
		}
		count += run->threads[i].history_count;
	}
	ops = malloc((count + 1) * sizeof(*ops));
	if (ops == NULL) {
		fprintf(stderr, "flotilla-load: out of memory for the history: not checked\n");
		return EXIT_RUN;
	}
	for (uint32_t i = 0; i < run->opt.threads; i++) {
		memcpy(ops + at, run->threads[i].history,
		       run->threads[i].history_count * sizeof(*ops));
		at += run->threads[i].history_count;
	}
	rv = run->opt.check_history_path != NULL
		 ? load_check_save(run->opt.check_history_path, ops, count)
		 : 0;
	if (rv == 0)
		rv = load_check_history(&run->check, run->opt.check_initial_unknown, ops, count);
	free(ops);
	return rv;
}

/* --check-file: check a saved history. */
int load_check_file(struct load_run *run)
{
	const char *path = run->opt.check_file_path;
	FILE *f = fopen(path, "r");
	struct lincheck_op *ops = NULL;
	uint64_t count = 0, bad_line = 0;
	int rv;

	if (f == NULL) {
		fprintf(stderr, "flotilla-load: cannot read %s: %s\n", path, strerror(errno));
		return EXIT_RUN;
	}
	rv = lincheck_read_file(f, &ops, &count, &bad_line);
	fclose(f);
	if (rv == -EINVAL) {
		fprintf(stderr, "flotilla-load: %s:%llu: not an operation of a history\n", path,
			(unsigned long long)bad_line);
		return EXIT_RUN;
	}
	if (rv != 0) {
		fprintf(stderr, "flotilla-load: cannot read %s: %s\n", path, strerror(-rv));
		return EXIT_RUN;
	}
	rv = load_check_history(&run->check, run->opt.check_initial_unknown, ops, count);
	free(ops);
	return rv;
}
