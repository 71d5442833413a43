/* flotilla-load's output: a progress line each second, the final report,
 * the JSON summary (--json) and the latency plot (--plot, through gnuplot). */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/load_internal.h"

/* --- Progress lines. --- */

static const char *const load_stat_names[LOAD_STAT_COUNT] = {
    "ops",          "reads",      "writes",         "not_found",        "bytes",
    "timeout",      "not_leader", "disconnected",   "server_error",     "bad_request",
    "no_space",     "redirects",  "leader_changes", "connections_lost", "connect_failures",
    "late_answers",
};

static volatile sig_atomic_t load_interrupted;

/* Take what every thread has published since the last call. */
static void load_collect(struct load_run *run, struct load_counts *counts, struct load_hist *hist)
{
	memset(counts, 0, sizeof(*counts));
	load_hist_reset(hist);
	for (uint32_t i = 0; i < run->opt.threads; i++) {
		struct load_thread *t = &run->threads[i];

		pthread_mutex_lock(&t->lock);
		load_counts_add(counts, &t->published);
		load_hist_add(hist, t->published_hist);
		memset(&t->published, 0, sizeof(t->published));
		if (!load_hist_is_empty(t->published_hist))
			load_hist_reset(t->published_hist);
		pthread_mutex_unlock(&t->lock);
	}
}

static double load_ms(uint64_t ns)
{
	return (double)ns / (double)NS_PER_MS;
}

/* ", timeout 3, disconnected 2" for the error kinds that are not zero. */
static void load_print_error_kinds(FILE *out, const struct load_counts *c, bool all)
{
	const char *sep = "";

	for (int i = LOAD_STAT_ERRORS_FIRST; i <= LOAD_STAT_ERRORS_LAST; i++) {
		if (c->v[i] == 0 && !all)
			continue;
		fprintf(out, "%s%s %llu", sep, load_stat_names[i], (unsigned long long)c->v[i]);
		sep = ", ";
	}
}

static void load_progress(struct load_run *run, uint64_t from_ns, uint64_t to_ns)
{
	struct load_counts c;
	struct load_hist *hist = malloc(sizeof(*hist));
	struct load_sample *s;
	double seconds = (double)(to_ns - from_ns) / NS_PER_S;

	if (hist == NULL || run->samples_count == run->samples_max || seconds <= 0) {
		free(hist);
		return;
	}
	load_collect(run, &c, hist);
	s = &run->samples[run->samples_count++];
	*s = (struct load_sample){
	    .t_s = (double)(to_ns - run->start_ns) / NS_PER_S,
	    .ops_per_s = (double)c.v[LOAD_STAT_OPS] / seconds,
	    .mb_per_s = (double)c.v[LOAD_STAT_BYTES] / seconds / 1e6,
	    .p50_ns = load_hist_percentile(hist, 50),
	    .p99_ns = load_hist_percentile(hist, 99),
	    .p999_ns = load_hist_percentile(hist, 99.9),
	    .errors = load_counts_errors(&c),
	    .redirects = c.v[LOAD_STAT_REDIRECTS],
	    .leader_changes = c.v[LOAD_STAT_LEADER_CHANGES],
	    .warmup = from_ns < run->measure_ns,
	};
	fprintf(run->out,
		"%6.1fs %9.0f ops/s %8.2f MB/s  p50 %7.3f  p99 %7.3f  p99.9 %7.3f ms  errors %llu",
		s->t_s, s->ops_per_s, s->mb_per_s, load_ms(s->p50_ns), load_ms(s->p99_ns),
		load_ms(s->p999_ns), (unsigned long long)s->errors);
	if (s->errors > 0) {
		fprintf(run->out, " (");
		load_print_error_kinds(run->out, &c, false);
		fprintf(run->out, ")");
	}
	fprintf(run->out, "  redirects %llu  leader changes %llu%s\n",
		(unsigned long long)s->redirects, (unsigned long long)s->leader_changes,
		s->warmup ? "  (warm-up)" : "");
	free(hist);
}

void load_on_signal(int sig)
{
	(void)sig;
	load_interrupted = 1;
}

/* Print a progress line each second until the end; SIGINT or SIGTERM brings
 * the end forward to now. */
void load_report_progress(struct load_run *run)
{
	uint64_t from = run->start_ns, tick = run->start_ns + NS_PER_S;

	for (;;) {
		uint64_t end = load_end_ns(run), target = tick < end ? tick : end, now;
		struct timespec ts = {.tv_sec = (time_t)(target / NS_PER_S),
				      .tv_nsec = (long)(target % NS_PER_S)};

		(void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		now = load_now_ns();
		if (load_interrupted && now < load_end_ns(run)) {
			atomic_store_explicit(&run->end_ns, now, memory_order_relaxed);
			fprintf(run->out, "interrupted: finishing the requests in flight\n");
			continue;
		}
		if (now < target)
			continue;
		load_progress(run, from, target);
		from = target;
		if (target >= end)
			return;
		tick += NS_PER_S;
	}
}

/* Percentiles in the report and in JSON. */
static const double load_percentiles[] = {50, 90, 99, 99.9, 99.99};

void load_print_mode(FILE *out, const struct load_options *opt)
{
	if (opt->open_loop)
		fprintf(out, "open loop at %.0f ops/s (at most %u in flight)", opt->rate,
			opt->inflight_max);
	else
		fprintf(out, "closed loop, %u in flight", opt->concurrency);
	fprintf(out, ", %u threads; %u nodes, %llu groups, %llu keys ", opt->threads,
		opt->nodes_count, (unsigned long long)opt->groups, (unsigned long long)opt->keys);
	if (opt->zipf_theta > 0)
		fprintf(out, "zipf %.4g", opt->zipf_theta);
	else
		fprintf(out, "uniform");
	fprintf(out, "; %.0f%% reads, %u-byte values\n", opt->read_ratio * 100, opt->value_size);
}

void load_print_report(struct load_run *run, const struct load_totals *t)
{
	FILE *out = run->out;
	const struct load_counts *c = &t->c;
	double per_s = t->seconds > 0 ? 1 / t->seconds : 0;

	fprintf(out, "\n== flotilla-load: ");
	load_print_mode(out, &run->opt);
	fprintf(out, "measured     %.2f s after a %.2f s warm-up\n", t->seconds, run->opt.warmup_s);
	fprintf(out, "requests     %llu ok (%llu reads, %llu writes; %llu reads found nothing)\n",
		(unsigned long long)c->v[LOAD_STAT_OPS], (unsigned long long)c->v[LOAD_STAT_READS],
		(unsigned long long)c->v[LOAD_STAT_WRITES],
		(unsigned long long)c->v[LOAD_STAT_NOT_FOUND]);
	fprintf(out, "throughput   %.1f ops/s, %.3f MB/s\n", (double)c->v[LOAD_STAT_OPS] * per_s,
		(double)c->v[LOAD_STAT_BYTES] * per_s / 1e6);
	fprintf(out,
		"latency ms   min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean "
		"%.3f\n",
		load_ms(load_hist_is_empty(t->hist) ? 0 : t->hist->min),
		load_ms(load_hist_percentile(t->hist, 50)),
		load_ms(load_hist_percentile(t->hist, 90)),
		load_ms(load_hist_percentile(t->hist, 99)),
		load_ms(load_hist_percentile(t->hist, 99.9)), load_ms(t->hist->max),
		load_ms(load_hist_mean(t->hist)));
	fprintf(out, "errors       %llu (", (unsigned long long)load_counts_errors(c));
	load_print_error_kinds(out, c, true);
	fprintf(out, ")\n");
	fprintf(out, "routing      %llu redirects, %llu leader changes seen, %llu late answers\n",
		(unsigned long long)c->v[LOAD_STAT_REDIRECTS],
		(unsigned long long)c->v[LOAD_STAT_LEADER_CHANGES],
		(unsigned long long)c->v[LOAD_STAT_LATE]);
	fprintf(out, "connections  %llu lost, %llu failed connects\n",
		(unsigned long long)c->v[LOAD_STAT_CONNS_LOST],
		(unsigned long long)c->v[LOAD_STAT_CONNECTS_FAILED]);
	if (run->opt.open_loop)
		fprintf(
		    out,
		    "open loop    %llu requests due but never sent (the cluster fell behind, or "
		    "--inflight-max was reached)\n",
		    (unsigned long long)t->unsent);
}

static double load_us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

/* Points of the latency distribution: for fractions q = 1 - 10^(-k/20),
 * k = 0, 1, ..., while 1/(1-q) stays within the number of values, then the
 * max. Calls point(q, value_ns) for each. */
static void load_distribution(const struct load_hist *hist,
			      void (*point)(double q, uint64_t value_ns, void *arg), void *arg)
{
	if (load_hist_is_empty(hist))
		return;
	for (int k = 0; k <= 200; k++) {
		double q = 1 - pow(10, -k / 20.0);

		if (1 / (1 - q) > (double)hist->total)
			break;
		point(q, load_hist_percentile(hist, q * 100), arg);
	}
	point(1, hist->max, arg);
}

struct load_json_point {
	FILE *f;
	const char *sep;
};

static void load_json_point(double q, uint64_t value_ns, void *arg)
{
	struct load_json_point *p = arg;

	fprintf(p->f, "%s\n    {\"percentile\": %.6g, \"latency_us\": %.1f}", p->sep, q * 100,
		load_us(value_ns));
	p->sep = ",";
}

static void load_json_write(FILE *f, struct load_run *run, const struct load_totals *t)
{
	const struct load_options *o = &run->opt;
	const struct load_counts *c = &t->c;
	struct load_json_point point = {.f = f, .sep = ""};

	fprintf(f, "{\n  \"mode\": \"%s\", \"concurrency\": %u, \"rate\": %.1f, \"threads\": %u,\n",
		o->open_loop ? "open" : "closed", o->open_loop ? 0 : o->concurrency,
		o->open_loop ? o->rate : 0, o->threads);
	fprintf(f, "  \"nodes\": %u, \"groups\": %llu, \"keys\": %llu, \"dist\": \"%s\", ",
		o->nodes_count, (unsigned long long)o->groups, (unsigned long long)o->keys,
		o->zipf_theta > 0 ? "zipf" : "uniform");
	fprintf(f, "\"zipf_theta\": %.4g, \"read_ratio\": %.4g, \"value_size\": %u,\n",
		o->zipf_theta, o->read_ratio, o->value_size);
	fprintf(f, "  \"warmup_s\": %.3f, \"duration_s\": %.3f, \"timeout_ms\": %u,\n", o->warmup_s,
		t->seconds, o->timeout_ms);
	fprintf(f, "  \"ops_per_s\": %.1f, \"mb_per_s\": %.4f, \"unsent\": %llu,\n",
		t->seconds > 0 ? (double)c->v[LOAD_STAT_OPS] / t->seconds : 0,
		t->seconds > 0 ? (double)c->v[LOAD_STAT_BYTES] / t->seconds / 1e6 : 0,
		(unsigned long long)t->unsent);
	fprintf(f, "  \"errors\": %llu,\n ", (unsigned long long)load_counts_errors(c));
	for (int i = 0; i < LOAD_STAT_COUNT; i++)
		fprintf(f, " \"%s\": %llu,", load_stat_names[i], (unsigned long long)c->v[i]);
	fprintf(f, "\n  \"latency_us\": {\"min\": %.1f, \"mean\": %.1f, \"max\": %.1f",
		load_us(load_hist_is_empty(t->hist) ? 0 : t->hist->min),
		load_us(load_hist_mean(t->hist)), load_us(t->hist->max));
	for (size_t i = 0; i < sizeof(load_percentiles) / sizeof(load_percentiles[0]); i++)
		fprintf(f, ", \"p%g\": %.1f", load_percentiles[i],
			load_us(load_hist_percentile(t->hist, load_percentiles[i])));
	fprintf(f, "},\n  \"timeline\": [");
	for (uint32_t i = 0; i < run->samples_count; i++) {
		const struct load_sample *s = &run->samples[i];

		fprintf(
		    f,
		    "%s\n    {\"t_s\": %.3f, \"warmup\": %s, \"ops_per_s\": %.1f, \"mb_per_s\": "
		    "%.4f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"p99.9_us\": %.1f, \"errors\": "
		    "%llu, \"redirects\": %llu, \"leader_changes\": %llu}",
		    i > 0 ? "," : "", s->t_s, s->warmup ? "true" : "false", s->ops_per_s,
		    s->mb_per_s, load_us(s->p50_ns), load_us(s->p99_ns), load_us(s->p999_ns),
		    (unsigned long long)s->errors, (unsigned long long)s->redirects,
		    (unsigned long long)s->leader_changes);
	}
	if (run->check.done)
		fprintf(
		    f,
		    "\n  ],\n  \"check\": {\"linearizable\": %s, \"keys\": %llu, \"operations\": "
		    "%llu, \"unknown_outcome\": %llu, \"ops_max_per_key\": %llu, "
		    "\"violations\": %llu, \"undecided\": %llu, \"seconds\": %.3f",
		    run->check.result.violations + run->check.result.undecided == 0 ? "true"
										    : "false",
		    (unsigned long long)run->check.result.keys_count,
		    (unsigned long long)run->check.result.ops_count,
		    (unsigned long long)run->check.result.pending_count,
		    (unsigned long long)run->check.result.ops_max_per_key,
		    (unsigned long long)run->check.result.violations,
		    (unsigned long long)run->check.result.undecided, run->check.seconds);
	fprintf(f, "%s,\n  \"latency_distribution\": [", run->check.done ? "}" : "\n  ]");
	load_distribution(t->hist, load_json_point, &point);
	fprintf(f, "\n  ]\n}\n");
}

/* Returns 0 or EXIT_RUN after saying why. */
int load_write_json(struct load_run *run, const struct load_totals *t)
{
	const char *path = run->opt.json_path;
	FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
	int failed;

	if (f == NULL) {
		fprintf(stderr, "flotilla-load: cannot write %s: %s\n", path, strerror(errno));
		return EXIT_RUN;
	}
	load_json_write(f, run, t);
	failed = ferror(f) || fflush(f) != 0;
	if (f != stdout)
		failed |= fclose(f) != 0;
	if (failed) {
		fprintf(stderr, "flotilla-load: writing %s failed\n", path);
		return EXIT_RUN;
	}
	return 0;
}

static bool load_has_program(const char *name)
{
	const char *path = getenv("PATH");

	while (path != NULL && *path != '\0') {
		size_t len = strcspn(path, ":");
		char candidate[PATH_MAX];

		if (len > 0 &&
		    snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)len, path, name) <
			(int)sizeof(candidate) &&
		    access(candidate, X_OK) == 0)
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

struct load_plot_points {
	FILE *f;
	double total; /* Values in the histogram. */
};

static void load_plot_point(double q, uint64_t value_ns, void *arg)
{
	struct load_plot_points *p = arg;

	/* x = 1 / (1 - q) puts p90, p99, p99.9 ... at equal steps on a log
	 * axis; the max sits at x = values, the rank it has. */
	fprintf(p->f, "%.6g %.6f\n", q < 1 ? 1 / (1 - q) : p->total, load_ms(value_ns));
}

/* Draw the plot with gnuplot: throughput (and p50/p99) per second on top,
 * the latency distribution of the measured requests below. Returns 0, or
 * EXIT_RUN when gnuplot failed; a missing gnuplot is said and skipped. */
int load_write_plot(struct load_run *run, const struct load_totals *t)
{
	const char *path = run->opt.plot_path;
	struct load_plot_points points = {.total = (double)t->hist->total};
	FILE *gp;

	if (!load_has_program("gnuplot")) {
		fprintf(stderr, "flotilla-load: --plot: gnuplot is not installed (Debian: apt-get "
				"install gnuplot-nox); no plot drawn\n");
		return 0;
	}
	if (strpbrk(path, "'\"\n\\") != NULL) {
		fprintf(stderr, "flotilla-load: --plot: quotes or backslashes in '%s'\n", path);
		return EXIT_RUN;
	}
	gp = popen("gnuplot", "w");
	if (gp == NULL) {
		fprintf(stderr, "flotilla-load: --plot: cannot run gnuplot: %s\n", strerror(errno));
		return EXIT_RUN;
	}
	fprintf(gp, "$timeline << EOD\n");
	for (uint32_t i = 0; i < run->samples_count; i++)
		fprintf(gp, "%.3f %.1f %.6f %.6f\n", run->samples[i].t_s, run->samples[i].ops_per_s,
			load_ms(run->samples[i].p50_ns), load_ms(run->samples[i].p99_ns));
	fprintf(gp, "EOD\n$latency << EOD\n");
	points.f = gp;
	load_distribution(t->hist, load_plot_point, &points);
	fprintf(gp,
		"EOD\n"
		"set terminal pngcairo size 1200,1000 noenhanced\n"
		"set output '%s'\n"
		"set multiplot layout 2,1 title 'flotilla-load: %s loop, %u nodes, %llu groups'\n"
		"set grid\n"
		"set xlabel 'time (s)'\nset ylabel 'ops/s'\nset y2label 'latency (ms)'\n"
		"set ytics nomirror\nset y2tics\nset yrange [0:*]\nset y2range [0:*]\n"
		"set key top left\n"
		"plot $timeline using 1:2 with lines lw 2 title 'ops/s', \\\n"
		"     $timeline using 1:3 axes x1y2 with lines title 'p50 ms', \\\n"
		"     $timeline using 1:4 axes x1y2 with lines title 'p99 ms'\n"
		"unset y2label\nunset y2tics\nset ytics mirror\nset yrange [0:*]\n"
		"set logscale x\nset xlabel 'percentile'\nset ylabel 'latency (ms)'\n"
		/* Tic labels are formats to gnuplot: a percent sign is "%%" there,
		 * "%%%%" here. */
		"set xtics ('0%%%%' 1, '90%%%%' 10, '99%%%%' 100, '99.9%%%%' 1000, "
		"'99.99%%%%' 10000, '99.999%%%%' 100000, '99.9999%%%%' 1000000)\n"
		"plot $latency using 1:2 with steps lw 2 title 'latency by percentile (measured)'\n"
		"unset multiplot\n",
		path, run->opt.open_loop ? "open" : "closed", run->opt.nodes_count,
		(unsigned long long)run->opt.groups);
	if (pclose(gp) != 0) {
		fprintf(stderr, "flotilla-load: --plot: gnuplot failed\n");
		return EXIT_RUN;
	}
	fprintf(run->out, "plot: %s\n", path);
	return 0;
}
