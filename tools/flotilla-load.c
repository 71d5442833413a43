/* flotilla-load: drives a running cluster of flotilla-node processes through
 * the client protocol (tools/client.h) and reports throughput, latency and
 * every error it meets.
 *
 * Threads: --threads load threads, each with its own connection to every
 * node, its own epoll set, its own share of the requests in flight and its
 * own histograms; the main thread discovers the leaders, prints a progress
 * line every second and the final report. The leader of each group is a
 * table shared by all threads (relaxed atomics: a stale entry only costs a
 * redirect).
 *
 * Connections are tools/client.h's struct client (codec, buffers and a
 * non-blocking socket) under this driver's own epoll loop. Its router is not
 * used: it runs a batch of calls to completion, which would pace an open
 * loop by its slowest request and fold redirects, timeouts and lost
 * connections into one outcome per call, where this driver counts each.
 *
 * The happy path of a request: pick a key (uniform or Zipfian, scattered
 * over the key space; key k belongs to group 1 + k % groups), pick GET or PUT
 * by --read-ratio, encode it into the output buffer of the connection to the
 * group's leader, flush all connections once per loop turn, match the answer
 * to its slot by request_id (slot in the low LOAD_SLOT_BITS bits, a sequence
 * number above, so a late answer to a timed-out request matches nothing) and
 * record its latency.
 *
 * Closed loop: each slot is one virtual client that sends its next request
 * as soon as the previous one ends. Open loop: requests are due at fixed
 * intervals from the start, whatever happens to earlier ones, and latency
 * counts from the time a request was due, not from when it could be sent:
 * when the cluster stalls, the stall shows in the latency of every request
 * that should have gone out meanwhile (no coordinated omission). Requests
 * still due when the run ends are reported as unsent.
 *
 * Failure modes, each counted and shown, never retried silently:
 * - NOT_LEADER: re-sent to the hinted leader (a redirect); without a useful
 *   hint, to the next node after a short backoff; after --redirects-max
 *   redirects the request fails as not_leader.
 * - No answer within --timeout-ms of the first send: a timeout; a later
 *   answer is counted as late and otherwise ignored.
 * - Connection loss: its requests in flight fail as disconnected, and the
 *   connection is retried with exponential backoff (connect failures are
 *   counted too).
 * - ERROR and BAD_REQUEST answers: server_error and bad_request; NO_SPACE
 *   (a leader whose disk is full refused the write): no_space.
 *
 * Measurement: a request counts in the final report when it was due after
 * the warm-up and before the end; requests in flight at the end are waited
 * for (at most --timeout-ms). Bytes are payload bytes: values written by PUT
 * and values read by GET.
 *
 * Checking (--check): every request is recorded with a time read before it
 * was first sent and one read after its answer was received, so each
 * interval holds the moment the node acted on it; every PUT
 * writes a value no other PUT writes (16 bytes: this run's nonce, then
 * thread and sequence number), so a GET names the write it saw. A request
 * without an answer (timeout, lost connection, error, redirects spent) has an
 * unknown outcome. After the run, tools/lincheck.h checks the history key by
 * key against a register per key and prints each violation with the
 * operations around it. --check-history saves the history, one line per
 * operation, and --check-file checks a saved one without a cluster. With
 * --check off, all it costs the request path is a few tests of flags.
 *
 * The program is split by concern (tools/load_internal.h has the map): the
 * flags in load_options.c, the load threads in load_driver.c, the output in
 * load_report.c, the history and its check in load_check.c; this file holds
 * what the threads share, finds the leaders and runs the whole.
 *
 * Exit status: 0 when the run completed (errors or not), 1 when it could not
 * run or write its output, 2 on bad usage, 3 when the history is not
 * linearizable, 4 when the checker could not decide for some key (within its
 * memory bound) and found no violation. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
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

uint64_t load_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t load_end_ns(struct load_run *run)
{
	return atomic_load_explicit(&run->end_ns, memory_order_relaxed);
}

/* --- Random numbers: xoshiro256**, seeded through splitmix64. --- */

uint64_t load_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t load_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t load_rng_next(uint64_t s[4])
{
	uint64_t result = load_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = load_rotl(s[3], 45);
	return result;
}

/* Uniform in [0, 1). */
double load_rng_double(uint64_t s[4])
{
	return (double)(load_rng_next(s) >> 11) * 0x1.0p-53;
}

/* --- Counters and the shared leader table. --- */

void load_tally(struct load_thread *t, bool measured, enum load_stat stat, uint64_t n)
{
	t->interval.v[stat] += n;
	if (measured)
		t->measured.v[stat] += n;
}

void load_counts_add(struct load_counts *dst, const struct load_counts *src)
{
	for (int i = 0; i < LOAD_STAT_COUNT; i++)
		dst->v[i] += src->v[i];
}

uint64_t load_counts_errors(const struct load_counts *c)
{
	uint64_t errors = 0;

	for (int i = LOAD_STAT_ERRORS_FIRST; i <= LOAD_STAT_ERRORS_LAST; i++)
		errors += c->v[i];
	return errors;
}

bool load_is_measuring(struct load_run *run, uint64_t now)
{
	return now >= run->measure_ns && now < load_end_ns(run);
}

uint64_t load_group_of(const struct load_run *run, uint64_t key)
{
	return 1 + key % run->opt.groups;
}

/* Node slot of the leader of group as last heard, or -1. */
int load_leader(const struct load_run *run, uint64_t group)
{
	uint32_t v = atomic_load_explicit(&run->leaders[group - 1], memory_order_relaxed);

	return v == 0 ? -1 : (int)v - 1;
}

/* Remember node_slot as group's leader. Returns whether that replaced
 * another known leader: a leader change as seen from here. */
bool load_learn_leader(struct load_run *run, uint64_t group, uint32_t node_slot)
{
	_Atomic uint32_t *entry = &run->leaders[group - 1];
	uint32_t old = atomic_load_explicit(entry, memory_order_relaxed);

	if (old == node_slot + 1)
		return false;
	/* Of several threads that learn the same change, one wins and counts it. */
	if (!atomic_compare_exchange_strong_explicit(entry, &old, node_slot + 1,
						     memory_order_relaxed, memory_order_relaxed))
		return false;
	return old != 0;
}

int load_node_slot(const struct load_run *run, uint64_t node_id)
{
	for (uint32_t i = 0; i < run->opt.nodes_count; i++)
		if (run->opt.nodes[i].id == node_id)
			return (int)i;
	return -1;
}

/* --- Leader discovery, before the load starts. --- */

/* Ask one node for the leaders of the groups not known yet. Returns how many
 * it taught us. */
static uint64_t load_discover_from(struct load_run *run, struct client *c)
{
	uint64_t learned = 0, group = 1;

	while (group <= run->opt.groups) {
		uint32_t sent = 0;

		for (; group <= run->opt.groups && sent < LOAD_DISCOVER_BATCH; group++) {
			struct client_request req = {
			    .op = CLIENT_OP_LEADER, .request_id = group, .group = group};

			if (load_leader(run, group) >= 0)
				continue;
			if (client_send(c, &req) != 0)
				return learned;
			sent++;
		}
		for (uint32_t i = 0; i < sent; i++) {
			struct client_response resp;
			int node_slot;

			if (client_wait(c, &resp, 1000) != 0)
				return learned;
			node_slot = load_node_slot(run, resp.leader_hint);
			if (resp.status != CLIENT_STATUS_OK || node_slot < 0 ||
			    resp.request_id < 1 || resp.request_id > run->opt.groups)
				continue;
			if (load_leader(run, resp.request_id) < 0)
				learned++;
			load_learn_leader(run, resp.request_id, (uint32_t)node_slot);
		}
	}
	return learned;
}

/* Learn the leader of every group, asking the nodes in turn until all are
 * known or --leader-wait-ms has passed (groups may still be electing just
 * after the cluster started). Returns 0, or -EHOSTUNREACH when no node
 * answered at all. */
static int load_discover(struct load_run *run)
{
	uint64_t started = load_now_ns(), known = 0, per_node[LOAD_NODES_MAX] = {0};
	uint64_t deadline = started + (uint64_t)run->opt.leader_wait_ms * NS_PER_MS;
	bool reached = false;

	for (uint32_t round = 0;; round++) {
		uint32_t node_slot = round % run->opt.nodes_count;
		struct client c;
		int rv = client_connect(&c, run->opt.nodes[node_slot].addr, 1000);

		if (rv == -EPROTO && round < run->opt.nodes_count) /* Once per node. */
			fprintf(stderr, "flotilla-load: %s\n", client_error_text(rv));
		if (rv == 0) {
			reached = true;
			known += load_discover_from(run, &c);
			client_close(&c);
		}
		if (known == run->opt.groups || load_now_ns() >= deadline)
			break;
		if (node_slot == run->opt.nodes_count - 1 || !reached)
			usleep(LOAD_DISCOVER_PAUSE_MS * 1000);
	}
	if (!reached) {
		fprintf(stderr, "flotilla-load: no node answered within %u ms\n",
			run->opt.leader_wait_ms);
		return -EHOSTUNREACH;
	}
	for (uint64_t g = 1; g <= run->opt.groups; g++)
		if (load_leader(run, g) >= 0)
			per_node[load_leader(run, g)]++;
	fprintf(run->out, "leaders: %llu of %llu groups known after %.2f s (",
		(unsigned long long)known, (unsigned long long)run->opt.groups,
		(double)(load_now_ns() - started) / NS_PER_S);
	for (uint32_t i = 0; i < run->opt.nodes_count; i++)
		fprintf(run->out, "%snode %llu: %llu", i > 0 ? ", " : "",
			(unsigned long long)run->opt.nodes[i].id, (unsigned long long)per_node[i]);
	fprintf(run->out, ")\n");
	if (known < run->opt.groups)
		fprintf(run->out,
			"warning: %llu groups have no known leader yet (do groups 1..%llu "
			"exist on the cluster?)\n",
			(unsigned long long)(run->opt.groups - known),
			(unsigned long long)run->opt.groups);
	return 0;
}

/* --- The run. --- */

/* Sum the measured counts of every thread (after they ended). */
void load_totals(struct load_run *run, struct load_totals *t)
{
	uint64_t end = load_end_ns(run);

	memset(&t->c, 0, sizeof(t->c));
	load_hist_reset(t->hist);
	t->unsent = 0;
	for (uint32_t i = 0; i < run->opt.threads; i++) {
		load_counts_add(&t->c, &run->threads[i].measured);
		load_hist_add(t->hist, run->threads[i].measured_hist);
		t->unsent += run->threads[i].unsent;
	}
	t->seconds = end > run->measure_ns ? (double)(end - run->measure_ns) / NS_PER_S : 0;
}

/* Start the threads, report progress until the end, wait for them. Returns
 * 0 or EXIT_RUN. */
static int load_run_threads(struct load_run *run)
{
	const struct load_options *o = &run->opt;
	struct sigaction sa = {.sa_handler = load_on_signal};
	sigset_t block, old;
	uint32_t started = 0;
	int rv = 0;

	/* The load threads never see SIGINT/SIGTERM: the reporter handles them. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (; started < o->threads; started++) {
		if (pthread_create(&run->threads[started].pthread, NULL, load_thread_main,
				   &run->threads[started]) != 0) {
			fprintf(stderr, "flotilla-load: cannot start thread %u\n", started);
			atomic_store(&run->end_ns, run->start_ns); /* The others stop at once. */
			rv = EXIT_RUN;
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv == 0) {
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		load_report_progress(run);
	}
	for (uint32_t i = 0; i < started; i++)
		pthread_join(run->threads[i].pthread, NULL);
	return rv;
}

/* Everything after the options: returns the exit status. */
static int load_main(struct load_run *run)
{
	struct load_options *o = &run->opt;
	struct load_totals totals = {.hist = malloc(sizeof(struct load_hist))};
	uint32_t initialized = 0;
	int rv = EXIT_RUN;

	run->leaders = calloc(o->groups, sizeof(*run->leaders));
	run->threads = calloc(o->threads, sizeof(*run->threads));
	run->samples_max = (uint32_t)ceil(o->warmup_s + o->duration_s) + 2;
	run->samples = calloc(run->samples_max, sizeof(*run->samples));
	if (totals.hist == NULL || run->leaders == NULL || run->threads == NULL ||
	    run->samples == NULL) {
		fprintf(stderr, "flotilla-load: out of memory\n");
		goto out;
	}
	if (o->zipf_theta > 0 && load_zipf_init(&run->zipf, o->keys, o->zipf_theta) != 0)
		goto out;
	load_zipf_scatter_init(&run->scatter, o->keys, o->seed);
	fprintf(run->out, "flotilla-load: ");
	load_print_mode(run->out, o);
	if (load_discover(run) != 0)
		goto out;
	run->start_ns = load_now_ns() + 100 * NS_PER_MS; /* Time for the threads to start. */
	run->measure_ns = run->start_ns + (uint64_t)(o->warmup_s * (double)NS_PER_S);
	atomic_init(&run->end_ns, run->measure_ns + (uint64_t)(o->duration_s * (double)NS_PER_S));
	for (; initialized < o->threads; initialized++) {
		if (load_thread_init(&run->threads[initialized], run, initialized) != 0) {
			fprintf(stderr, "flotilla-load: cannot set up thread %u\n", initialized);
			initialized++;
			goto out;
		}
	}
	if (load_run_threads(run) != 0)
		goto out;
	load_totals(run, &totals);
	load_print_report(run, &totals);
	rv = o->check ? load_check_run(run) : 0;
	if (o->json_path != NULL && load_write_json(run, &totals) != 0)
		rv = EXIT_RUN;
	if (o->plot_path != NULL && load_write_plot(run, &totals) != 0)
		rv = EXIT_RUN;
out:
	for (uint32_t i = 0; i < initialized; i++)
		load_thread_deinit(&run->threads[i]);
	free(run->threads);
	free(run->samples);
	free(run->leaders);
	free(totals.hist);
	return rv;
}

int main(int argc, char **argv)
{
	static struct load_run run;
	struct load_options *o = &run.opt;
	uint32_t total;
	int rv;

	rv = load_parse_options(o, argc, argv);
	if (rv != 0)
		return rv;
	if (o->threads > (o->open_loop ? o->inflight_max : o->concurrency))
		o->threads = o->open_loop ? o->inflight_max : o->concurrency;
	total = o->open_loop ? o->inflight_max : o->concurrency;
	if ((total + o->threads - 1) / o->threads > LOAD_SLOTS_MAX) {
		fprintf(stderr,
			"flotilla-load: more than %u requests in flight per thread: add "
			"--threads\n",
			LOAD_SLOTS_MAX);
		return EXIT_USAGE;
	}
	run.out = o->json_path != NULL && strcmp(o->json_path, "-") == 0 ? stderr : stdout;
	setvbuf(run.out, NULL, _IOLBF, 0);
	run.check.out = run.out;
	if (o->check_file_path != NULL)
		return load_check_file(&run);
	/* A test of the check against real anomalies: GETs become LOCAL_GETs
	 * (no read barrier) to any node, so followers that lag answer stale
	 * values, which the check must report. */
	run.stale_reads = o->check && getenv("FLOTILLA_LOAD_CHECK_STALE_READS") != NULL &&
			  strcmp(getenv("FLOTILLA_LOAD_CHECK_STALE_READS"), "1") == 0;
	if (run.stale_reads)
		fprintf(run.out, "FLOTILLA_LOAD_CHECK_STALE_READS: reads without a read barrier, "
				 "from any node: the check should fail\n");
	/* Values of earlier runs on the same cluster must not pass for this
	 * run's: the nonce differs from run to run. */
	run.nonce = load_splitmix(&(uint64_t){o->seed ^ load_now_ns() ^ (uint64_t)getpid() << 32});
	return load_main(&run);
}
