/* The C benchmark harness over Google Benchmark: the only C++ in Flotilla.
 *
 * bench_register() checks a bench_def and hands Google Benchmark a lambda that
 * wraps the C function pointer; everything the lambda needs is captured by
 * value, so the caller's def, name and args array may go away after the call.
 * When the lambda runs, it puts a struct bench_state on its stack that points
 * at the benchmark::State, and the C benchmark sees only that.
 *
 * Failure modes: a malformed def is a bug in the benchmark, so registration
 * prints the reason and aborts. An error reported at run time goes through
 * SkipWithError() and makes bench_main() return 1. The only exception the
 * harness can raise is std::bad_alloc; the lambda is noexcept, so one raised
 * inside a benchmark terminates the program instead of unwinding C frames. */
#include "bench/harness.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

struct bench_state {
	benchmark::State *st;
	const std::string *name; /* For error messages. */
	int ranges_count;        /* 1 when the def has a range or args, else 0. */
};

namespace
{

std::atomic<bool> errors_seen{false};

[[noreturn]] void harness_die(const char *name, const char *reason) noexcept
{
	std::fprintf(stderr, "flotilla-bench: %s: %s\n", name != nullptr ? name : "(no name)",
		     reason);
	std::abort();
}

void harness_check(const struct bench_def *def) noexcept
{
	bool has_range = def->range_min != 0 || def->range_max != 0;

	if (def->name == nullptr || def->name[0] == '\0')
		harness_die(def->name, "bench_def has no name");
	if (def->fn == nullptr)
		harness_die(def->name, "bench_def has no fn");
	if (def->range_min < 0 || def->range_max < 0 || def->range_mult < 0)
		harness_die(def->name, "range values must not be negative");
	if (def->range_min > def->range_max)
		harness_die(def->name, "range_min is greater than range_max");
	if (def->range_mult == 1)
		harness_die(def->name, "range_mult must be 0 (meaning 8) or at least 2");
	if (has_range && def->args_count > 0)
		harness_die(def->name, "set either a range or explicit args, not both");
	if (def->args_count > 0 && def->args == nullptr)
		harness_die(def->name, "args_count is set but args is NULL");
	if (def->iterations < 0)
		harness_die(def->name, "iterations must not be negative");
	if (def->unit < BENCH_UNIT_DEFAULT || def->unit > BENCH_UNIT_S)
		harness_die(def->name, "unknown unit");
}

void harness_set_unit(benchmark::internal::Benchmark *b, enum bench_unit unit) noexcept
{
	switch (unit) {
	case BENCH_UNIT_DEFAULT:
		break;
	case BENCH_UNIT_NS:
		b->Unit(benchmark::kNanosecond);
		break;
	case BENCH_UNIT_US:
		b->Unit(benchmark::kMicrosecond);
		break;
	case BENCH_UNIT_MS:
		b->Unit(benchmark::kMillisecond);
		break;
	case BENCH_UNIT_S:
		b->Unit(benchmark::kSecond);
		break;
	}
}

} /* namespace */

extern "C" {

void bench_register(const struct bench_def *def)
{
	harness_check(def);

	bench_fn fn = def->fn;
	void *arg = def->arg;
	bool has_range = def->range_min != 0 || def->range_max != 0;
	int ranges_count = has_range || def->args_count > 0 ? 1 : 0;
	std::string name(def->name);

	benchmark::internal::Benchmark *b = benchmark::RegisterBenchmark(
	    def->name, [fn, arg, ranges_count, name](benchmark::State &st) noexcept {
		    struct bench_state s = {&st, &name, ranges_count};

		    fn(&s, arg);
	    });

	if (has_range) {
		b->RangeMultiplier(def->range_mult != 0 ? static_cast<int>(def->range_mult) : 8);
		b->Range(def->range_min, def->range_max);
	}
	for (uint32_t i = 0; i < def->args_count; i++)
		b->Arg(def->args[i]);
	if (def->arg_name != nullptr && ranges_count > 0)
		b->ArgName(def->arg_name);
	if (def->real_time)
		b->UseRealTime();
	if (def->manual_time)
		b->UseManualTime();
	if (def->iterations > 0)
		b->Iterations(def->iterations);
	harness_set_unit(b, def->unit);
}

int bench_main(int argc, char **argv)
{
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;

	size_t benchmarks_count = benchmark::RunSpecifiedBenchmarks();

	benchmark::Shutdown();
	if (benchmarks_count == 0) {
		/* Google Benchmark has already said that the filter matched nothing. */
		return 1;
	}
	return errors_seen.load() ? 1 : 0;
}

bool bench_keep_running(struct bench_state *s)
{
	return s->st->KeepRunning();
}

bool bench_keep_running_batch(struct bench_state *s, int64_t n)
{
	if (n <= 0)
		harness_die(s->name->c_str(), "bench_keep_running_batch needs n > 0");
	return s->st->KeepRunningBatch(n);
}

int64_t bench_iterations(const struct bench_state *s)
{
	return static_cast<int64_t>(s->st->iterations());
}

int64_t bench_range(struct bench_state *s, int i)
{
	if (i < 0 || i >= s->ranges_count)
		harness_die(s->name->c_str(), "bench_range index beyond the def's arguments");
	return s->st->range(static_cast<size_t>(i));
}

void bench_set_items(struct bench_state *s, int64_t items)
{
	s->st->SetItemsProcessed(items);
}

void bench_set_bytes(struct bench_state *s, int64_t bytes)
{
	s->st->SetBytesProcessed(bytes);
}

void bench_counter(struct bench_state *s, const char *name, double value, int flags)
{
	int flags_known = BENCH_COUNTER_RATE | BENCH_COUNTER_AVG;
	int counter_flags = benchmark::Counter::kDefaults;

	if ((flags & ~flags_known) != 0)
		harness_die(s->name->c_str(), "bench_counter got unknown flags");
	if ((flags & BENCH_COUNTER_RATE) != 0)
		counter_flags |= benchmark::Counter::kIsRate;
	if ((flags & BENCH_COUNTER_AVG) != 0)
		counter_flags |= benchmark::Counter::kAvgIterations;
	s->st->counters[name] =
	    benchmark::Counter(value, static_cast<benchmark::Counter::Flags>(counter_flags));
}

void bench_latency_counters(struct bench_state *s, uint64_t *samples, uint64_t count, double per_us)
{
	if (count == 0)
		return;
	std::sort(samples, samples + count);
	bench_counter(s, "p50_us", (double)samples[count / 2] / per_us, 0);
	bench_counter(s, "p99_us", (double)samples[count * 99 / 100] / per_us, 0);
}

void bench_set_label(struct bench_state *s, const char *label)
{
	s->st->SetLabel(label);
}

void bench_pause(struct bench_state *s)
{
	s->st->PauseTiming();
}

void bench_resume(struct bench_state *s)
{
	s->st->ResumeTiming();
}

void bench_set_iteration_time(struct bench_state *s, double seconds)
{
	s->st->SetIterationTime(seconds);
}

void bench_do_not_optimize(const void *p)
{
	/* The asm statement behind DoNotOptimize takes p as an input and clobbers
	 * memory, so the compiler must assume the bytes at p are read. */
	benchmark::DoNotOptimize(p);
}

void bench_skip_with_error(struct bench_state *s, const char *msg)
{
	errors_seen.store(true);
	s->st->SkipWithError(msg);
}

} /* extern "C" */
