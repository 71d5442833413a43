/* The benchmark harness: a plain C interface over Google Benchmark.
 *
 * A benchmark is a C function that loops on bench_keep_running() and reports
 * what it did through bench_set_items()/bench_set_bytes() and counters. Each
 * module's bench/bench_<module>.c registers its cases with bench_register() from
 * bench_<module>_register(), and bench/main.c runs them all through bench_main().
 * Google Benchmark's own flags and output formats apply unchanged:
 * --benchmark_filter=<regex>, --benchmark_min_time=<seconds>,
 * --benchmark_format=console|json|csv, --benchmark_out=<file>,
 * --benchmark_out_format=json, --benchmark_repetitions=<n>, --benchmark_list_tests.
 *
 * Every call into the harness crosses from C to C++ and costs a few
 * nanoseconds: a body that runs in nanoseconds does a batch of work per
 * iteration (or uses bench_keep_running_batch()). Benchmarks run on the thread
 * that calls bench_main(), one at a time. */
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The running benchmark. Valid only inside the bench_fn it was passed to. */
struct bench_state;

typedef void (*bench_fn)(struct bench_state *state, void *arg);

enum bench_unit {
	BENCH_UNIT_DEFAULT = 0, /* Nanoseconds, or what --benchmark_time_unit says. */
	BENCH_UNIT_NS,
	BENCH_UNIT_US,
	BENCH_UNIT_MS,
	BENCH_UNIT_S,
};

/* One benchmark case. Zeroed fields take their defaults, so designated
 * initializers name only what they set. The argument a run sees through
 * bench_range(state, 0) comes from exactly one of:
 *   - nothing: range_min == range_max == 0 and args_count == 0; no argument;
 *   - a geometric range: range_min..range_max (both included), each step times
 *     range_mult (0 means 8, Google Benchmark's default), as Range() does;
 *   - explicit values: args[0..args_count), in that order (e.g. 1, 1000, 10000).
 * Setting both a range and explicit values is a registration error. */
struct bench_def {
	const char *name; /* "module/case"; the argument is appended as "/<value>". */
	bench_fn fn;
	void *arg; /* Passed to fn unchanged; owned by the caller, must outlive bench_main(). */
	int64_t range_min, range_max, range_mult;
	bool real_time; /* Time by the wall clock instead of this thread's CPU time. */

	const int64_t *args;  /* Explicit argument values; copied by bench_register(). */
	uint32_t args_count;  /* 0: use the range fields instead. */
	const char *arg_name; /* Names the argument in the output: "raft/commit/groups:1000". */
	enum bench_unit unit; /* Unit of the reported times. */
	int64_t iterations;   /* Run exactly this many iterations; 0: as many as min_time needs. */
	bool manual_time;     /* Time is what fn reports with bench_set_iteration_time(). */
};

/* Registers a copy of def (name, args and arg_name are copied; arg is not).
 * Call before bench_main(). An invalid def (no name or fn, range_min > range_max,
 * negative values, range_mult of 1, both a range and args) prints the reason
 * and aborts: it is a bug in the benchmark. */
void bench_register(const struct bench_def *def);

/* Parses Google Benchmark's flags out of argv, runs the benchmarks the filter
 * selects and prints their results. Returns 0; 1 on an unknown flag, when the
 * filter selects no benchmark, or when any benchmark called
 * bench_skip_with_error(). */
int bench_main(int argc, char **argv);

/* The loop condition: true while more iterations are needed. The timer runs
 * from the first call to the call that returns false. */
bool bench_keep_running(struct bench_state *s);

/* Like bench_keep_running(), but counts the body as n iterations: for bodies
 * that do n units of work per pass. May overshoot by up to n - 1 iterations. */
bool bench_keep_running_batch(struct bench_state *s, int64_t n);

/* Iterations completed so far; after the loop, the total. */
int64_t bench_iterations(const struct bench_state *s);

/* The value of argument i of this run. Only i == 0 exists, and only when the
 * def has a range or explicit args; anything else aborts. */
int64_t bench_range(struct bench_state *s, int i);

/* Totals over the whole run (not per iteration): reported as items/s and
 * bytes/s. Call after the loop. */
void bench_set_items(struct bench_state *s, int64_t items);
void bench_set_bytes(struct bench_state *s, int64_t bytes);

enum {
	BENCH_COUNTER_RATE = 1, /* Report value divided by the run's time: per second. */
	BENCH_COUNTER_AVG = 2,  /* Report value divided by the iterations: per iteration. */
};

/* A named result column. flags is 0 (report value as is) or an OR of
 * BENCH_COUNTER_*. name is copied. Setting a name twice keeps the last value. */
void bench_counter(struct bench_state *s, const char *name, double value, int flags);

/* Latency columns from samples (any order; sorted in place): "p50_us" and
 * "p99_us", nearest rank, each sample divided by per_us (1 for samples in
 * microseconds, 1000 for nanoseconds). Nothing when count is 0. */
void bench_latency_counters(struct bench_state *s, uint64_t *samples, uint64_t count,
			    double per_us);

/* A free-form note printed with the result (e.g. "fsync: 1 per 64 entries").
 * label is copied. */
void bench_set_label(struct bench_state *s, const char *label);

/* Stop and restart the timer around per-iteration setup. Each pair costs far
 * more than a nanosecond-scale body: keep setup outside the loop when possible. */
void bench_pause(struct bench_state *s);
void bench_resume(struct bench_state *s);

/* The time of the iteration just finished, in seconds; only with
 * def.manual_time, once per iteration. */
void bench_set_iteration_time(struct bench_state *s, double seconds);

/* Makes the compiler assume the bytes at p are read, so computing them cannot
 * be optimised away. */
void bench_do_not_optimize(const void *p);

/* Marks the run failed with msg (copied) and makes bench_main() return 1.
 * Call it before the loop, or leave the loop right after: the current iteration
 * finishes, then bench_keep_running() returns false. */
void bench_skip_with_error(struct bench_state *s, const char *msg);

#ifdef __cplusplus
}
#endif

#endif /* BENCH_HARNESS_H */
