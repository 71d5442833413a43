/* flotilla-node's options: the flags, and the same names in a key=value
 * file (--config), applied in order so that the last one wins. */
#include "tools/node_options.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "shard/config.h"
#include "shard/snapshot_policy.h"
#include "tools/node_store.h"

enum {
	OPT_U64,
	OPT_U32,
	OPT_BOOL,
	OPT_STR,
	OPT_PEER,
	OPT_MEMBERS,
	OPT_CONFIG,
	OPT_LOG_LEVEL,
	OPT_LOG_FORMAT
};

struct node_options_entry {
	const char *name;
	int kind;
	size_t offset;
	size_t size; /* OPT_STR: buffer size. */
	uint64_t min, max;
	const char *help;
};

#define OPT_FIELD(f) offsetof(struct node_options, f)

static const struct node_options_entry node_options_table[] = {
    {"id", OPT_U64, OPT_FIELD(id), 0, 1, UINT64_MAX, "N  this node's id (required, >= 1)"},
    {"cluster-id", OPT_U64, OPT_FIELD(cluster_id), 0, 0, UINT64_MAX, "N  cluster id (1)"},
    {"data", OPT_STR, OPT_FIELD(data_dir), PATH_MAX, 0, 0, "DIR  data directory (required)"},
    {"listen", OPT_STR, OPT_FIELD(listen_addr), NODE_ADDR_SIZE_MAX, 0, 0,
     "HOST:PORT  peer listener (127.0.0.1:0)"},
    {"client", OPT_STR, OPT_FIELD(client_addr), NODE_ADDR_SIZE_MAX, 0, 0,
     "HOST:PORT  client listener (127.0.0.1:0)"},
    {"metrics", OPT_STR, OPT_FIELD(metrics_addr), NODE_ADDR_SIZE_MAX, 0, 0,
     "HOST:PORT  serve GET /metrics (Prometheus text) here; port 0 picks one (off)"},
    {"peer", OPT_PEER, 0, 0, 0, 0,
     "ID=HOST:PORT  another node's peer listener (repeatable); must resolve at start; "
     "merged with the address book in --data (flotilla-admin add-node changes it)"},
    {"shards", OPT_U32, OPT_FIELD(shards_count), 0, 0, 1024, "N  shard threads (0: CPUs)"},
    {"groups", OPT_U32, OPT_FIELD(groups_count), 0, 0, 10000000,
     "N  create groups 1..N at start unless present (0); not with --join on"},
    {"groups-max", OPT_U32, OPT_FIELD(groups_max), 0, 1, 10000000,
     "N  host at most N groups: a JOIN of one more is refused, 1 to 10000000 (100000)"},
    {"members", OPT_MEMBERS, 0, 0, 0, 0,
     "ID,ID,...  their voters (this node and its peers); each this node or a --peer"},
    {"election-ms", OPT_U32, OPT_FIELD(election_ms), 0, 1, 600000,
     "MS  election timeout, >= 2 x --heartbeat-ms and >= 5 x --tick-ms (1000)"},
    {"heartbeat-ms", OPT_U32, OPT_FIELD(heartbeat_ms), 0, 1, 600000,
     "MS  heartbeat interval, >= --tick-ms (100)"},
    {"tick-ms", OPT_U32, OPT_FIELD(tick_ms), 0, 1, 60000, "MS  timer granularity (10)"},
    {"quiesce", OPT_BOOL, OPT_FIELD(quiesce), 0, 0, 0, "on|off  idle groups stop ticking"},
    {"lease-read", OPT_BOOL, OPT_FIELD(lease_read), 0, 0, 0, "on|off  reads on the leader lease"},
    {"join", OPT_BOOL, OPT_FIELD(join), 0, 0, 0,
     "on|off  a new node: create no group (no --groups), receive them by JOIN "
     "(flotilla-admin move)"},
    {"entry-size-max", OPT_U32, OPT_FIELD(entry_size_max), 0, 64, FL_ENTRY_SIZE_MAX,
     "BYTES  largest log entry, 64 to 16777216 (1048576)"},
    {"inbox-max", OPT_U32, OPT_FIELD(inbox_max), 0, 1, UINT32_MAX, "N  requests queued per shard"},
    {"wal-segment-size", OPT_U32, OPT_FIELD(wal_segment_size), 0, 0, 1u << 30,
     "BYTES  WAL segment file size (0: library default)"},
    {"snapshot-entries", OPT_U32, OPT_FIELD(snapshot_entries), 0, 0, UINT32_MAX,
     "N  floor: a group snapshots once N entries were applied since its last one, and "
     "the ratio holds (10000; 0: off)"},
    {"check-entries", OPT_U32, OPT_FIELD(check_entries), 0, 0, UINT32_MAX,
     "N  a consistency check of each group every N log entries (0: on request only)"},
#ifdef FLOTILLA_TEST_HOOKS
    {"allow-corrupt-for-tests", OPT_BOOL, OPT_FIELD(allow_corrupt), 0, 0, 0,
     "on|off  accept CORRUPT requests that make this replica diverge (off)"},
#endif
    {"snapshot-bytes", OPT_U32, OPT_FIELD(snapshot_bytes), 0, 0, UINT32_MAX,
     "BYTES  floor: or once BYTES of entries were (0: off); with both floors off, a group "
     "snapshots only when asked"},
    {"snapshot-ratio-percent", OPT_U32, OPT_FIELD(snapshot_ratio_percent), 0, 0,
     SNAPSHOT_POLICY_RATIO_PERCENT_MAX,
     "P  ratio: the bytes applied since a group's last snapshot are at least P% of its "
     "size, so that snapshots write about 100/P x the bytes applied, 0 to 1000 "
     "(50; 0: the floor alone)"},
    {"snapshot-compress", OPT_BOOL, OPT_FIELD(snapshot_compress), 0, 0, 0,
     "on|off  send snapshot chunks LZ4-compressed (off)"},
    {"snapshot-freeze", OPT_BOOL, OPT_FIELD(snapshot_freeze), 0, 0, 0,
     "on|off  copy a group's map and save it on the snapshot thread (on)"},
    {"client-threads", OPT_U32, OPT_FIELD(client_threads), 0, 1, 64, "N  client threads (2)"},
    {"client-conns-max", OPT_U32, OPT_FIELD(conns_max), 0, 1, 1000000,
     "N  client connections (1024)"},
    {"client-conns-per-source-max", OPT_U32, OPT_FIELD(conns_per_source_max), 0, 1, 1000000,
     "N  client connections from one source address (256)"},
    {"client-inflight-max", OPT_U32, OPT_FIELD(inflight_max), 0, 1, 1000000,
     "N  requests in flight per connection (1024)"},
    {"client-idle-s", OPT_U32, OPT_FIELD(client_idle_s), 0, 0, 86400,
     "S  close a client connection that sent no complete request and waits for no answer "
     "for S seconds, 0 to 86400 (300; 0: never)"},
    {"client-request-ms", OPT_U32, OPT_FIELD(client_request_ms), 0, 0, 3600000,
     "MS  close a client connection whose request began arriving but is not complete "
     "after MS ms, 0 to 3600000 (10000; 0: never)"},
    {"client-handshake-ms", OPT_U32, OPT_FIELD(client_handshake_ms), 0, 1, 60000,
     "MS  close a client connection whose TLS handshake is not over after MS ms, 1 to "
     "60000 (2000)"},
    {"client-buffer-budget-mb", OPT_U32, OPT_FIELD(client_buffer_budget_mb), 0, 16, 1048576,
     "MB  bytes of client input and output buffers and of answers not yet sent, node-wide; "
     "past it large read answers are BUSY and connections holding unsent answers are not "
     "read, 16 to 1048576 (256)"},
    {"leader-poll-ms", OPT_U32, OPT_FIELD(leader_poll_ms), 0, 10, 3600000,
     "MS  how often each group's leader is polled (200)"},
    {"store", OPT_STR, OPT_FIELD(store), NODE_STORE_NAME_SIZE_MAX, 0, 0,
     "NAME  the key-value store: memory (memory)"},
    {"log-level", OPT_LOG_LEVEL, OPT_FIELD(log_level), 0, 0, 0,
     "error|warn|info|debug  the least severe lines logged (info)"},
    {"log-format", OPT_LOG_FORMAT, OPT_FIELD(log_format), 0, 0, 0,
     "text|logfmt|json  how lines are written on stderr (text)"},
    {"auth-key-file", OPT_STR, OPT_FIELD(auth_key_file), PATH_MAX, 0, 0,
     "FILE  the cluster's shared peer key: 64 to 256 hex digits (32+ random bytes, e.g. "
     "`openssl rand -hex 32`), mode 0600 or stricter; every node the same (none: peers "
     "unauthenticated)"},
    {"tls-ca", OPT_STR, OPT_FIELD(tls_ca_file), PATH_MAX, 0, 0,
     "FILE  the cluster CA (PEM) that peer and client certificates must chain to; with "
     "--tls-cert and --tls-key: TLS 1.3 for peers and clients (none of the three: plaintext)"},
    {"tls-cert", OPT_STR, OPT_FIELD(tls_cert_file), PATH_MAX, 0, 0,
     "FILE  this node's certificate (PEM): subject OU node, CN node-ID"},
    {"tls-key", OPT_STR, OPT_FIELD(tls_key_file), PATH_MAX, 0, 0,
     "FILE  this node's private key (PEM); SIGHUP reloads the three files"},
    {"config", OPT_CONFIG, 0, 0, 0, 0, "FILE  key=value lines with these names; # comments"},
};

void node_options_usage(FILE *out)
{
	fprintf(out, "usage: flotilla-node --id N --data DIR [options]\n"
		     "Options (--name VALUE or --name=VALUE; applied in order, the last wins):\n");
	for (size_t i = 0; i < sizeof(node_options_table) / sizeof(node_options_table[0]); i++)
		fprintf(out, "  --%s %s\n", node_options_table[i].name, node_options_table[i].help);
}

static int node_options_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* ID=HOST:PORT; the address is resolved later, by node_options_check(). */
static int node_options_parse_peer(struct node_options *opt, const char *text, char *why,
				   size_t why_size)
{
	const char *eq = strchr(text, '=');
	char id_text[24];
	uint64_t id;

	if (eq == NULL || eq == text || (size_t)(eq - text) >= sizeof(id_text)) {
		snprintf(why, why_size, "expected ID=HOST:PORT");
		return -EINVAL;
	}
	memcpy(id_text, text, (size_t)(eq - text));
	id_text[eq - text] = '\0';
	if (node_options_parse_u64(id_text, 1, UINT64_MAX, &id) != 0) {
		snprintf(why, why_size, "node id '%s' is not a number >= 1", id_text);
		return -EINVAL;
	}
	if (strlen(eq + 1) >= NODE_ADDR_SIZE_MAX || strchr(eq + 1, ':') == NULL) {
		snprintf(why, why_size, "address '%s' is not HOST:PORT of at most %d bytes", eq + 1,
			 NODE_ADDR_SIZE_MAX - 1);
		return -EINVAL;
	}
	if (opt->peers_count == NODE_PEERS_MAX) {
		snprintf(why, why_size, "more than %d peers", NODE_PEERS_MAX);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < opt->peers_count; i++) {
		if (opt->peer_ids[i] == id) {
			snprintf(why, why_size, "node %llu already has --peer %llu=%s",
				 (unsigned long long)id, (unsigned long long)id,
				 opt->peer_addrs[i]);
			return -EINVAL;
		}
	}
	opt->peer_ids[opt->peers_count] = id;
	strcpy(opt->peer_addrs[opt->peers_count], eq + 1);
	opt->peers_count++;
	return 0;
}

static int node_options_parse_members(struct node_options *opt, const char *text, char *why,
				      size_t why_size)
{
	char buf[512];
	char *save = NULL;

	if (strlen(text) >= sizeof(buf)) {
		snprintf(why, why_size, "longer than %zu bytes", sizeof(buf) - 1);
		return -EINVAL;
	}
	strcpy(buf, text);
	opt->members_count = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		uint64_t id;

		if (opt->members_count == FL_MEMBERS_MAX) {
			snprintf(why, why_size, "more than %d members", FL_MEMBERS_MAX);
			return -EINVAL;
		}
		if (node_options_parse_u64(tok, 1, UINT64_MAX, &id) != 0) {
			snprintf(why, why_size, "'%s' is not a node id >= 1", tok);
			return -EINVAL;
		}
		for (uint32_t i = 0; i < opt->members_count; i++) {
			if (opt->members[i] == id) {
				snprintf(why, why_size, "node %llu is named twice",
					 (unsigned long long)id);
				return -EINVAL;
			}
		}
		opt->members[opt->members_count++] = id;
	}
	if (opt->members_count == 0) {
		snprintf(why, why_size, "expected ID,ID,...");
		return -EINVAL;
	}
	return 0;
}

static int node_options_read_file(struct node_options *opt, const char *path, int depth);

/* Set one option from its text; on a bad value, say which rule it breaks. */
static int node_options_set_one(struct node_options *opt, const struct node_options_entry *o,
				const char *value, int depth, char *why, size_t why_size)
{
	char *field = (char *)opt + o->offset;
	uint64_t v;

	switch (o->kind) {
	case OPT_U64:
	case OPT_U32:
		if (node_options_parse_u64(value, o->min, o->max, &v) != 0) {
			snprintf(why, why_size, "must be a whole number from %llu to %llu",
				 (unsigned long long)o->min, (unsigned long long)o->max);
			return -EINVAL;
		}
		if (o->kind == OPT_U64)
			*(uint64_t *)(void *)field = v;
		else
			*(uint32_t *)(void *)field = (uint32_t)v;
		return 0;
	case OPT_BOOL:
		if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0) {
			snprintf(why, why_size, "must be on or off");
			return -EINVAL;
		}
		*(bool *)(void *)field = strcmp(value, "on") == 0;
		return 0;
	case OPT_STR:
		if (strlen(value) == 0 || strlen(value) >= o->size) {
			snprintf(why, why_size, "must be 1 to %zu bytes", o->size - 1);
			return -EINVAL;
		}
		strcpy(field, value);
		return 0;
	case OPT_PEER:
		return node_options_parse_peer(opt, value, why, why_size);
	case OPT_MEMBERS:
		return node_options_parse_members(opt, value, why, why_size);
	case OPT_CONFIG:
		return node_options_read_file(opt, value, depth + 1);
	case OPT_LOG_LEVEL:
	case OPT_LOG_FORMAT: {
		int parsed =
		    o->kind == OPT_LOG_LEVEL ? log_level_parse(value) : log_format_parse(value);

		if (parsed < 0) {
			snprintf(why, why_size, "must be %s",
				 o->kind == OPT_LOG_LEVEL ? "error, warn, info or debug"
							  : "text, logfmt or json");
			return -EINVAL;
		}
		*(uint8_t *)field = (uint8_t)parsed;
		return 0;
	}
	}
	return -EINVAL;
}

static int node_options_set(struct node_options *opt, const char *name, const char *value,
			    int depth)
{
	for (size_t i = 0; i < sizeof(node_options_table) / sizeof(node_options_table[0]); i++) {
		const struct node_options_entry *o = &node_options_table[i];
		char why[256] = "";
		int rv;

		if (strcmp(o->name, name) != 0)
			continue;
		rv = node_options_set_one(opt, o, value, depth, why, sizeof(why));
		if (rv != 0 && why[0] != '\0')
			fprintf(stderr, "flotilla-node: --%s %s: %s\n", name, value, why);
		return rv;
	}
	fprintf(stderr, "flotilla-node: unknown option '%s'\n", name);
	return -EINVAL;
}

static char *node_options_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

/* Lines "name = value"; blank lines and lines starting with # are skipped. */
static int node_options_read_file(struct node_options *opt, const char *path, int depth)
{
	char line[1024];
	unsigned line_no = 0;
	FILE *f;
	int rv = 0;

	if (depth > 4) {
		fprintf(stderr, "flotilla-node: %s: config files nest too deep\n", path);
		return -EINVAL;
	}
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "flotilla-node: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	while (rv == 0 && fgets(line, sizeof(line), f) != NULL) {
		char *s = node_options_trim(line);
		char *eq;

		line_no++;
		if (*s == '\0' || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL) {
			fprintf(stderr, "flotilla-node: %s:%u: expected name=value\n", path,
				line_no);
			rv = -EINVAL;
			break;
		}
		*eq = '\0';
		rv = node_options_set(opt, node_options_trim(s), node_options_trim(eq + 1), depth);
		if (rv != 0)
			fprintf(stderr, "flotilla-node: at %s:%u\n", path, line_no);
	}
	fclose(f);
	return rv;
}

int node_options_parse(struct node_options *opt, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char name[64];
		const char *arg = argv[i], *value, *eq;
		size_t len;

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			node_options_usage(stdout);
			exit(0);
		}
		if (strncmp(arg, "--", 2) != 0) {
			fprintf(stderr, "flotilla-node: unexpected argument '%s'\n", arg);
			return -EINVAL;
		}
		arg += 2;
		eq = strchr(arg, '=');
		len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
		if (len >= sizeof(name)) {
			fprintf(stderr, "flotilla-node: unknown option '%s'\n", argv[i]);
			return -EINVAL;
		}
		memcpy(name, arg, len);
		name[len] = '\0';
		if (eq != NULL) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			fprintf(stderr, "flotilla-node: --%s needs a value\n", name);
			return -EINVAL;
		}
		if (node_options_set(opt, name, value, 0) != 0)
			return -EINVAL;
	}
	return 0;
}

/* Each address resolves now (a typo is refused here, not found in the
 * first failed dial); --listen and --client may take port 0. */
static int node_options_check_addrs(const struct node_options *opt)
{
	struct sockaddr_storage addr;
	socklen_t len;
	char why[384];

	if (config_addr_resolve(opt->listen_addr, true, &addr, &len, why, sizeof(why)) != 0) {
		fprintf(stderr, "flotilla-node: --listen %s: %s\n", opt->listen_addr, why);
		return -EINVAL;
	}
	if (config_addr_resolve(opt->client_addr, true, &addr, &len, why, sizeof(why)) != 0) {
		fprintf(stderr, "flotilla-node: --client %s: %s\n", opt->client_addr, why);
		return -EINVAL;
	}
	if (opt->metrics_addr[0] != '\0' &&
	    config_addr_resolve(opt->metrics_addr, true, &addr, &len, why, sizeof(why)) != 0) {
		fprintf(stderr, "flotilla-node: --metrics %s: %s\n", opt->metrics_addr, why);
		return -EINVAL;
	}
	/* Port 0 picks a free port for each; any other cannot serve both. */
	if (strcmp(opt->listen_addr, opt->client_addr) == 0 &&
	    strcmp(strrchr(opt->listen_addr, ':'), ":0") != 0) {
		fprintf(stderr,
			"flotilla-node: --listen %s and --client %s: the peer and the client "
			"listeners need different addresses\n",
			opt->listen_addr, opt->client_addr);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < opt->peers_count; i++) {
		if (config_addr_resolve(opt->peer_addrs[i], false, &addr, &len, why, sizeof(why)) !=
		    0) {
			fprintf(stderr, "flotilla-node: --peer %llu=%s: %s\n",
				(unsigned long long)opt->peer_ids[i], opt->peer_addrs[i], why);
			return -EINVAL;
		}
	}
	return 0;
}

static bool node_options_is_peer(const struct node_options *opt, uint64_t id)
{
	for (uint32_t i = 0; i < opt->peers_count; i++)
		if (opt->peer_ids[i] == id)
			return true;
	return false;
}

/* The voters: this node and its peers by default; each one named must be
 * this node or a --peer, or no group could ever reach it. */
static int node_options_check_members(struct node_options *opt)
{
	bool self_member = false;

	if (opt->members_count == 0) {
		if (opt->peers_count + 1 > FL_MEMBERS_MAX) {
			fprintf(stderr,
				"flotilla-node: %u --peer flags and this node make more than %d "
				"voters: give --members\n",
				opt->peers_count, FL_MEMBERS_MAX);
			return -EINVAL;
		}
		opt->members[opt->members_count++] = opt->id;
		for (uint32_t i = 0; i < opt->peers_count; i++)
			opt->members[opt->members_count++] = opt->peer_ids[i];
	}
	for (uint32_t i = 0; i < opt->members_count; i++) {
		uint64_t m = opt->members[i];

		self_member |= m == opt->id;
		if (m != opt->id && !node_options_is_peer(opt, m)) {
			fprintf(stderr,
				"flotilla-node: --members names node %llu, which is neither this "
				"node (--id %llu) nor a --peer: add --peer %llu=HOST:PORT or drop "
				"it from --members\n",
				(unsigned long long)m, (unsigned long long)opt->id,
				(unsigned long long)m);
			return -EINVAL;
		}
	}
	if (opt->groups_count > 0 && !self_member) {
		fprintf(stderr,
			"flotilla-node: --members must include this node (--id %llu) to create "
			"--groups %u\n",
			(unsigned long long)opt->id, opt->groups_count);
		return -EINVAL;
	}
	return 0;
}

static int node_options_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Read the shared peer key: a file of hex digits (whitespace at its end is
 * ignored), NODE_AUTH_KEY_SIZE_MIN to _MAX bytes, that only its owner may
 * read (it is the cluster's secret). Says which rule failed. */
static int node_options_read_key(struct node_options *opt)
{
	char text[2 * NODE_AUTH_KEY_SIZE_MAX + 64];
	const char *path = opt->auth_key_file;
	struct stat st;
	ssize_t n;
	size_t len;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "flotilla-node: --auth-key-file %s: cannot read it: %s\n", path,
			strerror(errno));
		return -EINVAL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
		fprintf(stderr,
			"flotilla-node: --auth-key-file %s: must be a regular file that only its "
			"owner can read (chmod 600 %s); it is mode %04o\n",
			path, path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -EINVAL;
	}
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	len = n > 0 ? (size_t)n : 0;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
			   text[len - 1] == '\t'))
		len--;
	opt->auth_key_size = 0;
	for (size_t i = 0; i < len; i += 2) {
		int hi = node_options_hex(text[i]);
		int lo = i + 1 < len ? node_options_hex(text[i + 1]) : -1;

		if (hi < 0 || lo < 0 || opt->auth_key_size == NODE_AUTH_KEY_SIZE_MAX) {
			opt->auth_key_size = 0;
			break;
		}
		opt->auth_key[opt->auth_key_size++] = (uint8_t)(hi << 4 | lo);
	}
	if (n < 0 || opt->auth_key_size < NODE_AUTH_KEY_SIZE_MIN) {
		fprintf(stderr,
			"flotilla-node: --auth-key-file %s: must hold %d to %d hex digits (%d to "
			"%d random bytes; e.g. `openssl rand -hex 32`), and nothing else but "
			"whitespace at its end\n",
			path, 2 * NODE_AUTH_KEY_SIZE_MIN, 2 * NODE_AUTH_KEY_SIZE_MAX,
			NODE_AUTH_KEY_SIZE_MIN, NODE_AUTH_KEY_SIZE_MAX);
		memset(text, 0, sizeof(text));
		opt->auth_key_size = 0;
		return -EINVAL;
	}
	memset(text, 0, sizeof(text));
	return 0;
}

int node_options_check(struct node_options *opt)
{
	static const struct config_timer_names names = {
	    .tick = "--tick-ms", .heartbeat = "--heartbeat-ms", .election = "--election-ms"};
	char why[384];

	if (opt->id == 0 || opt->data_dir[0] == '\0') {
		fprintf(stderr, "flotilla-node: --id and --data are required\n");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < opt->peers_count; i++) {
		if (opt->peer_ids[i] == opt->id) {
			fprintf(stderr,
				"flotilla-node: --peer %llu=%s: node %llu is this node (--id)\n",
				(unsigned long long)opt->id, opt->peer_addrs[i],
				(unsigned long long)opt->id);
			return -EINVAL;
		}
	}
	if (config_check_timers(opt->tick_ms, opt->heartbeat_ms, opt->election_ms, &names, why,
				sizeof(why)) != 0) {
		fprintf(stderr, "flotilla-node: %s\n", why);
		return -EINVAL;
	}
	if (opt->join && opt->groups_count > 0) {
		fprintf(stderr,
			"flotilla-node: --join on and --groups %u conflict: a joining node creates "
			"no group (it receives each by JOIN), --groups %u would create groups "
			"1..%u here; drop --groups or set --join off\n",
			opt->groups_count, opt->groups_count, opt->groups_count);
		return -EINVAL;
	}
	if (opt->groups_count > opt->groups_max) {
		fprintf(stderr,
			"flotilla-node: --groups %u exceeds --groups-max %u: the node would be "
			"refused groups it creates itself; raise --groups-max\n",
			opt->groups_count, opt->groups_max);
		return -EINVAL;
	}
	if (node_options_check_members(opt) != 0 || node_options_check_addrs(opt) != 0)
		return -EINVAL;
	if (node_store_find(opt->store) == NULL) {
		fprintf(stderr, "flotilla-node: --store %s: no store of that name (see --help)\n",
			opt->store);
		return -EINVAL;
	}
	if (opt->auth_key_file[0] != '\0' && node_options_read_key(opt) != 0)
		return -EINVAL;
	if ((opt->tls_ca_file[0] != '\0') != (opt->tls_cert_file[0] != '\0') ||
	    (opt->tls_ca_file[0] != '\0') != (opt->tls_key_file[0] != '\0')) {
		fprintf(stderr, "flotilla-node: --tls-ca, --tls-cert and --tls-key go together: "
				"all three for TLS, or none for plaintext\n");
		return -EINVAL;
	}
	return 0;
}

void node_options_default(struct node_options *opt)
{
	struct fl_node_config config;

	fl_node_config_default(&config, 1);
	memset(opt, 0, sizeof(*opt));
	opt->cluster_id = 1;
	strcpy(opt->listen_addr, "127.0.0.1:0");
	strcpy(opt->client_addr, "127.0.0.1:0");
	strcpy(opt->store, "memory");
	opt->shards_count = config.shards_count;
	opt->election_ms = config.election_timeout_ms;
	opt->heartbeat_ms = config.heartbeat_interval_ms;
	opt->tick_ms = config.tick_ms;
	opt->entry_size_max = config.entry_size_max;
	opt->inbox_max = config.inbox_max;
	opt->snapshot_entries = config.snapshot_entries;
	opt->check_entries = config.check_entries;
	opt->groups_max = config.groups_max;
	opt->snapshot_bytes = (uint32_t)config.snapshot_bytes;
	opt->snapshot_ratio_percent = config.snapshot_ratio_percent;
	opt->snapshot_compress = config.snapshot_compress;
	opt->snapshot_freeze = true;
	opt->quiesce = config.quiesce;
	opt->lease_read = config.lease_read;
	opt->client_threads = 2;
	opt->conns_max = 1024;
	opt->conns_per_source_max = 256;
	opt->inflight_max = 1024;
	opt->client_idle_s = 300;
	opt->client_request_ms = 10000;
	opt->client_handshake_ms = 2000;
	opt->client_buffer_budget_mb = 256;
	opt->leader_poll_ms = 200;
	opt->log_level = config.log_level;
	opt->log_format = config.log_format;
}
