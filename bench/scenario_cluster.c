/* flotilla-scenarios' three flotilla-node processes: start them and wait
 * for their ready lines, stop, kill and reap them by PID, and never leave one
 * running when the program ends. */
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

uint32_t sc_client_port(const struct sc_cluster *c, uint32_t i)
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
int sc_node_reap(struct sc_cluster *c, uint32_t i, uint32_t wait_ms, int *status)
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

void sc_cluster_stop(struct sc_cluster *c)
{
	for (uint32_t i = 0; i < SC_NODES; i++)
		if (c->nodes[i].pid > 0 && !c->nodes[i].stopped)
			kill(c->nodes[i].pid, SIGTERM);
	for (uint32_t i = 0; i < SC_NODES; i++)
		sc_node_stop(c, i);
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

/* Start the nodes in mask (bit i: node i) and wait for each ready line.
 * Returns 0, 3 when a port was in use, or -1. */
int sc_start(struct sc_cluster *c, uint32_t mask, uint64_t *ready_ns)
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
int sc_start_all(struct sc_cluster *c, uint64_t *ready_ns)
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
