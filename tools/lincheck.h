/* A linearizability checker for histories of reads and writes on registers,
 * one register per key: the model of flotilla-node's key-value store as
 * flotilla-load drives it (PUT sets a key's value, GET returns it).
 *
 * Each key is checked on its own (linearizability is compositional: a
 * history is linearizable iff its restriction to every key is), with the
 * search of Wing & Gong as refined by Lowe: try the operations that may take
 * effect next in the order of their calls, keep every (set of operations
 * linearized, register value) already explored in a hash set so that no
 * configuration is explored twice, and backtrack when an operation returned
 * before any order could take it. Two rules specific to registers with
 * unique values keep it near one step per operation even with dozens of
 * concurrent clients on one key (see lincheck_key_search() in the .c).
 *
 * Values are 64-bit identifiers, one per write: every write of a history
 * writes a value no other write writes, so a read names the write it saw.
 * An operation whose outcome is unknown (it timed out, or its connection was
 * lost) may or may not have taken effect: it is pending, as if its return
 * came after the end of the history. A pending read says nothing and is
 * dropped; a pending write that no read saw cannot matter either (placing it
 * anywhere only hides older values from reads that follow it) and is dropped
 * too; a pending write that a read saw is kept, free to take effect at any
 * time after its call. */
#ifndef TOOLS_LINCHECK_H
#define TOOLS_LINCHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define LINCHECK_ABSENT             UINT64_C(0) /* A read found no value. */
#define LINCHECK_PENDING            UINT64_MAX  /* return_ns of an operation of unknown outcome. */
#define LINCHECK_FOREIGN            (UINT64_C(1) << 63) /* Set in values no write of the history made. */
#define LINCHECK_WINDOW_MAX         32                  /* Operations in a violation report. */
#define LINCHECK_LINE_SIZE_MAX      160 /* One operation in a history file, with '\n'. */
#define LINCHECK_CACHE_SIZE_DEFAULT (256u << 20)

enum lincheck_kind { LINCHECK_READ = 1, LINCHECK_WRITE = 2 };

/* One operation. Times are in one clock (nanoseconds): call_ns no later than
 * the request left the client, return_ns no earlier than its answer came
 * back, so the operation took effect somewhere between the two. */
struct lincheck_op {
	uint64_t key;
	/* Write: what it wrote (neither LINCHECK_ABSENT nor foreign). Read: what
	 * it saw; a value no write made has LINCHECK_FOREIGN set. UINT64_MAX and
	 * UINT64_MAX - 1 are not values. */
	uint64_t value;
	uint64_t call_ns;
	uint64_t return_ns; /* LINCHECK_PENDING: unknown outcome. */
	uint32_t kind;      /* enum lincheck_kind */
	uint32_t client;    /* Who issued it, for reports only. */
};

struct lincheck_config {
	/* false: every key starts absent (a fresh cluster). true: a key may
	 * start with any value no write of this history wrote, or absent, as
	 * when a cluster was written to before; reads may see it until the
	 * first write takes effect. */
	bool initial_unknown;
	/* Memory for the configurations explored of one key, in bytes (0:
	 * LINCHECK_CACHE_SIZE_DEFAULT); a key that needs more is given up as
	 * undecided. Bounds time and memory. */
	uint64_t cache_size_max;
};

/* A key whose history is not linearizable: the search got furthest when it
 * could not place ops[stuck] (the operation that cannot be linearized), and
 * window lists it with the operations concurrent with it and the last write
 * that returned before it was called, in call order. ops is the history as
 * sorted by lincheck_check(). */
struct lincheck_violation {
	uint64_t key;
	const struct lincheck_op *ops;
	uint64_t stuck;
	uint64_t window[LINCHECK_WINDOW_MAX];
	uint32_t window_count;
	uint32_t window_omitted; /* Concurrent operations left out of window. */
};

typedef void (*lincheck_violation_fn)(const struct lincheck_violation *violation, void *arg);

struct lincheck_result {
	uint64_t keys_count;
	uint64_t ops_count;       /* In the history, pending ones included. */
	uint64_t pending_count;   /* Of unknown outcome. */
	uint64_t dropped_count;   /* Pending reads, and pending writes no read saw. */
	uint64_t ops_max_per_key; /* Checked (not dropped) operations of the busiest key. */
	uint64_t steps;           /* Configurations explored, over all keys. */
	uint64_t violations;      /* Keys whose history is not linearizable. */
	uint64_t undecided;       /* Keys given up: cache_size_max was not enough. */
};

/* Check a history. Sorts ops in place by key, then call time. Calls
 * violation (if not NULL) once per non-linearizable key, in key order, with
 * pointers valid during the call. Returns 0 (see result->violations and
 * result->undecided for the verdict), -EINVAL for an operation that is not
 * well formed (a return before its call, an unknown kind, a write of
 * LINCHECK_ABSENT or of a foreign value, or two writes of one value to a
 * key), or -ENOMEM. */
int lincheck_check(struct lincheck_op *ops, uint64_t ops_count,
		   const struct lincheck_config *config, struct lincheck_result *result,
		   lincheck_violation_fn violation, void *arg);

/* History files: a header line, then one line per operation:
 *   # flotilla-lincheck history v1
 *   CLIENT KEY KIND VALUE CALL_NS RETURN_NS
 * with KIND "r" or "w", VALUE in hex ("absent" for a read that found
 * nothing, "?" for a pending read), RETURN_NS in decimal or "?" when pending.
 * Lines starting with '#' and empty lines are skipped. */
#define LINCHECK_FILE_HEADER "# flotilla-lincheck history v1\n"

/* Format op as one line, '\n' included, into line (LINCHECK_LINE_SIZE_MAX
 * bytes). Returns its length. */
int lincheck_format(const struct lincheck_op *op, char *line);

/* Parse one operation line (as lincheck_format writes it, '\n' optional).
 * Returns 0, or -EINVAL when it is malformed. */
int lincheck_parse(const char *line, struct lincheck_op *op);

/* Read a history file written as above into *ops (malloc()ed; the caller
 * frees it). Returns 0, -errno from the file, -ENOMEM, or -EINVAL with
 * *bad_line set to the 1-based number of the first malformed line. */
int lincheck_read_file(FILE *f, struct lincheck_op **ops, uint64_t *ops_count, uint64_t *bad_line);

/* Print a violation for people: the key, then one line per operation of its
 * window, the one that cannot be linearized marked. */
void lincheck_print_violation(FILE *out, const struct lincheck_violation *violation);

#endif /* TOOLS_LINCHECK_H */
