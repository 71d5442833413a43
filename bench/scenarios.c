/* flotilla-scenarios: failover and scale scenarios against real
 * flotilla-node processes: three nodes on 127.0.0.1, WALs on the disk under
 * --dir (fdatasync on), talked to through the client protocol
 * (tools/client.h). This program starts, signals and restarts the nodes
 * itself, by PID, and leaves none running when it exits.
 *
 *   election  One group. Each trial: once every node has been up for an
 *             election timeout plus a heartbeat (--min-uptime-ms: a node that
 *             restarted more recently refuses to vote), PUT through the
 *             leader and wait until every node has applied it; then, after a
 *             random pause shorter than a heartbeat, kill -9 (or SIGSTOP) the
 *             leader's process.
 *             The figure runs from just before kill(2) to the first PUT that
 *             a surviving node acknowledges as leader, i.e. a survivor won
 *             the election and committed an entry of its term. Both
 *             survivors are polled with PUT, one request each in flight,
 *             every --poll-us. kill -9 resets the connections (the fast
 *             path); SIGSTOP keeps them open, so the survivors must time the
 *             leader out. The old leader is then killed and restarted from
 *             its WAL.
 *   mass      --mass-groups groups. Each trial starts the three nodes (from
 *             their WALs after the first), PUTs into every group, kills -9
 *             the node that leads the count closest to a third, and times
 *             until every group has acknowledged a PUT from a live leader.
 *             A group without a leader is asked again every --retry-ms.
 *   idle      For each of --idle-groups: a fresh cluster with that many
 *             groups (quiesce on). Times from the first fork to every node
 *             ready, and to every group having a leader (the sum of "this
 *             node leads N of M groups" over the nodes' logs, which the node
 *             updates every 200 ms); waits until groups quiesce (3 election timeouts of
 *             idleness, plus --idle-settle-ms), then measures each node's
 *             CPU (utime+stime from /proc/PID/stat) over --idle-window-s
 *             seconds and its RSS (/proc/PID/status).
 *
 * Percentiles are nearest-rank over the trials: with 50 trials p99 is the
 * largest. Exit status: 0 when every trial completed, 1 when one failed or a
 * node misbehaved (its log is under --dir), 2 on bad usage. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tools/client.h"

#define SC_NODES          3
#define SC_IDLE_SIZES_MAX 8
#define SC_TRIALS_MAX     100000
#define SC_PIPELINE_MAX   512 /* Requests in flight per connection (node default: 1024). */
#define SC_READY_WAIT_MS  300000
#define SC_STOP_WAIT_MS   60000
#define SC_CONNECT_MS     200
#define SC_REQUEST_MS     3000 /* A request unanswered for this long is sent again. */
#define SC_NS_PER_MS      1000000ull

struct sc_opt {
	const char *node_bin;
	const char *dir;
	const char *json_path;
	bool run_election, run_mass, run_idle;
	bool fault_kill, fault_stop;
	uint32_t trials;
	uint32_t mass_trials, mass_groups;
	uint64_t idle_groups[SC_IDLE_SIZES_MAX];
	uint32_t idle_sizes;
	uint32_t election_ms, heartbeat_ms, shards;
	uint32_t poll_us, retry_ms, settle_ms;
	uint32_t idle_window_s, idle_settle_ms;
	uint32_t base_port; /* 0: random. */
	int64_t uptime_ms;  /* Election: youngest node's age at a kill; -1: auto. */
	uint64_t seed;
	bool quiet;
};

struct sc_node {
	uint64_t id;
	pid_t pid; /* 0: not running. */
	bool stopped;
	struct client conn;
	uint64_t retry_conn_ns;
	char data_dir[PATH_MAX];
	char log_path[PATH_MAX];
	off_t log_offset; /* Parsed up to here. */
	uint64_t leads;   /* From the last "leads N of M" line. */
	uint32_t inflight;
	uint64_t ready_at_ns; /* When it printed its ready line. */
};

struct sc_cluster {
	const struct sc_opt *opt;
	char dir[PATH_MAX];
	uint32_t groups;
	uint32_t base_port;
	uint64_t next_request;
	struct sc_node nodes[SC_NODES];
};

/* PIDs of running nodes, for the signal handler. */
static volatile pid_t sc_pids[SC_NODES];
static uint64_t sc_rng_state;

static uint64_t sc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double sc_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static uint64_t sc_rand(void)
{
	/* splitmix64. */
	uint64_t z = (sc_rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void sc_sleep_ms(uint32_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

__attribute__((format(printf, 2, 3))) static void sc_log(const struct sc_opt *opt, const char *fmt,
							 ...)
{
	va_list ap;

	if (opt->quiet)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void sc_loadavg(double load[3])
{
	FILE *f = fopen("/proc/loadavg", "r");

	load[0] = load[1] = load[2] = -1;
	if (f == NULL)
		return;
	if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
		load[0] = load[1] = load[2] = -1;
	fclose(f);
}

/* --- Statistics. --- */

static int sc_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct sc_stats {
	uint32_t count;
	double min, p50, p99, max, mean;
};

/* Nearest-rank percentiles of ns values (sorted in place), in ms. */
static struct sc_stats sc_stats(uint64_t *v, uint32_t n)
{
	struct sc_stats s = {.count = n};
	double sum = 0;

	if (n == 0)
		return s;
	qsort(v, n, sizeof(*v), sc_cmp_u64);
	for (uint32_t i = 0; i < n; i++)
		sum += sc_ms(v[i]);
	s.min = sc_ms(v[0]);
	s.max = sc_ms(v[n - 1]);
	s.p50 = sc_ms(v[(n + 1) / 2 - 1]);
	s.p99 = sc_ms(v[(uint32_t)((99ull * n + 99) / 100) - 1]);
	s.mean = sum / n;
	return s;
}

/* --- Node processes. --- */

static void sc_on_signal(int sig)
{
	for (int i = 0; i < SC_NODES; i++)
		if (sc_pids[i] > 0)
			kill(sc_pids[i], SIGKILL);
	_exit(128 + sig);
}

static int sc_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

/* Remove a node's data directory and log: only paths this program named. */
static void sc_node_wipe(struct sc_node *n)
{
	struct stat st;

	if (lstat(n->data_dir, &st) == 0 &&
	    nftw(n->data_dir, sc_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "scenarios: cannot remove %s: %s\n", n->data_dir, strerror(errno));
	unlink(n->log_path);
	n->log_offset = 0;
	n->leads = 0;
}

static int sc_cluster_init(struct sc_cluster *c, const struct sc_opt *opt, const char *name,
			   uint32_t groups)
{
	memset(c, 0, sizeof(*c));
	c->opt = opt;
	c->groups = groups;
	c->base_port =
	    opt->base_port != 0 ? opt->base_port : 20000 + 2 * (uint32_t)(sc_rand() % 20000);
	if (snprintf(c->dir, sizeof(c->dir), "%s/%s", opt->dir, name) >= (int)sizeof(c->dir))
		return -ENAMETOOLONG;
	if (mkdir(opt->dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	if (mkdir(c->dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	for (uint32_t i = 0; i < SC_NODES; i++) {
		struct sc_node *n = &c->nodes[i];

		n->id = i + 1;
		n->conn.fd = -1;
		if (snprintf(n->data_dir, sizeof(n->data_dir), "%s/node-%u", c->dir, i + 1) >=
			(int)sizeof(n->data_dir) ||
		    snprintf(n->log_path, sizeof(n->log_path), "%s/node-%u.log", c->dir, i + 1) >=
			(int)sizeof(n->log_path))
			return -ENAMETOOLONG;
	}
	return 0;
}

static uint32_t sc_peer_port(const struct sc_cluster *c, uint32_t i)
{
	return c->base_port + 2 * i;
}

static uint32_t sc_client_port(const struct sc_cluster *c, uint32_t i)
{
	return c->base_port + 2 * i + 1;
}

/* Fork and exec node i; its stdout comes back through *out_fd (the ready
 * line), its stderr goes to its log. */
static int sc_node_spawn(struct sc_cluster *c, uint32_t i, int *out_fd)
{
	const struct sc_opt *opt = c->opt;
	struct sc_node *n = &c->nodes[i];
	static char buf[24][PATH_MAX];
	char *argv[26];
	int argc = 0, fds[2], log_fd;
	uint32_t b = 0;
	pid_t pid, parent = getpid();

#define SC_PUSH(...)                                                                               \
	do {                                                                                       \
		snprintf(buf[b], sizeof(buf[b]), __VA_ARGS__);                                     \
		argv[argc++] = buf[b++];                                                           \
	} while (0)
	SC_PUSH("%s", opt->node_bin);
	SC_PUSH("--id=%llu", (unsigned long long)n->id);
	SC_PUSH("--cluster-id=1");
	SC_PUSH("--data=%s", n->data_dir);
	SC_PUSH("--listen=127.0.0.1:%u", sc_peer_port(c, i));
	SC_PUSH("--client=127.0.0.1:%u", sc_client_port(c, i));
	for (uint32_t j = 0; j < SC_NODES; j++)
		if (j != i)
			SC_PUSH("--peer=%u=127.0.0.1:%u", j + 1, sc_peer_port(c, j));
	SC_PUSH("--members=1,2,3");
	SC_PUSH("--shards=%u", opt->shards);
	SC_PUSH("--groups=%u", c->groups);
	SC_PUSH("--election-ms=%u", opt->election_ms);
	SC_PUSH("--heartbeat-ms=%u", opt->heartbeat_ms);
	SC_PUSH("--quiesce=on");
	argv[argc] = NULL;
#undef SC_PUSH
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -errno;
	log_fd = open(n->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		int rv = -errno;

		close(fds[0]);
		close(fds[1]);
		return rv;
	}
	pid = fork();
	if (pid < 0) {
		int rv = -errno;

		close(fds[0]);
		close(fds[1]);
		close(log_fd);
		return rv;
	}
	if (pid == 0) {
		int null_fd = open("/dev/null", O_RDONLY);

		/* Never outlive this program. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 ||
		    dup2(fds[1], STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0)
			_exit(127);
		execv(opt->node_bin, argv);
		_exit(127);
	}
	close(fds[1]);
	close(log_fd);
	n->pid = pid;
	n->stopped = false;
	sc_pids[i] = pid;
	*out_fd = fds[0];
	return 0;
}

/* Wait for node i's exit (it was killed); bounded. */
static int sc_node_reap(struct sc_cluster *c, uint32_t i, uint32_t wait_ms, int *status)
{
	struct sc_node *n = &c->nodes[i];
	uint64_t deadline = sc_now_ns() + wait_ms * SC_NS_PER_MS;
	int st = 0;

	if (n->pid <= 0)
		return 0;
	for (;;) {
		pid_t r = waitpid(n->pid, &st, WNOHANG);

		if (r == n->pid || (r < 0 && errno == ECHILD))
			break;
		if (sc_now_ns() >= deadline)
			return -ETIMEDOUT;
		sc_sleep_ms(5);
	}
	if (status != NULL)
		*status = st;
	n->pid = 0;
	n->stopped = false;
	sc_pids[i] = 0;
	client_close(&c->nodes[i].conn);
	c->nodes[i].inflight = 0;
	return 0;
}

static void sc_node_kill(struct sc_cluster *c, uint32_t i)
{
	if (c->nodes[i].pid <= 0)
		return;
	kill(c->nodes[i].pid, SIGKILL);
	if (sc_node_reap(c, i, 10000, NULL) != 0)
		fprintf(stderr, "scenarios: node %u (pid %d) did not exit after SIGKILL\n", i + 1,
			(int)c->nodes[i].pid);
}

/* SIGTERM, a bounded wait, then SIGKILL. Returns the exit status, or -1 when
 * it had to be killed or ended on a signal. */
static int sc_node_stop(struct sc_cluster *c, uint32_t i)
{
	int status = 0;

	if (c->nodes[i].pid <= 0)
		return 0;
	if (c->nodes[i].stopped)
		kill(c->nodes[i].pid, SIGCONT);
	kill(c->nodes[i].pid, SIGTERM);
	if (sc_node_reap(c, i, SC_STOP_WAIT_MS, &status) != 0) {
		fprintf(stderr, "scenarios: node %u (pid %d) still running %d s after SIGTERM\n",
			i + 1, (int)c->nodes[i].pid, SC_STOP_WAIT_MS / 1000);
		sc_node_kill(c, i);
		return -1;
	}
	if (!WIFEXITED(status)) {
		fprintf(stderr, "scenarios: node %u ended on signal %d at SIGTERM\n", i + 1,
			WIFSIGNALED(status) ? WTERMSIG(status) : 0);
		return -1;
	}
	if (WEXITSTATUS(status) != 0)
		fprintf(stderr, "scenarios: node %u exited with status %d at SIGTERM\n", i + 1,
			WEXITSTATUS(status));
	return WEXITSTATUS(status);
}

static void sc_cluster_stop(struct sc_cluster *c)
{
	for (uint32_t i = 0; i < SC_NODES; i++)
		if (c->nodes[i].pid > 0 && !c->nodes[i].stopped)
			kill(c->nodes[i].pid, SIGTERM);
	for (uint32_t i = 0; i < SC_NODES; i++)
		sc_node_stop(c, i);
}

static void sc_print_log_tail(const struct sc_node *n)
{
	char line[512];
	long lines = 0, skip;
	FILE *f = fopen(n->log_path, "r");

	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		lines++;
	rewind(f);
	skip = lines > 15 ? lines - 15 : 0;
	fprintf(stderr, "--- last lines of node %llu's log (%s):\n", (unsigned long long)n->id,
		n->log_path);
	while (fgets(line, sizeof(line), f) != NULL)
		if (skip-- <= 0)
			fputs(line, stderr);
	fclose(f);
}

/* Start the nodes in mask (bit i: node i) and wait for each ready line.
 * Returns 0, 3 when a port was in use, or -1. */
static int sc_start(struct sc_cluster *c, uint32_t mask, uint64_t *ready_ns)
{
	int fds[SC_NODES] = {-1, -1, -1};
	char lines[SC_NODES][256];
	size_t used[SC_NODES] = {0};
	bool ready[SC_NODES] = {false};
	uint64_t start = sc_now_ns(), deadline = start + SC_READY_WAIT_MS * SC_NS_PER_MS;
	int rv = 0;

	for (uint32_t i = 0; i < SC_NODES; i++) {
		if (!(mask & (1u << i)))
			continue;
		if (sc_node_spawn(c, i, &fds[i]) != 0) {
			fprintf(stderr, "scenarios: cannot start node %u: %s\n", i + 1,
				strerror(errno));
			rv = -1;
			goto out;
		}
	}
	for (;;) {
		struct pollfd pfd[SC_NODES];
		nfds_t count = 0;
		uint32_t map[SC_NODES];

		for (uint32_t i = 0; i < SC_NODES; i++) {
			if (fds[i] < 0 || ready[i])
				continue;
			pfd[count] = (struct pollfd){.fd = fds[i], .events = POLLIN};
			map[count++] = i;
		}
		if (count == 0)
			break;
		if (sc_now_ns() >= deadline) {
			fprintf(stderr, "scenarios: nodes not ready after %d s\n",
				SC_READY_WAIT_MS / 1000);
			rv = -1;
			goto out;
		}
		poll(pfd, count, 100);
		for (nfds_t k = 0; k < count; k++) {
			uint32_t i = map[k];
			ssize_t got;

			if (pfd[k].revents == 0)
				continue;
			got = read(fds[i], lines[i] + used[i], sizeof(lines[i]) - 1 - used[i]);
			if (got > 0) {
				used[i] += (size_t)got;
				lines[i][used[i]] = '\0';
				if (strstr(lines[i], " ready") != NULL) {
					ready[i] = true;
					c->nodes[i].ready_at_ns = sc_now_ns();
					if (ready_ns != NULL)
						ready_ns[i] = sc_now_ns() - start;
				} else if (used[i] == sizeof(lines[i]) - 1) {
					used[i] = 0;
				}
				continue;
			}
			/* EOF before the ready line: the node exited. */
			int status = 0;

			sc_node_reap(c, i, 10000, &status);
			fprintf(stderr, "scenarios: node %u exited before ready (status %d)\n",
				i + 1, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			rv = WIFEXITED(status) && WEXITSTATUS(status) == 3 ? 3 : -1;
			if (rv != 3)
				sc_print_log_tail(&c->nodes[i]);
			goto out;
		}
	}
out:
	for (uint32_t i = 0; i < SC_NODES; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (rv != 0)
		for (uint32_t i = 0; i < SC_NODES; i++)
			if (mask & (1u << i))
				sc_node_stop(c, i);
	return rv;
}

/* Start every node; on a port in use, retry with another random base (only
 * when the base was not given). */
static int sc_start_all(struct sc_cluster *c, uint64_t *ready_ns)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		int rv = sc_start(c, (1u << SC_NODES) - 1, ready_ns);

		if (rv != 3)
			return rv;
		if (c->opt->base_port != 0)
			break;
		c->base_port = 20000 + 2 * (uint32_t)(sc_rand() % 20000);
		fprintf(stderr, "scenarios: a port was in use; base port %u now\n", c->base_port);
	}
	fprintf(stderr, "scenarios: ports in use (try another --base-port)\n");
	return -1;
}

/* --- Client side. --- */

static struct client *sc_conn(struct sc_cluster *c, uint32_t i)
{
	struct sc_node *n = &c->nodes[i];
	char addr[64];

	if (n->conn.fd >= 0)
		return &n->conn;
	if (n->pid <= 0 || n->stopped || sc_now_ns() < n->retry_conn_ns)
		return NULL;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", sc_client_port(c, i));
	if (client_connect(&n->conn, addr, SC_CONNECT_MS) != 0) {
		client_close(&n->conn);
		n->retry_conn_ns = sc_now_ns() + 20 * SC_NS_PER_MS;
		return NULL;
	}
	return &n->conn;
}

static void sc_conn_drop(struct sc_cluster *c, uint32_t i)
{
	client_close(&c->nodes[i].conn);
	c->nodes[i].inflight = 0;
	c->nodes[i].retry_conn_ns = sc_now_ns() + 20 * SC_NS_PER_MS;
}

/* One request, one answer: 0 and *resp, or a negative errno. resp's value
 * stays valid until the next call on that connection. */
static int sc_call(struct sc_cluster *c, uint32_t i, struct client_request *req, int timeout_ms,
		   struct client_response *resp)
{
	struct client *conn = sc_conn(c, i);
	uint64_t deadline = sc_now_ns() + (uint64_t)timeout_ms * SC_NS_PER_MS;
	int rv;

	if (conn == NULL)
		return -ECONNREFUSED;
	req->request_id = ++c->next_request;
	rv = client_send(conn, req);
	while (rv == 0) {
		uint64_t now = sc_now_ns();

		if (now >= deadline) {
			rv = -ETIMEDOUT;
			break;
		}
		rv = client_wait(conn, resp, (int)((deadline - now) / SC_NS_PER_MS) + 1);
		if (rv == 0 && resp->request_id == req->request_id)
			return 0;
	}
	sc_conn_drop(c, i);
	return rv;
}

static struct client_request sc_put_request(uint64_t group, const char *key, const char *value)
{
	return (struct client_request){.op = CLIENT_OP_PUT,
				       .group = group,
				       .key = key,
				       .key_size = (uint32_t)strlen(key),
				       .value = value,
				       .value_size = (uint32_t)strlen(value)};
}

/* PUT key=value into group through its leader, following hints; then, with
 * all_nodes, wait until every running node has applied it. Returns the
 * leader's index, or -1 after timeout_ms. */
static int sc_put_settled(struct sc_cluster *c, uint64_t group, const char *key, const char *value,
			  bool all_nodes, uint32_t timeout_ms)
{
	uint64_t deadline = sc_now_ns() + timeout_ms * SC_NS_PER_MS;
	uint32_t target = 0;
	int leader = -1;

	while (leader < 0 && sc_now_ns() < deadline) {
		struct client_request req = sc_put_request(group, key, value);
		struct client_response resp;
		int rv = sc_call(c, target, &req, 1000, &resp);

		if (rv == 0 && resp.status == CLIENT_STATUS_OK) {
			leader = (int)target;
		} else if (rv == 0 && resp.status == CLIENT_STATUS_NOT_LEADER &&
			   resp.leader_hint >= 1 && resp.leader_hint <= SC_NODES &&
			   resp.leader_hint - 1 != target) {
			target = (uint32_t)resp.leader_hint - 1;
		} else {
			target = (target + 1) % SC_NODES;
			sc_sleep_ms(10);
		}
	}
	if (leader < 0 || !all_nodes)
		return leader;
	for (uint32_t i = 0; i < SC_NODES; i++) {
		bool applied = false;

		if (c->nodes[i].pid <= 0)
			continue;
		while (!applied && sc_now_ns() < deadline) {
			struct client_request req = {.op = CLIENT_OP_LOCAL_GET,
						     .group = group,
						     .key = key,
						     .key_size = (uint32_t)strlen(key)};
			struct client_response resp;
			int rv = sc_call(c, i, &req, 1000, &resp);

			applied = rv == 0 && resp.status == CLIENT_STATUS_OK &&
				  resp.value_size == strlen(value) &&
				  memcmp(resp.value, value, resp.value_size) == 0;
			if (!applied)
				sc_sleep_ms(5);
		}
		if (!applied)
			return -1;
	}
	return leader;
}

/* --- Pipelined PUT into many groups. --- */

enum { SC_G_READY, SC_G_BACKOFF, SC_G_SENT, SC_G_DONE };

struct sc_many {
	uint32_t n;
	uint8_t *state;
	uint8_t *target;  /* Node index to ask next. */
	uint8_t *sent_to; /* Node index of the request in flight. */
	uint32_t *attempt;
	uint64_t *sent_ns;
	uint64_t *done_ns;                       /* From the start of the run. */
	uint8_t *leader;                         /* Node index that acknowledged. */
	uint32_t *ready, ready_head, ready_tail; /* FIFO rings of capacity n. */
	uint32_t *backoff, backoff_head, backoff_tail;
	uint64_t *backoff_due;
	uint64_t redirects, retries, not_leader_no_hint, errors;
};

static int sc_many_init(struct sc_many *m, uint32_t n)
{
	memset(m, 0, sizeof(*m));
	m->n = n;
	m->state = calloc(n, 1);
	m->target = calloc(n, 1);
	m->sent_to = calloc(n, 1);
	m->attempt = calloc(n, sizeof(uint32_t));
	m->sent_ns = calloc(n, sizeof(uint64_t));
	m->done_ns = calloc(n, sizeof(uint64_t));
	m->leader = calloc(n, 1);
	m->ready = calloc(n, sizeof(uint32_t));
	m->backoff = calloc(n, sizeof(uint32_t));
	m->backoff_due = calloc(n, sizeof(uint64_t));
	return m->state && m->target && m->sent_to && m->attempt && m->sent_ns && m->done_ns &&
		       m->leader && m->ready && m->backoff && m->backoff_due
		   ? 0
		   : -ENOMEM;
}

static void sc_many_free(struct sc_many *m)
{
	free(m->state);
	free(m->target);
	free(m->sent_to);
	free(m->attempt);
	free(m->sent_ns);
	free(m->done_ns);
	free(m->leader);
	free(m->ready);
	free(m->backoff);
	free(m->backoff_due);
}

static void sc_many_ready(struct sc_many *m, uint32_t g)
{
	m->state[g] = SC_G_READY;
	m->ready[m->ready_tail++ % m->n] = g;
}

static void sc_many_backoff(struct sc_many *m, uint32_t g, uint64_t due)
{
	uint32_t slot = m->backoff_tail++ % m->n;

	m->state[g] = SC_G_BACKOFF;
	m->backoff[slot] = g;
	m->backoff_due[slot] = due;
}

static bool sc_node_usable(const struct sc_cluster *c, uint32_t i)
{
	return c->nodes[i].pid > 0 && !c->nodes[i].stopped;
}

static uint32_t sc_next_usable(const struct sc_cluster *c, uint32_t after)
{
	for (uint32_t k = 1; k <= SC_NODES; k++) {
		uint32_t i = (after + k) % SC_NODES;

		if (sc_node_usable(c, i))
			return i;
	}
	return after;
}

/* Requeue every request in flight on node i (its connection is gone). */
static void sc_many_lost(struct sc_cluster *c, struct sc_many *m, uint32_t i)
{
	for (uint32_t g = 0; g < m->n; g++)
		if (m->state[g] == SC_G_SENT && m->sent_to[g] == i) {
			m->attempt[g]++;
			m->retries++;
			m->target[g] = (uint8_t)sc_next_usable(c, i);
			sc_many_ready(m, g);
		}
	sc_conn_drop(c, i);
}

static void sc_many_answer(struct sc_cluster *c, struct sc_many *m, uint32_t i,
			   const struct client_response *resp, uint64_t start, uint64_t now)
{
	uint32_t g = (uint32_t)(resp->request_id & 0xffffffffu);
	uint32_t attempt = (uint32_t)(resp->request_id >> 32);
	uint64_t retry = (uint64_t)c->opt->retry_ms * SC_NS_PER_MS;

	if (g >= m->n || m->state[g] != SC_G_SENT || m->attempt[g] != attempt || m->sent_to[g] != i)
		return; /* Late: the request was sent again since. */
	c->nodes[i].inflight--;
	m->attempt[g]++;
	if (resp->status == CLIENT_STATUS_OK) {
		m->state[g] = SC_G_DONE;
		m->done_ns[g] = now - start;
		m->leader[g] = (uint8_t)i;
	} else if (resp->status == CLIENT_STATUS_NOT_LEADER && resp->leader_hint >= 1 &&
		   resp->leader_hint <= SC_NODES && resp->leader_hint - 1 != i &&
		   sc_node_usable(c, (uint32_t)resp->leader_hint - 1)) {
		m->redirects++;
		m->target[g] = (uint8_t)(resp->leader_hint - 1);
		sc_many_ready(m, g);
	} else {
		if (resp->status == CLIENT_STATUS_NOT_LEADER)
			m->not_leader_no_hint++;
		else
			m->errors++;
		m->target[g] = (uint8_t)sc_next_usable(c, i);
		sc_many_backoff(m, g, now + retry);
	}
}

/* PUT key=value into groups 1..m->n, each through its leader, pipelined over
 * the usable nodes; targets as in m->target. Returns the groups not done by
 * timeout_ms after start. */
static uint32_t sc_many_run(struct sc_cluster *c, struct sc_many *m, const char *key,
			    const char *value, uint64_t start, uint32_t timeout_ms)
{
	uint64_t deadline = start + timeout_ms * SC_NS_PER_MS, last_scan = start;
	uint32_t remaining = 0;

	for (uint32_t i = 0; i < SC_NODES; i++)
		c->nodes[i].inflight = 0;
	m->ready_head = m->ready_tail = m->backoff_head = m->backoff_tail = 0;
	for (uint32_t g = 0; g < m->n; g++) {
		m->sent_ns[g] = 0;
		m->done_ns[g] = 0;
		if (!sc_node_usable(c, m->target[g]))
			m->target[g] = (uint8_t)sc_next_usable(c, m->target[g]);
		sc_many_ready(m, g);
		remaining++;
	}
	while (remaining > 0) {
		uint64_t now = sc_now_ns();
		struct pollfd pfd[SC_NODES];
		uint32_t map[SC_NODES];
		nfds_t count = 0;
		int wait_ms = 10;

		if (now >= deadline)
			break;
		/* Due backoffs become ready. */
		while (m->backoff_head != m->backoff_tail &&
		       m->backoff_due[m->backoff_head % m->n] <= now)
			sc_many_ready(m, m->backoff[m->backoff_head++ % m->n]);
		/* Send what is ready, as far as the pipelines allow. */
		while (m->ready_head != m->ready_tail) {
			uint32_t g = m->ready[m->ready_head % m->n], i = m->target[g];
			struct client *conn;
			struct client_request req;
			if (m->state[g] != SC_G_READY) {
				m->ready_head++;
				continue;
			}
			if (!sc_node_usable(c, i))
				i = m->target[g] = (uint8_t)sc_next_usable(c, i);
			if (c->nodes[i].inflight >= SC_PIPELINE_MAX)
				break;
			conn = sc_conn(c, i);
			if (conn == NULL) {
				m->ready_head++;
				m->target[g] = (uint8_t)sc_next_usable(c, i);
				sc_many_backoff(m, g, now + 20 * SC_NS_PER_MS);
				continue;
			}
			req = sc_put_request(g + 1, key, value);
			req.request_id = (uint64_t)m->attempt[g] << 32 | g;
			if (client_send(conn, &req) != 0) {
				sc_many_lost(c, m, i);
				break;
			}
			m->ready_head++;
			m->state[g] = SC_G_SENT;
			m->sent_to[g] = (uint8_t)i;
			m->sent_ns[g] = now;
			c->nodes[i].inflight++;
		}
		for (uint32_t i = 0; i < SC_NODES; i++) {
			struct client *conn = &c->nodes[i].conn;
			int rv;

			if (conn->fd < 0)
				continue;
			rv = client_flush(conn);
			if (rv != 0 && rv != -EAGAIN) {
				sc_many_lost(c, m, i);
				continue;
			}
			pfd[count] = (struct pollfd){
			    .fd = conn->fd, .events = POLLIN | (rv == -EAGAIN ? POLLOUT : 0)};
			map[count++] = i;
		}
		if (m->backoff_head != m->backoff_tail) {
			uint64_t due = m->backoff_due[m->backoff_head % m->n];

			wait_ms = due <= now ? 0 : (int)((due - now) / SC_NS_PER_MS) + 1;
			if (wait_ms > 10)
				wait_ms = 10;
		}
		if (m->ready_head != m->ready_tail)
			wait_ms = wait_ms > 1 ? 1 : wait_ms;
		poll(pfd, count, wait_ms);
		now = sc_now_ns();
		for (nfds_t k = 0; k < count; k++) {
			uint32_t i = map[k];
			struct client *conn = &c->nodes[i].conn;
			struct client_response resp;
			int rv;

			if (!(pfd[k].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			rv = client_read(conn);
			if (rv < 0 && rv != -EAGAIN) {
				/* Answers already read are still taken below. */
				while (client_receive(conn, &resp) == 1)
					sc_many_answer(c, m, i, &resp, start, now);
				sc_many_lost(c, m, i);
				continue;
			}
			while ((rv = client_receive(conn, &resp)) == 1)
				sc_many_answer(c, m, i, &resp, start, now);
			if (rv < 0)
				sc_many_lost(c, m, i);
		}
		/* Requests unanswered for too long go again (PUT of the same value). */
		if (now - last_scan >= 100 * SC_NS_PER_MS) {
			last_scan = now;
			for (uint32_t g = 0; g < m->n; g++)
				if (m->state[g] == SC_G_SENT &&
				    now - m->sent_ns[g] >= SC_REQUEST_MS * SC_NS_PER_MS) {
					c->nodes[m->sent_to[g]].inflight--;
					m->attempt[g]++;
					m->retries++;
					m->target[g] = (uint8_t)sc_next_usable(c, m->sent_to[g]);
					sc_many_ready(m, g);
				}
		}
		remaining = 0;
		for (uint32_t g = 0; g < m->n; g++)
			remaining += m->state[g] != SC_G_DONE;
	}
	return remaining;
}

/* --- Scenario: election latency of one group. --- */

struct sc_election_result {
	const char *fault;
	uint32_t trials, ok;
	uint64_t *commit_ns;       /* Kill to first PUT acknowledged by a new leader. */
	uint64_t *known_ns;        /* Kill to first answer naming a live leader. */
	uint64_t *trial_commit_ns; /* commit_ns in trial order (commit_ns ends sorted). */
	uint32_t new_leader[SC_NODES];
	uint8_t *victims, *winners; /* Node ids, per trial. */
	double load[3];
	struct sc_stats commit, known;
};

/* One trial: returns 0 and the times, or -1. */
static int sc_election_trial(struct sc_cluster *c, bool stop, uint32_t trial, uint64_t *commit_ns,
			     uint64_t *known_ns, uint32_t *new_leader, uint32_t *killed)
{
	const struct sc_opt *opt = c->opt;
	char warm[32], value[32];
	uint64_t bound_ns =
	    (uint64_t)(opt->election_ms * 20 > 10000 ? opt->election_ms * 20 : 10000) *
	    SC_NS_PER_MS;
	uint64_t poll_ns = (uint64_t)opt->poll_us * 1000;
	uint64_t t0, sent_ns[SC_NODES] = {0}, next_ns[SC_NODES] = {0}, req_id[SC_NODES] = {0};
	bool inflight[SC_NODES] = {false};
	int leader, status = 0;
	uint32_t victim;

	snprintf(warm, sizeof(warm), "w%u", trial);
	snprintf(value, sizeof(value), "%s-%u", stop ? "stop" : "kill", trial);
	leader = sc_put_settled(c, 1, "warm", warm, true, 30000);
	if (leader < 0) {
		fprintf(stderr, "scenarios: election trial %u: no settled leader within 30 s\n",
			trial);
		return -1;
	}
	victim = (uint32_t)leader;
	*killed = victim;
	/* A node that restarted less than an election timeout ago refuses to
	 * vote (it may have promised a leader before its crash), so a kill
	 * right after the previous trial's restart would time that instead of
	 * the usual failover: let every node be up for --min-uptime-ms. */
	for (uint32_t i = 0; i < SC_NODES; i++) {
		uint64_t up_ns = (uint64_t)opt->uptime_ms * SC_NS_PER_MS, now = sc_now_ns();

		if (c->nodes[i].ready_at_ns + up_ns > now)
			sc_sleep_ms(
			    (uint32_t)((c->nodes[i].ready_at_ns + up_ns - now) / SC_NS_PER_MS) + 1);
	}
	if (opt->uptime_ms > 0 && sc_put_settled(c, 1, "warm", warm, true, 30000) != (int)victim) {
		fprintf(stderr, "scenarios: election trial %u: the leader changed while waiting\n",
			trial);
		return -1;
	}
	for (uint32_t i = 0; i < SC_NODES; i++)
		sc_conn(c, i); /* Connected before the clock starts. */
	sc_sleep_ms((uint32_t)(sc_rand() % opt->heartbeat_ms));

	t0 = sc_now_ns();
	kill(c->nodes[victim].pid, stop ? SIGSTOP : SIGKILL);
	c->nodes[victim].stopped = true;
	*known_ns = 0;
	*commit_ns = 0;
	while (*commit_ns == 0) {
		uint64_t now = sc_now_ns();
		struct pollfd pfd[SC_NODES];
		uint32_t map[SC_NODES];
		nfds_t count = 0;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)poll_ns};

		if (now - t0 >= bound_ns) {
			fprintf(stderr,
				"scenarios: election trial %u (%s): no new leader committed "
				"within %.0f ms\n",
				trial, stop ? "SIGSTOP" : "kill -9", sc_ms(bound_ns));
			for (uint32_t i = 0; i < SC_NODES; i++)
				sc_print_log_tail(&c->nodes[i]);
			return -1;
		}
		for (uint32_t i = 0; i < SC_NODES; i++) {
			struct client *conn;

			if (i == victim)
				continue;
			if (!inflight[i] && now >= next_ns[i]) {
				struct client_request req = sc_put_request(1, "e", value);

				conn = sc_conn(c, i);
				if (conn == NULL) {
					next_ns[i] = now + 10 * SC_NS_PER_MS;
					continue;
				}
				req.request_id = req_id[i] = ++c->next_request;
				if (client_send(conn, &req) != 0) {
					sc_conn_drop(c, i);
					continue;
				}
				inflight[i] = true;
				sent_ns[i] = now;
			}
			conn = &c->nodes[i].conn;
			if (conn->fd < 0)
				continue;
			int rv = client_flush(conn);

			if (rv != 0 && rv != -EAGAIN) {
				sc_conn_drop(c, i);
				inflight[i] = false;
				continue;
			}
			if (inflight[i] && now - sent_ns[i] >= 2000 * SC_NS_PER_MS) {
				/* Stuck: ask again on a new connection. */
				sc_conn_drop(c, i);
				inflight[i] = false;
				continue;
			}
			pfd[count] = (struct pollfd){
			    .fd = conn->fd, .events = POLLIN | (rv == -EAGAIN ? POLLOUT : 0)};
			map[count++] = i;
		}
		ppoll(pfd, count, &ts, NULL);
		now = sc_now_ns();
		for (nfds_t k = 0; k < count; k++) {
			uint32_t i = map[k];
			struct client *conn = &c->nodes[i].conn;
			struct client_response resp;
			int rv;

			if (!(pfd[k].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			rv = client_read(conn);
			while (client_receive(conn, &resp) == 1) {
				if (resp.request_id != req_id[i])
					continue;
				inflight[i] = false;
				if (resp.status == CLIENT_STATUS_OK) {
					if (*commit_ns == 0) {
						*commit_ns = now - t0;
						*new_leader = i;
					}
					if (*known_ns == 0)
						*known_ns = now - t0;
				} else {
					if (resp.status == CLIENT_STATUS_NOT_LEADER &&
					    resp.leader_hint >= 1 && resp.leader_hint <= SC_NODES &&
					    resp.leader_hint - 1 != victim && *known_ns == 0)
						*known_ns = now - t0;
					next_ns[i] = now + poll_ns;
				}
			}
			if (rv < 0 && rv != -EAGAIN) {
				sc_conn_drop(c, i);
				inflight[i] = false;
				next_ns[i] = now + 10 * SC_NS_PER_MS;
			}
		}
	}
	/* The old leader: killed (SIGKILL also ends a stopped process), then
	 * restarted from its WAL. */
	if (stop)
		kill(c->nodes[victim].pid, SIGKILL);
	if (sc_node_reap(c, victim, 10000, &status) != 0) {
		fprintf(stderr, "scenarios: node %u did not exit after SIGKILL\n", victim + 1);
		return -1;
	}
	if (sc_start(c, 1u << victim, NULL) != 0) {
		fprintf(stderr, "scenarios: node %u did not restart from its WAL\n", victim + 1);
		return -1;
	}
	return 0;
}

static int sc_election(const struct sc_opt *opt, bool stop, struct sc_election_result *r)
{
	struct sc_cluster c;
	int rv = 0;

	memset(r, 0, sizeof(*r));
	r->fault = stop ? "SIGSTOP" : "kill -9";
	r->trials = opt->trials;
	r->commit_ns = calloc(opt->trials, sizeof(uint64_t));
	r->known_ns = calloc(opt->trials, sizeof(uint64_t));
	r->victims = calloc(opt->trials, 1);
	r->winners = calloc(opt->trials, 1);
	sc_loadavg(r->load);
	if (r->commit_ns == NULL || r->known_ns == NULL || r->victims == NULL ||
	    r->winners == NULL ||
	    sc_cluster_init(&c, opt, stop ? "election-stop" : "election-kill", 1) != 0)
		return -1;
	for (uint32_t i = 0; i < SC_NODES; i++)
		sc_node_wipe(&c.nodes[i]);
	if (sc_start_all(&c, NULL) != 0)
		return -1;
	for (uint32_t t = 0; t < opt->trials; t++) {
		uint64_t commit = 0, known = 0;
		uint32_t leader = 0, victim = 0;

		if (sc_election_trial(&c, stop, t, &commit, &known, &leader, &victim) != 0) {
			rv = -1;
			break;
		}
		r->commit_ns[r->ok] = commit;
		r->known_ns[r->ok] = known;
		r->victims[r->ok] = (uint8_t)(victim + 1);
		r->winners[r->ok] = (uint8_t)(leader + 1);
		r->ok++;
		r->new_leader[leader]++;
		sc_log(opt,
		       "election %s trial %u: leader known %.2f ms, committed %.2f ms (node %u)",
		       r->fault, t + 1, sc_ms(known), sc_ms(commit), leader + 1);
	}
	sc_cluster_stop(&c);
	r->trial_commit_ns = malloc((r->ok + 1) * sizeof(uint64_t));
	if (r->trial_commit_ns != NULL)
		memcpy(r->trial_commit_ns, r->commit_ns, r->ok * sizeof(uint64_t));
	r->commit = sc_stats(r->commit_ns, r->ok);
	r->known = sc_stats(r->known_ns, r->ok);
	return rv;
}

/* --- Scenario: mass failover. --- */

/* Wait until node i has applied key=value in every group 1..groups (LOCAL_GET,
 * pipelined; a group that lags is asked again after 10 ms). Returns the
 * groups that still lag after timeout_ms. */
static uint32_t sc_catch_up(struct sc_cluster *c, uint32_t i, uint32_t groups, const char *key,
			    const char *value, uint32_t timeout_ms)
{
	uint64_t deadline = sc_now_ns() + timeout_ms * SC_NS_PER_MS;
	uint8_t *ok = calloc(groups, 1);
	uint32_t left = groups;

	if (ok == NULL)
		return groups;
	while (left > 0 && sc_now_ns() < deadline) {
		struct client *conn = sc_conn(c, i);
		uint32_t next = 0, inflight = 0;

		if (conn == NULL) {
			sc_sleep_ms(10);
			continue;
		}
		/* One pass over the lagging groups, SC_PIPELINE_MAX in flight. */
		while ((next < groups || inflight > 0) && sc_now_ns() < deadline) {
			struct client_response resp;
			int rv = 0;

			while (next < groups && inflight < SC_PIPELINE_MAX && rv == 0) {
				struct client_request req = {.op = CLIENT_OP_LOCAL_GET,
							     .request_id = next,
							     .group = next + 1,
							     .key = key,
							     .key_size = (uint32_t)strlen(key)};

				if (!ok[next]) {
					rv = client_send(conn, &req);
					inflight++;
				}
				next++;
			}
			if (rv == 0)
				rv = client_wait(conn, &resp, 2000);
			if (rv != 0) {
				sc_conn_drop(c, i);
				break;
			}
			inflight--;
			if (resp.request_id < groups && !ok[resp.request_id] &&
			    resp.status == CLIENT_STATUS_OK && resp.value_size == strlen(value) &&
			    memcmp(resp.value, value, resp.value_size) == 0) {
				ok[resp.request_id] = 1;
				left--;
			}
		}
		if (left > 0)
			sc_sleep_ms(10);
	}
	free(ok);
	return left;
}

struct sc_mass_trial {
	uint64_t start_ns;        /* First fork to every node ready. */
	uint64_t committed_ns;    /* First fork to a PUT committed in every group. */
	uint32_t victim;          /* Node id. */
	uint32_t led[SC_NODES];   /* Groups each node led before the kill. */
	uint64_t all_ns;          /* Kill to every group committed again. */
	struct sc_stats affected; /* Over the groups the victim led. */
	uint64_t others_max_ns;
	uint64_t redirects, no_hint, errors, retries;
	uint32_t slow;            /* Groups that took over half an election timeout. */
	uint64_t rejoin_ready_ns; /* Restart of the killed node from its WAL to ready. */
	uint64_t rejoin_ns;       /* ... to every group's last PUT applied on it. */
	double load[3];
};

static int sc_mass(const struct sc_opt *opt, struct sc_mass_trial *trials, uint32_t *done)
{
	struct sc_cluster c;
	struct sc_many m;
	uint64_t *affected = calloc(opt->mass_groups, sizeof(uint64_t));
	int rv = 0;

	*done = 0;
	if (affected == NULL || sc_many_init(&m, opt->mass_groups) != 0 ||
	    sc_cluster_init(&c, opt, "mass", opt->mass_groups) != 0) {
		free(affected);
		return -1;
	}
	for (uint32_t t = 0; t < opt->mass_trials; t++) {
		struct sc_mass_trial *r = &trials[t];
		uint64_t ready_ns[SC_NODES] = {0}, start, t0;
		uint32_t left, victim = 0, best = UINT32_MAX, n_aff = 0;
		char value[32];

		memset(r, 0, sizeof(*r));
		/* A fresh cluster per trial: after a restart from the WALs, the node
		 * killed last time has the shortest logs and could lead nothing. */
		for (uint32_t i = 0; i < SC_NODES; i++)
			sc_node_wipe(&c.nodes[i]);
		sc_loadavg(r->load);
		start = sc_now_ns();
		if (sc_start_all(&c, ready_ns) != 0) {
			rv = -1;
			break;
		}
		for (uint32_t i = 0; i < SC_NODES; i++)
			r->start_ns = ready_ns[i] > r->start_ns ? ready_ns[i] : r->start_ns;
		for (uint32_t g = 0; g < m.n; g++)
			m.target[g] = (uint8_t)(g % SC_NODES);
		snprintf(value, sizeof(value), "warm-%u", t);
		left = sc_many_run(&c, &m, "m", value, start, 120000);
		if (left > 0) {
			fprintf(stderr,
				"scenarios: mass trial %u: %u of %u groups without a committed "
				"PUT 120 s after start\n",
				t + 1, left, m.n);
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		for (uint32_t g = 0; g < m.n; g++)
			r->committed_ns =
			    m.done_ns[g] > r->committed_ns ? m.done_ns[g] : r->committed_ns;
		for (uint32_t g = 0; g < m.n; g++)
			r->led[m.leader[g]]++;
		for (uint32_t i = 0; i < SC_NODES; i++) {
			uint32_t third = m.n / SC_NODES;
			uint32_t d = r->led[i] > third ? r->led[i] - third : third - r->led[i];

			if (d < best) {
				best = d;
				victim = i;
			}
		}
		uint8_t *was_led = malloc(m.n);

		if (was_led == NULL) {
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		for (uint32_t g = 0; g < m.n; g++) {
			was_led[g] = m.leader[g];
			m.target[g] = m.leader[g];
		}
		if (opt->settle_ms > 0)
			sc_sleep_ms(opt->settle_ms);
		for (uint32_t i = 0; i < SC_NODES; i++)
			sc_conn(&c, i);
		r->victim = victim + 1;
		snprintf(value, sizeof(value), "after-%u", t);
		t0 = sc_now_ns();
		kill(c.nodes[victim].pid, SIGKILL);
		c.nodes[victim].stopped = true;
		sc_node_reap(&c, victim, 10000, NULL);
		m.redirects = m.not_leader_no_hint = m.errors = m.retries = 0;
		left = sc_many_run(&c, &m, "m", value, t0, 120000);
		r->redirects = m.redirects;
		r->no_hint = m.not_leader_no_hint;
		r->errors = m.errors;
		r->retries = m.retries;
		for (uint32_t g = 0; g < m.n; g++) {
			r->all_ns = m.done_ns[g] > r->all_ns ? m.done_ns[g] : r->all_ns;
			if (m.done_ns[g] > (uint64_t)opt->election_ms * SC_NS_PER_MS / 2)
				r->slow++;
			if (was_led[g] == victim)
				affected[n_aff++] = m.done_ns[g];
			else if (m.done_ns[g] > r->others_max_ns)
				r->others_max_ns = m.done_ns[g];
		}
		free(was_led);
		r->affected = sc_stats(affected, n_aff);
		if (left > 0) {
			fprintf(stderr,
				"scenarios: mass trial %u: %u of %u groups without a committed "
				"PUT 120 s after node %u was killed\n",
				t + 1, left, m.n, victim + 1);
			for (uint32_t i = 0; i < SC_NODES; i++)
				sc_print_log_tail(&c.nodes[i]);
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		sc_log(opt,
		       "mass trial %u: node %u led %u of %u groups; all committed again after "
		       "%.1f ms (its groups: p50 %.1f ms)",
		       t + 1, victim + 1, r->led[victim], m.n, sc_ms(r->all_ns), r->affected.p50);
		/* The killed node restarts from its WAL and catches up. */
		t0 = sc_now_ns();
		if (sc_start(&c, 1u << victim, ready_ns) != 0) {
			fprintf(stderr, "scenarios: mass trial %u: node %u did not restart\n",
				t + 1, victim + 1);
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		r->rejoin_ready_ns = ready_ns[victim];
		left = sc_catch_up(&c, victim, m.n, "m", value, 120000);
		r->rejoin_ns = sc_now_ns() - t0;
		if (left > 0) {
			fprintf(
			    stderr,
			    "scenarios: mass trial %u: node %u restarted from its WAL lags in %u "
			    "groups after 120 s\n",
			    t + 1, victim + 1, left);
			sc_print_log_tail(&c.nodes[victim]);
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		sc_log(opt, "mass trial %u: node %u restarted: ready %.0f ms, caught up %.0f ms",
		       t + 1, victim + 1, sc_ms(r->rejoin_ready_ns), sc_ms(r->rejoin_ns));
		(*done)++;
		sc_cluster_stop(&c);
	}
	sc_many_free(&m);
	free(affected);
	return rv;
}

/* --- Scenario: idle cost and scale. --- */

struct sc_idle_result {
	uint32_t groups;
	uint64_t ready_ns;           /* First fork to every node ready (groups created). */
	uint64_t elected_ns;         /* First fork to every group with a leader. */
	double cpu_pct[SC_NODES];    /* utime+stime from /proc/PID/stat. */
	double cpu_ns_pct[SC_NODES]; /* The sum of the threads' schedstat. */
	uint64_t rss_kib[SC_NODES], hwm_kib[SC_NODES];
	uint64_t leads[SC_NODES];
	double window_s;
	double load[3];
};

/* Sum of the latest "leads N of M groups" of every node's log. */
static uint64_t sc_leads_total(struct sc_cluster *c)
{
	uint64_t total = 0;

	for (uint32_t i = 0; i < SC_NODES; i++) {
		struct sc_node *n = &c->nodes[i];
		char buf[8192];
		FILE *f = fopen(n->log_path, "r");

		if (f != NULL && fseeko(f, n->log_offset, SEEK_SET) == 0) {
			while (fgets(buf, sizeof(buf), f) != NULL) {
				const char *p = strstr(buf, "this node leads ");
				unsigned long long leads, of;
				size_t len = strlen(buf);

				if (len == 0 || buf[len - 1] != '\n')
					break; /* A partial line: read it next time. */
				n->log_offset += (off_t)len;
				if (p != NULL &&
				    sscanf(p, "this node leads %llu of %llu", &leads, &of) == 2)
					n->leads = leads;
			}
		}
		if (f != NULL)
			fclose(f);
		total += n->leads;
	}
	return total;
}

static int sc_proc_cpu(pid_t pid, uint64_t *ticks)
{
	char path[64], buf[2048];
	unsigned long long utime, stime;
	const char *p;
	FILE *f;
	size_t got;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -errno;
	got = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[got] = '\0';
	p = strrchr(buf, ')');
	/* After the command: state (3) ... utime (14), stime (15). */
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&utime, &stime) != 2)
		return -EINVAL;
	*ticks = utime + stime;
	return 0;
}

/* CPU time of every thread of pid in ns, from /proc/PID/task/TID/schedstat:
 * finer than the clock ticks of /proc/PID/stat (threads that exited are not
 * counted: none exit while a node idles). */
static int sc_proc_cpu_ns(pid_t pid, uint64_t *ns)
{
	char path[64];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return -errno;
	*ns = 0;
	while ((e = readdir(d)) != NULL) {
		char file[320];
		unsigned long long run = 0;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		if (snprintf(file, sizeof(file), "%s/%s/schedstat", path, e->d_name) >=
		    (int)sizeof(file))
			continue;
		f = fopen(file, "r");
		if (f == NULL)
			continue;
		if (fscanf(f, "%llu", &run) == 1)
			*ns += run;
		fclose(f);
	}
	closedir(d);
	return 0;
}

static uint64_t sc_proc_status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	unsigned long long v = 0;
	size_t len = strlen(field);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, len) == 0 && line[len] == ':') {
			sscanf(line + len + 1, "%llu", &v);
			break;
		}
	fclose(f);
	return v;
}

static int sc_idle_one(const struct sc_opt *opt, uint32_t groups, struct sc_idle_result *r)
{
	struct sc_cluster c;
	uint64_t ready_ns[SC_NODES] = {0}, start, deadline, ticks0[SC_NODES], ticks1[SC_NODES];
	uint64_t ns0[SC_NODES], ns1[SC_NODES];
	uint64_t t_window0, t_window1;
	char name[32];
	int rv = 0;

	memset(r, 0, sizeof(*r));
	r->groups = groups;
	sc_loadavg(r->load);
	snprintf(name, sizeof(name), "idle-%u", groups);
	if (sc_cluster_init(&c, opt, name, groups) != 0)
		return -1;
	for (uint32_t i = 0; i < SC_NODES; i++)
		sc_node_wipe(&c.nodes[i]);
	start = sc_now_ns();
	if (sc_start_all(&c, ready_ns) != 0)
		return -1;
	for (uint32_t i = 0; i < SC_NODES; i++)
		r->ready_ns = ready_ns[i] > r->ready_ns ? ready_ns[i] : r->ready_ns;
	deadline = start + 600000 * SC_NS_PER_MS;
	while (sc_leads_total(&c) < groups) {
		if (sc_now_ns() >= deadline) {
			fprintf(stderr,
				"scenarios: idle %u: only %llu groups have a leader after 600 s\n",
				groups, (unsigned long long)sc_leads_total(&c));
			for (uint32_t i = 0; i < SC_NODES; i++)
				sc_print_log_tail(&c.nodes[i]);
			sc_cluster_stop(&c);
			return -1;
		}
		sc_sleep_ms(20);
	}
	r->elected_ns = sc_now_ns() - start;
	sc_log(opt, "idle %u groups: ready after %.0f ms, all elected after %.0f ms", groups,
	       sc_ms(r->ready_ns), sc_ms(r->elected_ns));
	/* A leader quiesces its group after 3 election timeouts without traffic. */
	sc_sleep_ms(3 * opt->election_ms + opt->idle_settle_ms);
	t_window0 = sc_now_ns();
	for (uint32_t i = 0; i < SC_NODES; i++)
		if (sc_proc_cpu(c.nodes[i].pid, &ticks0[i]) != 0 ||
		    sc_proc_cpu_ns(c.nodes[i].pid, &ns0[i]) != 0)
			rv = -1;
	sc_sleep_ms(opt->idle_window_s * 1000);
	for (uint32_t i = 0; i < SC_NODES; i++)
		if (sc_proc_cpu(c.nodes[i].pid, &ticks1[i]) != 0 ||
		    sc_proc_cpu_ns(c.nodes[i].pid, &ns1[i]) != 0)
			rv = -1;
	t_window1 = sc_now_ns();
	r->window_s = (double)(t_window1 - t_window0) / 1e9;
	for (uint32_t i = 0; i < SC_NODES; i++) {
		double tck = (double)sysconf(_SC_CLK_TCK);

		r->cpu_pct[i] =
		    rv == 0 ? 100.0 * (double)(ticks1[i] - ticks0[i]) / tck / r->window_s : -1;
		r->cpu_ns_pct[i] =
		    rv == 0 ? 100.0 * (double)(ns1[i] - ns0[i]) / 1e9 / r->window_s : -1;
		r->rss_kib[i] = sc_proc_status_kib(c.nodes[i].pid, "VmRSS");
		r->hwm_kib[i] = sc_proc_status_kib(c.nodes[i].pid, "VmHWM");
	}
	sc_leads_total(&c);
	for (uint32_t i = 0; i < SC_NODES; i++)
		r->leads[i] = c.nodes[i].leads;
	if (rv != 0)
		fprintf(stderr, "scenarios: idle %u: a node exited during the window\n", groups);
	sc_cluster_stop(&c);
	return rv;
}

/* --- Output. --- */

static void sc_print_load(FILE *f, const char *what, const double load[3])
{
	fprintf(f, "%s: load average at start %.2f %.2f %.2f (%ld CPUs)\n", what, load[0], load[1],
		load[2], sysconf(_SC_NPROCESSORS_ONLN));
}

static void sc_print_election(const struct sc_opt *opt, const struct sc_election_result *r,
			      uint32_t count)
{
	if (count == 0)
		return;
	printf(
	    "\nElection latency, 1 group, 3 nodes, election %u ms, heartbeat %u ms, poll %u us\n",
	    opt->election_ms, opt->heartbeat_ms, opt->poll_us);
	for (uint32_t k = 0; k < count; k++)
		sc_print_load(stdout, r[k].fault, r[k].load);
	printf("%-9s %-22s %6s %9s %9s %9s %9s %9s\n", "fault", "until", "trials", "min ms",
	       "p50 ms", "p99 ms", "max ms", "mean ms");
	for (uint32_t k = 0; k < count; k++) {
		const struct sc_stats *s[2] = {&r[k].known, &r[k].commit};
		const char *what[2] = {"leader known", "new leader committed"};

		for (int j = 0; j < 2; j++)
			printf("%-9s %-22s %3u/%-3u %9.2f %9.2f %9.2f %9.2f %9.2f\n", r[k].fault,
			       what[j], r[k].ok, r[k].trials, s[j]->min, s[j]->p50, s[j]->p99,
			       s[j]->max, s[j]->mean);
	}
}

static void sc_print_mass(const struct sc_opt *opt, const struct sc_mass_trial *t, uint32_t count)
{
	uint64_t all[SC_TRIALS_MAX > 1000 ? 1000 : SC_TRIALS_MAX];
	struct sc_stats s;
	uint32_t n = 0;

	if (count == 0)
		return;
	printf("\nMass failover, %u groups, 3 nodes, election %u ms, kill -9 of one node\n",
	       opt->mass_groups, opt->election_ms);
	for (uint32_t k = 0; k < count; k++) {
		char what[32];

		snprintf(what, sizeof(what), "trial %u", k + 1);
		sc_print_load(stdout, what, t[k].load);
	}
	printf("%5s %9s %9s %6s %12s %10s %10s %10s %10s %10s\n", "trial", "start ms", "commit ms",
	       "killed", "it led", "all ms", "its p50", "its p99", "its max", "others max");
	for (uint32_t k = 0; k < count; k++) {
		printf(
		    "%5u %9.0f %9.0f %6u %5u (%4.1f%%) %9.1f %9.1f %9.1f %9.1f %10.1f %6u %9.0f\n",
		    k + 1, sc_ms(t[k].start_ns), sc_ms(t[k].committed_ns), t[k].victim,
		    t[k].led[t[k].victim - 1],
		    100.0 * t[k].led[t[k].victim - 1] / (double)opt->mass_groups,
		    sc_ms(t[k].all_ns), t[k].affected.p50, t[k].affected.p99, t[k].affected.max,
		    sc_ms(t[k].others_max_ns), t[k].slow, sc_ms(t[k].rejoin_ns));
		if (n < sizeof(all) / sizeof(all[0]))
			all[n++] = t[k].all_ns;
	}
	s = sc_stats(all, n);
	printf("every group committed again after the kill: min %.1f ms, p50 %.1f ms, max %.1f ms "
	       "over %u trials (retry every %u ms)\n'slow': groups that took over %u ms (half an "
	       "election timeout); 'rejoin': restart of the killed node from its WAL until it has "
	       "applied the last PUT of every group\n",
	       s.min, s.p50, s.max, n, opt->retry_ms, opt->election_ms / 2);
}

static void sc_print_idle(const struct sc_opt *opt, const struct sc_idle_result *r, uint32_t count)
{
	if (count == 0)
		return;
	printf("\nIdle cost and scale, 3 nodes, %u shards each, quiesce on, election %u ms, "
	       "heartbeat %u ms\n",
	       opt->shards, opt->election_ms, opt->heartbeat_ms);
	for (uint32_t k = 0; k < count; k++) {
		char what[32];

		snprintf(what, sizeof(what), "%u groups", r[k].groups);
		sc_print_load(stdout, what, r[k].load);
	}
	printf("%8s %9s %11s %5s %8s %8s %10s %9s %10s %8s\n", "groups", "ready ms", "elected ms",
	       "node", "leads", "CPU %", "sched CPU%", "RSS MiB", "peak MiB", "RSS/grp");
	for (uint32_t k = 0; k < count; k++)
		for (uint32_t i = 0; i < SC_NODES; i++)
			printf("%8u %9.0f %11.0f %5u %8llu %8.2f %10.3f %9.1f %10.1f %7.0fB\n",
			       r[k].groups, sc_ms(r[k].ready_ns), sc_ms(r[k].elected_ns), i + 1,
			       (unsigned long long)r[k].leads[i], r[k].cpu_pct[i],
			       r[k].cpu_ns_pct[i], (double)r[k].rss_kib[i] / 1024,
			       (double)r[k].hwm_kib[i] / 1024,
			       1024.0 * (double)r[k].rss_kib[i] / r[k].groups);
	printf("CPU: %% of one core over %u s, from 3 election timeouts + %u ms after every "
	       "group had a leader;\n'CPU %%' from utime+stime (10 ms ticks), 'sched CPU%%' from "
	       "the threads' schedstat (ns)\n",
	       opt->idle_window_s, opt->idle_settle_ms);
}

static void sc_json_stats(FILE *f, const char *name, const struct sc_stats *s)
{
	fprintf(f,
		"\"%s\": {\"count\": %u, \"min_ms\": %.3f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
		"\"max_ms\": %.3f, \"mean_ms\": %.3f}",
		name, s->count, s->min, s->p50, s->p99, s->max, s->mean);
}

static void sc_json_load(FILE *f, const double load[3])
{
	fprintf(f, "\"loadavg\": [%.2f, %.2f, %.2f]", load[0], load[1], load[2]);
}

static int sc_write_json(const struct sc_opt *opt, const struct sc_election_result *e,
			 uint32_t e_count, const struct sc_mass_trial *m, uint32_t m_count,
			 const struct sc_idle_result *idle, uint32_t i_count)
{
	bool to_stdout = strcmp(opt->json_path, "-") == 0;
	FILE *f = to_stdout ? stdout : fopen(opt->json_path, "w");

	if (f == NULL) {
		fprintf(stderr, "scenarios: %s: %s\n", opt->json_path, strerror(errno));
		return -1;
	}
	fprintf(f,
		"{\"config\": {\"nodes\": %d, \"shards\": %u, \"election_ms\": %u, "
		"\"heartbeat_ms\": %u, \"poll_us\": %u, \"retry_ms\": %u, \"cpus\": %ld},\n",
		SC_NODES, opt->shards, opt->election_ms, opt->heartbeat_ms, opt->poll_us,
		opt->retry_ms, sysconf(_SC_NPROCESSORS_ONLN));
	fprintf(f, " \"election\": [");
	for (uint32_t k = 0; k < e_count; k++) {
		fprintf(f, "%s\n  {\"fault\": \"%s\", \"groups\": 1, \"trials\": %u, \"ok\": %u, ",
			k ? "," : "", e[k].fault, e[k].trials, e[k].ok);
		sc_json_load(f, e[k].load);
		fprintf(f, ", ");
		sc_json_stats(f, "leader_known", &e[k].known);
		fprintf(f, ", ");
		sc_json_stats(f, "committed", &e[k].commit);
		fprintf(f, ", \"trials_in_order\": [");
		for (uint32_t t = 0; t < e[k].ok && e[k].trial_commit_ns != NULL; t++)
			fprintf(f, "%s{\"killed\": %u, \"new_leader\": %u, \"committed_ms\": %.3f}",
				t ? ", " : "", e[k].victims[t], e[k].winners[t],
				sc_ms(e[k].trial_commit_ns[t]));
		fprintf(f, "]}");
	}
	fprintf(f, "],\n \"mass\": [");
	for (uint32_t k = 0; k < m_count; k++) {
		fprintf(f,
			"%s\n  {\"groups\": %u, \"start_ms\": %.1f, \"start_committed_ms\": %.1f, "
			"\"killed\": %u, \"led\": [%u, %u, %u], \"all_committed_ms\": %.3f, "
			"\"others_max_ms\": %.3f, \"slow_groups\": %u, \"rejoin_ready_ms\": %.1f, "
			"\"rejoin_ms\": %.1f, "
			"\"redirects\": %llu, \"not_leader_no_hint\": %llu, "
			"\"errors\": %llu, \"retries\": %llu, ",
			k ? "," : "", opt->mass_groups, sc_ms(m[k].start_ns),
			sc_ms(m[k].committed_ns), m[k].victim, m[k].led[0], m[k].led[1],
			m[k].led[2], sc_ms(m[k].all_ns), sc_ms(m[k].others_max_ns), m[k].slow,
			sc_ms(m[k].rejoin_ready_ns), sc_ms(m[k].rejoin_ns),
			(unsigned long long)m[k].redirects, (unsigned long long)m[k].no_hint,
			(unsigned long long)m[k].errors, (unsigned long long)m[k].retries);
		sc_json_load(f, m[k].load);
		fprintf(f, ", ");
		sc_json_stats(f, "killed_nodes_groups", &m[k].affected);
		fprintf(f, "}");
	}
	fprintf(f, "],\n \"idle\": [");
	for (uint32_t k = 0; k < i_count; k++) {
		const struct sc_idle_result *r = &idle[k];

		fprintf(f,
			"%s\n  {\"groups\": %u, \"ready_ms\": %.1f, \"elected_ms\": %.1f, "
			"\"window_s\": %.2f, ",
			k ? "," : "", r->groups, sc_ms(r->ready_ns), sc_ms(r->elected_ns),
			r->window_s);
		sc_json_load(f, r->load);
		fprintf(f, ", \"nodes\": [");
		for (uint32_t i = 0; i < SC_NODES; i++)
			fprintf(
			    f,
			    "%s{\"id\": %u, \"leads\": %llu, \"cpu_pct\": %.4f, "
			    "\"sched_cpu_pct\": %.4f, \"rss_kib\": %llu, \"peak_rss_kib\": %llu}",
			    i ? ", " : "", i + 1, (unsigned long long)r->leads[i], r->cpu_pct[i],
			    r->cpu_ns_pct[i], (unsigned long long)r->rss_kib[i],
			    (unsigned long long)r->hwm_kib[i]);
		fprintf(f, "]}");
	}
	fprintf(f, "]}\n");
	if (to_stdout)
		return fflush(f) == 0 ? 0 : -1;
	return fclose(f) == 0 ? 0 : -1;
}

/* --- Command line. --- */

static void sc_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: flotilla-scenarios --node-bin PATH [options]\n"
	    "  --node-bin PATH        the flotilla-node to run (required)\n"
	    "  --dir DIR              data and logs, on the disk to measure (scenarios-data)\n"
	    "  --scenario LIST        election,mass,idle or all (all)\n"
	    "  --fault LIST           election faults: kill,stop or both (both)\n"
	    "  --trials N             election trials per fault (50)\n"
	    "  --mass-trials N        mass failover trials (3)\n"
	    "  --mass-groups N        groups in the mass failover (10000)\n"
	    "  --idle-groups LIST     group counts for idle scale (10000,100000)\n"
	    "  --election-ms MS       election timeout (1000)\n"
	    "  --heartbeat-ms MS      heartbeat interval (100)\n"
	    "  --shards N             shard threads per node (2)\n"
	    "  --poll-us US           election: pause between polls of a survivor (1000)\n"
	    "  --retry-ms MS          mass: pause before asking a leaderless group again (10)\n"
	    "  --settle-ms MS         mass: pause between the warm PUTs and the kill (0)\n"
	    "  --idle-window-s S      idle: CPU measurement window (10)\n"
	    "  --idle-settle-ms MS    idle: wait beyond 3 election timeouts before it (2000)\n"
	    "  --base-port P          node i uses P+2(i-1) and P+2(i-1)+1 (random)\n"
	    "  --min-uptime-ms MS     election: every node up this long before a kill\n"
	    "                         (election + heartbeat: a node just restarted does not vote)\n"
	    "  --seed N               random pauses (time)\n"
	    "  --json FILE            also write the results as JSON ('-': stdout)\n"
	    "  --quiet                no per-trial progress on stderr\n");
}

static int sc_parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (text == NULL || *text < '0' || *text > '9')
		return -1;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int sc_parse_list(const char *text, const char *const *names, bool *flags, int count)
{
	char buf[128];
	char *save = NULL;

	if (strlen(text) >= sizeof(buf))
		return -1;
	strcpy(buf, text);
	for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		bool found = false;

		for (int i = 0; i < count; i++)
			if (strcmp(tok, names[i]) == 0 ||
			    (strcmp(tok, "all") == 0 || strcmp(tok, "both") == 0)) {
				flags[i] = true;
				found = true;
			}
		if (!found)
			return -1;
	}
	return 0;
}

static int sc_parse_args(struct sc_opt *o, int argc, char **argv)
{
	enum {
		O_NODE = 256,
		O_DIR,
		O_SCEN,
		O_FAULT,
		O_TRIALS,
		O_MTRIALS,
		O_MGROUPS,
		O_IGROUPS,
		O_ELECT,
		O_HB,
		O_SHARDS,
		O_POLL,
		O_RETRY,
		O_SETTLE,
		O_WINDOW,
		O_ISETTLE,
		O_PORT,
		O_UPTIME,
		O_SEED,
		O_JSON,
		O_QUIET,
		O_HELP
	};
	static const struct option longopts[] = {
	    {"node-bin", required_argument, NULL, O_NODE},
	    {"dir", required_argument, NULL, O_DIR},
	    {"scenario", required_argument, NULL, O_SCEN},
	    {"fault", required_argument, NULL, O_FAULT},
	    {"trials", required_argument, NULL, O_TRIALS},
	    {"mass-trials", required_argument, NULL, O_MTRIALS},
	    {"mass-groups", required_argument, NULL, O_MGROUPS},
	    {"idle-groups", required_argument, NULL, O_IGROUPS},
	    {"election-ms", required_argument, NULL, O_ELECT},
	    {"heartbeat-ms", required_argument, NULL, O_HB},
	    {"shards", required_argument, NULL, O_SHARDS},
	    {"poll-us", required_argument, NULL, O_POLL},
	    {"retry-ms", required_argument, NULL, O_RETRY},
	    {"settle-ms", required_argument, NULL, O_SETTLE},
	    {"idle-window-s", required_argument, NULL, O_WINDOW},
	    {"idle-settle-ms", required_argument, NULL, O_ISETTLE},
	    {"base-port", required_argument, NULL, O_PORT},
	    {"min-uptime-ms", required_argument, NULL, O_UPTIME},
	    {"seed", required_argument, NULL, O_SEED},
	    {"json", required_argument, NULL, O_JSON},
	    {"quiet", no_argument, NULL, O_QUIET},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	static const char *const scen_names[] = {"election", "mass", "idle"};
	static const char *const fault_names[] = {"kill", "stop"};
	bool scen[3] = {false}, fault[2] = {false}, scen_set = false, fault_set = false;
	int opt_char;

	*o = (struct sc_opt){.dir = "scenarios-data",
			     .trials = 50,
			     .mass_trials = 3,
			     .mass_groups = 10000,
			     .idle_groups = {10000, 100000},
			     .idle_sizes = 2,
			     .election_ms = 1000,
			     .heartbeat_ms = 100,
			     .shards = 2,
			     .poll_us = 1000,
			     .retry_ms = 10,
			     .idle_window_s = 10,
			     .idle_settle_ms = 2000,
			     .uptime_ms = -1,
			     .seed = (uint64_t)time(NULL) ^ (uint64_t)getpid()};
	while ((opt_char = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		uint32_t port = 0, seed = 0;
		int bad = 0;

		switch (opt_char) {
		case O_NODE:
			o->node_bin = optarg;
			break;
		case O_DIR:
			o->dir = optarg;
			break;
		case O_SCEN:
			bad = sc_parse_list(optarg, scen_names, scen, 3);
			scen_set = true;
			break;
		case O_FAULT:
			bad = sc_parse_list(optarg, fault_names, fault, 2);
			fault_set = true;
			break;
		case O_TRIALS:
			bad = sc_parse_u32(optarg, 1, SC_TRIALS_MAX, &o->trials);
			break;
		case O_MTRIALS:
			bad = sc_parse_u32(optarg, 1, 1000, &o->mass_trials);
			break;
		case O_MGROUPS:
			bad = sc_parse_u32(optarg, 1, 10000000, &o->mass_groups);
			break;
		case O_IGROUPS: {
			char buf[256];
			char *save = NULL;

			o->idle_sizes = 0;
			bad = strlen(optarg) >= sizeof(buf);
			if (bad)
				break;
			strcpy(buf, optarg);
			for (char *tok = strtok_r(buf, ",", &save); tok != NULL && !bad;
			     tok = strtok_r(NULL, ",", &save)) {
				uint32_t v;

				bad = o->idle_sizes == SC_IDLE_SIZES_MAX ||
				      sc_parse_u32(tok, 1, 10000000, &v) != 0;
				if (!bad)
					o->idle_groups[o->idle_sizes++] = v;
			}
			bad = bad || o->idle_sizes == 0;
			break;
		}
		case O_ELECT:
			bad = sc_parse_u32(optarg, 2, 600000, &o->election_ms);
			break;
		case O_HB:
			bad = sc_parse_u32(optarg, 1, 600000, &o->heartbeat_ms);
			break;
		case O_SHARDS:
			bad = sc_parse_u32(optarg, 1, 1024, &o->shards);
			break;
		case O_POLL:
			bad = sc_parse_u32(optarg, 50, 1000000, &o->poll_us);
			break;
		case O_RETRY:
			bad = sc_parse_u32(optarg, 1, 10000, &o->retry_ms);
			break;
		case O_SETTLE:
			bad = sc_parse_u32(optarg, 0, 600000, &o->settle_ms);
			break;
		case O_WINDOW:
			bad = sc_parse_u32(optarg, 1, 3600, &o->idle_window_s);
			break;
		case O_ISETTLE:
			bad = sc_parse_u32(optarg, 0, 600000, &o->idle_settle_ms);
			break;
		case O_PORT:
			bad = sc_parse_u32(optarg, 1024, 65535 - 2 * SC_NODES, &port);
			o->base_port = port;
			break;
		case O_UPTIME:
			bad = sc_parse_u32(optarg, 0, 600000, &port);
			o->uptime_ms = port;
			break;
		case O_SEED:
			bad = sc_parse_u32(optarg, 0, UINT32_MAX, &seed);
			o->seed = seed;
			break;
		case O_JSON:
			o->json_path = optarg;
			break;
		case O_QUIET:
			o->quiet = true;
			break;
		case O_HELP:
		case 'h':
			sc_usage(stdout);
			exit(0);
		default:
			return -1;
		}
		if (bad) {
			fprintf(stderr, "flotilla-scenarios: bad value for %s: '%s'\n",
				argv[optind - 1], optarg);
			return -1;
		}
	}
	if (optind != argc || o->node_bin == NULL) {
		fprintf(stderr, "flotilla-scenarios: %s\n",
			o->node_bin == NULL ? "--node-bin is required" : "unexpected argument");
		return -1;
	}
	if (o->heartbeat_ms >= o->election_ms) {
		fprintf(stderr, "flotilla-scenarios: --heartbeat-ms must be below --election-ms\n");
		return -1;
	}
	if (o->uptime_ms < 0)
		o->uptime_ms = (int64_t)o->election_ms + o->heartbeat_ms;
	if (!scen_set)
		scen[0] = scen[1] = scen[2] = true;
	if (!fault_set)
		fault[0] = fault[1] = true;
	o->run_election = scen[0];
	o->run_mass = scen[1];
	o->run_idle = scen[2];
	o->fault_kill = fault[0];
	o->fault_stop = fault[1];
	return 0;
}

int main(int argc, char **argv)
{
	static struct sc_election_result election[2];
	static struct sc_mass_trial mass[1000];
	static struct sc_idle_result idle[SC_IDLE_SIZES_MAX];
	uint32_t e_count = 0, m_count = 0, i_count = 0;
	struct sc_opt opt;
	struct sigaction sa = {.sa_handler = sc_on_signal};
	int rv = 0;

	if (sc_parse_args(&opt, argc, argv) != 0) {
		sc_usage(stderr);
		return 2;
	}
	if (access(opt.node_bin, X_OK) != 0) {
		fprintf(stderr, "flotilla-scenarios: %s: %s\n", opt.node_bin, strerror(errno));
		return 2;
	}
	sc_rng_state = opt.seed;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (opt.run_election) {
		if (opt.fault_kill && sc_election(&opt, false, &election[e_count++]) != 0)
			rv = 1;
		if (rv == 0 && opt.fault_stop && sc_election(&opt, true, &election[e_count++]) != 0)
			rv = 1;
		sc_print_election(&opt, election, e_count);
		fflush(stdout);
	}
	if (rv == 0 && opt.run_mass) {
		if (sc_mass(&opt, mass, &m_count) != 0)
			rv = 1;
		sc_print_mass(&opt, mass, m_count);
		fflush(stdout);
	}
	if (rv == 0 && opt.run_idle) {
		for (uint32_t k = 0; k < opt.idle_sizes && rv == 0; k++) {
			if (sc_idle_one(&opt, (uint32_t)opt.idle_groups[k], &idle[i_count]) != 0)
				rv = 1;
			else
				i_count++;
		}
		sc_print_idle(&opt, idle, i_count);
		fflush(stdout);
	}
	if (opt.json_path != NULL &&
	    sc_write_json(&opt, election, e_count, mass, m_count, idle, i_count) != 0)
		rv = 1;
	for (uint32_t k = 0; k < e_count; k++) {
		free(election[k].commit_ns);
		free(election[k].known_ns);
		free(election[k].trial_commit_ns);
		free(election[k].victims);
		free(election[k].winners);
	}
	return rv;
}
