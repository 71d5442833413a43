/* flotilla-scenarios' three flotilla-node processes, started and stopped by
 * tools/cluster (the one launcher of tests, benchmarks and the demo): the
 * cluster of a scenario is a tools/cluster directory, node i in node-i with
 * its log node-i.log and its PID in node-i.pid. The time a node became
 * ready is read from its log while tools/cluster waits for it; faults
 * (SIGKILL, SIGSTOP) go to the PID directly, and no node is left running
 * when the program ends. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

#include "bench/scenario_internal.h"

/* PIDs of running nodes, for the signal handler. */
static volatile pid_t sc_pids[SC_NODES];

void sc_on_signal(int sig)
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

/* A random even base port whose SC_NODES pairs of ports lie below the
 * kernel's ephemeral range, as tools/cluster pick-port chooses: no
 * outgoing connection takes such a port while a killed node is down. */
static uint32_t sc_pick_base_port(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	unsigned low = 32768, high;
	uint32_t first = 10000, width = 2 * SC_NODES;

	if (f != NULL) {
		if (fscanf(f, "%u %u", &low, &high) != 2)
			low = 32768;
		fclose(f);
	}
	if (low < first + width + 2)
		first = 1024;
	if (low < first + width + 2)
		return first;
	return first + 2 * (uint32_t)(sc_rand() % ((low - width - first) / 2));
}

/* Remove a node's data directory and log: only paths this program named. */
void sc_node_wipe(struct sc_node *n)
{
	struct stat st;

	if (lstat(n->data_dir, &st) == 0 &&
	    nftw(n->data_dir, sc_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "scenarios: cannot remove %s: %s\n", n->data_dir, strerror(errno));
	unlink(n->log_path);
	n->log_offset = 0;
	n->leads = 0;
}

int sc_cluster_init(struct sc_cluster *c, const struct sc_opt *opt, const char *name,
		    uint32_t groups)
{
	memset(c, 0, sizeof(*c));
	c->opt = opt;
	c->groups = groups;
	c->base_port = opt->base_port != 0 ? opt->base_port : sc_pick_base_port();
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

uint32_t sc_client_port(const struct sc_cluster *c, uint32_t i)
{
	return c->base_port + 2 * i + 1;
}

/* The tools/cluster process a start left to finish on its own (see
 * sc_cluster_run): wait for it, bounded. */
static void sc_script_reap(struct sc_cluster *c)
{
	for (int i = 0; i < 10000 && c->script_pid > 0; i++) {
		pid_t r = waitpid(c->script_pid, NULL, WNOHANG);

		if (r == c->script_pid || (r < 0 && errno != EINTR))
			c->script_pid = 0;
		else
			sc_sleep_ms(1);
	}
	if (c->script_pid > 0) {
		fprintf(stderr, "scenarios: tools/cluster (pid %d) did not exit\n",
			(int)c->script_pid);
		kill(c->script_pid, SIGKILL);
		waitpid(c->script_pid, NULL, 0);
		c->script_pid = 0;
	}
}

/* Run tools/cluster with args (args[0] is the script, then its command), its
 * stdout discarded and its stderr this program's. watch, when not NULL, runs
 * every millisecond while it does and once after; once it returns true the
 * script's remaining work (printing, exiting) is not waited for: it is
 * reaped later, so that what a scenario times next does not include it.
 * Returns its exit status (0 when watch ended the wait), or -1 when it could
 * not run or ended on a signal. */
static int sc_cluster_run(struct sc_cluster *c, const char *const *args,
			  bool (*watch)(struct sc_cluster *c, void *arg), void *arg)
{
	pid_t pid, parent = getpid();
	int status = 0;

	sc_script_reap(c);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null_fd = open("/dev/null", O_RDWR);

		/* The script never outlives this program; the nodes it starts
		 * are stopped by PID (sc_on_signal, sc_cluster_stop). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 ||
		    dup2(null_fd, STDOUT_FILENO) < 0)
			_exit(127);
		execv(c->opt->cluster_bin, (char *const *)args);
		_exit(127);
	}
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (watch != NULL && watch(c, arg)) {
			c->script_pid = pid;
			return 0;
		}
		sc_sleep_ms(1);
	}
	if (watch != NULL)
		watch(c, arg);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Whether pid has exited: gone, or a zombie that its parent has not reaped
 * (tools/cluster started it, so this program cannot wait for it). */
static bool sc_pid_is_gone(pid_t pid)
{
	char path[64], state = 0;
	FILE *f;

	if (kill(pid, 0) != 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return true;
	if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
		state = 0;
	fclose(f);
	return state == 'Z' || state == 'X';
}

/* Wait for node i's exit (it was killed or told to stop); bounded. */
int sc_node_reap(struct sc_cluster *c, uint32_t i, uint32_t wait_ms)
{
	struct sc_node *n = &c->nodes[i];
	uint64_t deadline = sc_now_ns() + wait_ms * SC_NS_PER_MS;

	if (n->pid <= 0)
		return 0;
	while (!sc_pid_is_gone(n->pid)) {
		if (sc_now_ns() >= deadline)
			return -ETIMEDOUT;
		sc_sleep_ms(5);
	}
	n->pid = 0;
	n->stopped = false;
	sc_pids[i] = 0;
	client_close(&c->nodes[i].conn);
	c->nodes[i].inflight = 0;
	return 0;
}

/* Whether node n's log ends with its clean exit (after SIGTERM). */
static bool sc_node_exited_cleanly(const struct sc_node *n)
{
	char line[512], last[512] = "";
	FILE *f = fopen(n->log_path, "r");

	if (f == NULL)
		return false;
	while (fgets(line, sizeof(line), f) != NULL)
		memcpy(last, line, sizeof(last));
	fclose(f);
	return strstr(last, ": exiting") != NULL;
}

/* Stop every node: SIGTERM to all at once, then tools/cluster stop, which
 * waits a bounded time for each and kills what is left. */
void sc_cluster_stop(struct sc_cluster *c)
{
	char wait_s[16];
	const char *args[] = {c->opt->cluster_bin, "stop", "--dir", c->dir, "--wait", wait_s, NULL};
	bool any = false;

	for (uint32_t i = 0; i < SC_NODES; i++) {
		if (c->nodes[i].pid <= 0)
			continue;
		any = true;
		if (c->nodes[i].stopped)
			kill(c->nodes[i].pid, SIGCONT);
		kill(c->nodes[i].pid, SIGTERM);
	}
	if (!any) {
		sc_script_reap(c);
		return;
	}
	snprintf(wait_s, sizeof(wait_s), "%d", SC_STOP_WAIT_MS / 1000);
	if (sc_cluster_run(c, args, NULL, NULL) != 0)
		fprintf(stderr, "scenarios: tools/cluster stop failed\n");
	for (uint32_t i = 0; i < SC_NODES; i++) {
		if (c->nodes[i].pid <= 0)
			continue;
		if (sc_node_reap(c, i, 1000) != 0) {
			fprintf(stderr, "scenarios: node %u (pid %d) still running after stop\n",
				i + 1, (int)c->nodes[i].pid);
			kill(c->nodes[i].pid, SIGKILL);
			sc_node_reap(c, i, 10000);
		} else if (!sc_node_exited_cleanly(&c->nodes[i])) {
			fprintf(stderr, "scenarios: node %u did not exit cleanly at SIGTERM\n",
				i + 1);
		}
	}
}

void sc_print_log_tail(const struct sc_node *n)
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

/* What sc_start watches while tools/cluster starts nodes: the first PID file
 * it writes (right after it forks the first node: the start of the clock),
 * and the ready line of each node, from where its log ended before. */
struct sc_ready_watch {
	uint32_t mask;
	off_t offset[SC_NODES];
	bool ready[SC_NODES];
	uint64_t start_ns; /* Until a node is launched: when the script was. */
	bool launched;
	uint64_t *ready_ns; /* May be NULL. */
};

static void sc_pid_path(const struct sc_cluster *c, uint32_t i, char *path, size_t size)
{
	snprintf(path, size, "%s/node-%u.pid", c->dir, i + 1);
}

static pid_t sc_read_pid(const struct sc_cluster *c, uint32_t i)
{
	char path[PATH_MAX + 32];
	long pid = 0;
	FILE *f;

	sc_pid_path(c, i, path, sizeof(path));
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

/* Returns true once every node of the mask is ready and has its PID file:
 * the start is done, whatever the script still prints. */
static bool sc_ready_check(struct sc_cluster *c, void *arg)
{
	struct sc_ready_watch *w = arg;
	bool done = true;

	for (uint32_t i = 0; i < SC_NODES && !w->launched; i++) {
		char path[PATH_MAX + 32];

		sc_pid_path(c, i, path, sizeof(path));
		if ((w->mask & (1u << i)) && access(path, F_OK) == 0) {
			w->launched = true;
			w->start_ns = sc_now_ns();
		}
	}
	for (uint32_t i = 0; i < SC_NODES; i++) {
		char line[512], want[64];
		FILE *f;

		if (!(w->mask & (1u << i)) || w->ready[i])
			continue;
		f = fopen(c->nodes[i].log_path, "r");
		if (f == NULL)
			continue;
		snprintf(want, sizeof(want), "flotilla-node %u ready", i + 1);
		if (fseeko(f, w->offset[i], SEEK_SET) == 0) {
			while (fgets(line, sizeof(line), f) != NULL) {
				size_t len = strlen(line);

				if (len == 0 || line[len - 1] != '\n')
					break; /* A line still being written: read it next time. */
				w->offset[i] += (off_t)len;
				if (strncmp(line, want, strlen(want)) != 0)
					continue;
				w->ready[i] = true;
				c->nodes[i].ready_at_ns = sc_now_ns();
				if (w->ready_ns != NULL)
					w->ready_ns[i] = c->nodes[i].ready_at_ns - w->start_ns;
				break;
			}
		}
		fclose(f);
	}
	for (uint32_t i = 0; i < SC_NODES; i++)
		if ((w->mask & (1u << i)) && (!w->ready[i] || sc_read_pid(c, i) <= 0))
			done = false;
	return done;
}

/* Start the nodes in mask (bit i: node i; every node, or one) through
 * tools/cluster start, which returns once each has printed its ready line;
 * the time of each ready line is read from its log meanwhile. The nodes run
 * plaintext (--insecure): the scenarios measure the engine, not TLS
 * handshakes, as the figures before TLS did. Returns 0, 3
 * when a port was in use, or -1. */
int sc_start(struct sc_cluster *c, uint32_t mask, uint64_t *ready_ns)
{
	const struct sc_opt *opt = c->opt;
	struct sc_ready_watch w = {.mask = mask, .ready_ns = ready_ns};
	char groups[16], shards[16], port[16], node[16], wait_s[16], election[16], heartbeat[16];
	const char *args[32] = {
	    opt->cluster_bin, "start",       "--dir",        c->dir, "--nodes",     "3",
	    "--groups",       groups,        "--shards",     shards, "--base-port", port,
	    "--bin",          opt->node_bin, "--ready-wait", wait_s, "--insecure"};
	int argc = 17, rv;

	static_assert(SC_NODES == 3, "--nodes above");
	snprintf(groups, sizeof(groups), "%u", c->groups);
	snprintf(shards, sizeof(shards), "%u", opt->shards);
	snprintf(port, sizeof(port), "%u", c->base_port);
	snprintf(wait_s, sizeof(wait_s), "%d", SC_READY_WAIT_MS / 1000);
	snprintf(election, sizeof(election), "%u", opt->election_ms);
	snprintf(heartbeat, sizeof(heartbeat), "%u", opt->heartbeat_ms);
	if (mask != (1u << SC_NODES) - 1) {
		if (__builtin_popcount(mask) != 1)
			return -1; /* tools/cluster starts every node or one. */
		snprintf(node, sizeof(node), "%d", __builtin_ctz(mask) + 1);
		args[argc++] = "--node";
		args[argc++] = node;
	}
	args[argc++] = "--";
	args[argc++] = "--election-ms";
	args[argc++] = election;
	args[argc++] = "--heartbeat-ms";
	args[argc++] = heartbeat;
	args[argc++] = "--quiesce";
	args[argc++] = "on";
	if (c->groups > 100000) { /* Past flotilla-node's default --groups-max. */
		args[argc++] = "--groups-max";
		args[argc++] = groups;
	}
	args[argc] = NULL;
	for (uint32_t i = 0; i < SC_NODES; i++) {
		char path[PATH_MAX + 32];
		struct stat st;

		w.offset[i] = stat(c->nodes[i].log_path, &st) == 0 ? st.st_size : 0;
		sc_pid_path(c, i, path, sizeof(path));
		if (mask & (1u << i))
			unlink(path); /* Not running: tools/cluster writes it anew. */
	}
	w.start_ns = sc_now_ns();
	rv = sc_cluster_run(c, args, sc_ready_check, &w);
	c->started_ns = w.start_ns;
	if (rv != 0) {
		fprintf(stderr, "scenarios: tools/cluster start failed with status %d\n", rv);
		return rv == 3 ? 3 : -1; /* It stopped the nodes it started. */
	}
	for (uint32_t i = 0; i < SC_NODES; i++) {
		if (!(mask & (1u << i)))
			continue;
		c->nodes[i].pid = sc_read_pid(c, i);
		c->nodes[i].stopped = false;
		sc_pids[i] = c->nodes[i].pid;
		if (!w.ready[i]) { /* Not seen: it was, since the script returned. */
			c->nodes[i].ready_at_ns = sc_now_ns();
			if (ready_ns != NULL)
				ready_ns[i] = c->nodes[i].ready_at_ns - w.start_ns;
		}
		if (c->nodes[i].pid <= 0) {
			fprintf(stderr, "scenarios: no pid file for node %u\n", i + 1);
			return -1;
		}
	}
	return 0;
}

/* Start every node; on a port in use, retry with another random base (only
 * when the base was not given). */
int sc_start_all(struct sc_cluster *c, uint64_t *ready_ns)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		int rv = sc_start(c, (1u << SC_NODES) - 1, ready_ns);

		if (rv != 3)
			return rv;
		if (c->opt->base_port != 0)
			break;
		c->base_port = sc_pick_base_port();
		fprintf(stderr, "scenarios: a port was in use; base port %u now\n", c->base_port);
	}
	fprintf(stderr, "scenarios: ports in use (try another --base-port)\n");
	return -1;
}
