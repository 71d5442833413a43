/* flotilla-load's flags (getopt_long), the node list (--node or
 * --cluster-dir) and their checks. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/load_internal.h"

/* --- Options. --- */

static void load_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: flotilla-load (--node ID=HOST:PORT ... | --cluster-dir DIR) [options]\n"
	    "       flotilla-load --check-file FILE [--check-initial absent|any]\n"
	    "  --node ID=HOST:PORT   a node's client address (repeat for each node)\n"
	    "  --cluster-dir DIR     the nodes of a local cluster made by tools/cluster (a TLS\n"
	    "                        cluster: with its admin certificate, DIR/tls)\n"
	    "  --mode closed|open    closed: N requests in flight; open: a fixed rate (closed)\n"
	    "  --concurrency N       closed loop: requests in flight (64)\n"
	    "  --rate OPS            open loop: requests per second (required with --mode open)\n"
	    "  --inflight-max N      open loop: requests in flight at most (10000)\n"
	    "  --duration S          measured seconds (10)\n"
	    "  --warmup S            seconds before measuring (1)\n"
	    "  --groups N            use groups 1..N (from the cluster directory, else 1)\n"
	    "  --keys N              distinct keys, spread over the groups (100000)\n"
	    "  --dist D              uniform | zipf | zipf:THETA, THETA in 0.01..0.9999 (uniform;\n"
	    "                        zipf alone means 0.99)\n"
	    "  --read-ratio R        share of GETs, 0..1; the rest are PUTs (0.5)\n"
	    "  --value-size BYTES    PUT value size (100)\n"
	    "  --timeout-ms MS       a request unanswered this long is a timeout (2000)\n"
	    "  --redirects-max N     NOT_LEADER redirects before a request fails (10)\n"
	    "  --threads N           load threads (2)\n"
	    "  --leader-wait-ms MS   at most this long to learn the leaders first (10000)\n"
	    "  --seed N              random seed (1)\n"
	    "  --json FILE           write the results as JSON ('-': stdout; then the\n"
	    "                        progress lines and report go to stderr)\n"
	    "  --plot FILE.png       draw throughput over time and the latency\n"
	    "                        distribution (needs gnuplot)\n"
	    "  --check               record every request and check that the history is\n"
	    "                        linearizable, a register per key (values of 16 bytes\n"
	    "                        at least); exit 3 on a violation\n"
	    "  --check-initial I     absent: keys start absent (a fresh cluster; the default);\n"
	    "                        any: they may hold values written before this run\n"
	    "  --check-history FILE  with --check: save the history, one operation a line\n"
	    "  --check-file FILE     check a saved history instead of running load\n"
	    "  --tls-ca FILE         TLS 1.3: the cluster CA (else FLOTILLA_TLS_CA; neither:\n"
	    "                        plaintext)\n"
	    "  --tls-cert FILE       this client's certificate, OU data or admin (else\n"
	    "                        FLOTILLA_TLS_CERT)\n"
	    "  --tls-key FILE        its key (else FLOTILLA_TLS_KEY)\n");
}

static bool load_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return false;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool load_parse_double(const char *text, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !(v >= min && v <= max))
		return false;
	*out = v;
	return true;
}

static bool load_add_node(struct load_options *opt, uint64_t id, const char *addr)
{
	struct sockaddr_in sin;

	if (opt->nodes_count == LOAD_NODES_MAX || strlen(addr) >= CLIENT_ADDR_SIZE_MAX ||
	    client_parse_addr(addr, &sin) != 0)
		return false;
	for (uint32_t i = 0; i < opt->nodes_count; i++)
		if (opt->nodes[i].id == id)
			return false;
	opt->nodes[opt->nodes_count].id = id;
	strcpy(opt->nodes[opt->nodes_count].addr, addr);
	opt->nodes_count++;
	return true;
}

/* "ID=HOST:PORT" */
static bool load_parse_node(struct load_options *opt, const char *text)
{
	const char *eq = strchr(text, '=');
	char id_text[24];
	uint64_t id;

	if (eq == NULL || (size_t)(eq - text) >= sizeof(id_text))
		return false;
	memcpy(id_text, text, (size_t)(eq - text));
	id_text[eq - text] = '\0';
	return load_parse_u64(id_text, 1, UINT64_MAX, &id) && load_add_node(opt, id, eq + 1);
}

/* The admin certificate of a TLS cluster made by tools/cluster. */
static char load_cluster_tls[3][PATH_MAX];

/* Read DIR/cluster.conf, written by tools/cluster: node i (1..nodes) serves
 * clients on 127.0.0.1 at base_port + 2(i - 1) + 1. Sets *groups to the
 * cluster's group count (0 when not saved). A TLS cluster (tls=1, the
 * default of tools/cluster) is spoken to with its admin certificate
 * (DIR/tls), unless the --tls-* flags or FLOTILLA_TLS_* say otherwise. */
static bool load_read_cluster_dir(struct load_options *opt, const char *dir, uint64_t *groups)
{
	char path[PATH_MAX], line[256];
	uint64_t nodes = 0, base_port = 0;
	bool tls = false;
	FILE *f;

	*groups = 0;
	if (snprintf(path, sizeof(path), "%s/cluster.conf", dir) >= (int)sizeof(path))
		return false;
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "flotilla-load: cannot read %s: %s\n", path, strerror(errno));
		return false;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "nodes=", 6) == 0)
			(void)load_parse_u64(line + 6, 1, LOAD_NODES_MAX, &nodes);
		else if (strncmp(line, "base_port=", 10) == 0)
			(void)load_parse_u64(line + 10, 1, 65535, &base_port);
		else if (strncmp(line, "groups=", 7) == 0)
			(void)load_parse_u64(line + 7, 0, LOAD_GROUPS_MAX, groups);
		else if (strncmp(line, "tls=", 4) == 0)
			tls = strcmp(line + 4, "1") == 0;
	}
	fclose(f);
	if (tls && opt->tls_ca == NULL && getenv("FLOTILLA_TLS_CA") == NULL) {
		static const char *const names[3] = {"ca.pem", "admin.pem", "admin.key"};

		for (int i = 0; i < 3; i++)
			if (snprintf(load_cluster_tls[i], PATH_MAX, "%s/tls/%s", dir, names[i]) >=
			    PATH_MAX)
				return false;
		opt->tls_ca = load_cluster_tls[0];
		if (opt->tls_cert == NULL && getenv("FLOTILLA_TLS_CERT") == NULL) {
			opt->tls_cert = load_cluster_tls[1];
			opt->tls_key = load_cluster_tls[2];
		}
	}
	if (nodes == 0 || base_port == 0 || base_port + 2 * nodes > 65535) {
		fprintf(stderr, "flotilla-load: %s lacks nodes= or base_port=\n", path);
		return false;
	}
	for (uint64_t i = 1; i <= nodes; i++) {
		char addr[CLIENT_ADDR_SIZE_MAX];

		snprintf(addr, sizeof(addr), "127.0.0.1:%llu",
			 (unsigned long long)(base_port + 2 * (i - 1) + 1));
		if (!load_add_node(opt, i, addr))
			return false;
	}
	return true;
}

static bool load_parse_dist(struct load_options *opt, const char *text)
{
	if (strcmp(text, "uniform") == 0) {
		opt->zipf_theta = 0;
		return true;
	}
	if (strcmp(text, "zipf") == 0) {
		opt->zipf_theta = 0.99;
		return true;
	}
	return strncmp(text, "zipf:", 5) == 0 &&
	       load_parse_double(text + 5, LOAD_ZIPF_THETA_MIN, LOAD_ZIPF_THETA_MAX,
				 &opt->zipf_theta);
}

enum {
	OPT_NODE = 256,
	OPT_CLUSTER_DIR,
	OPT_MODE,
	OPT_CONCURRENCY,
	OPT_RATE,
	OPT_INFLIGHT_MAX,
	OPT_DURATION,
	OPT_WARMUP,
	OPT_GROUPS,
	OPT_KEYS,
	OPT_DIST,
	OPT_READ_RATIO,
	OPT_VALUE_SIZE,
	OPT_TIMEOUT_MS,
	OPT_REDIRECTS_MAX,
	OPT_THREADS,
	OPT_LEADER_WAIT_MS,
	OPT_SEED,
	OPT_JSON,
	OPT_PLOT,
	OPT_CHECK,
	OPT_CHECK_INITIAL,
	OPT_CHECK_HISTORY,
	OPT_CHECK_FILE,
	OPT_TLS_CA,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_HELP,
};

/* In the order of the OPT_ codes: error messages index it by code. */
static const struct option load_long_options[] = {
    {"node", required_argument, NULL, OPT_NODE},
    {"cluster-dir", required_argument, NULL, OPT_CLUSTER_DIR},
    {"mode", required_argument, NULL, OPT_MODE},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"rate", required_argument, NULL, OPT_RATE},
    {"inflight-max", required_argument, NULL, OPT_INFLIGHT_MAX},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"groups", required_argument, NULL, OPT_GROUPS},
    {"keys", required_argument, NULL, OPT_KEYS},
    {"dist", required_argument, NULL, OPT_DIST},
    {"read-ratio", required_argument, NULL, OPT_READ_RATIO},
    {"value-size", required_argument, NULL, OPT_VALUE_SIZE},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS},
    {"redirects-max", required_argument, NULL, OPT_REDIRECTS_MAX},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"leader-wait-ms", required_argument, NULL, OPT_LEADER_WAIT_MS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", required_argument, NULL, OPT_JSON},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"check", no_argument, NULL, OPT_CHECK},
    {"check-initial", required_argument, NULL, OPT_CHECK_INITIAL},
    {"check-history", required_argument, NULL, OPT_CHECK_HISTORY},
    {"check-file", required_argument, NULL, OPT_CHECK_FILE},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static_assert(sizeof(load_long_options) / sizeof(load_long_options[0]) == OPT_HELP - OPT_NODE + 2,
	      "one entry per OPT_ code, and the terminator");

/* One option's value into opt. Returns false when it is invalid. */
static bool load_parse_option(struct load_options *opt, int code, const char *arg,
			      uint64_t *cluster_groups)
{
	uint64_t v;

	switch (code) {
	case OPT_NODE:
		return load_parse_node(opt, arg);
	case OPT_CLUSTER_DIR:
		return load_read_cluster_dir(opt, arg, cluster_groups);
	case OPT_MODE:
		opt->open_loop = strcmp(arg, "open") == 0;
		return opt->open_loop || strcmp(arg, "closed") == 0;
	case OPT_CONCURRENCY:
	case OPT_INFLIGHT_MAX:
		if (!load_parse_u64(arg, 1, (uint64_t)LOAD_SLOTS_MAX * LOAD_THREADS_MAX, &v))
			return false;
		*(code == OPT_CONCURRENCY ? &opt->concurrency : &opt->inflight_max) = (uint32_t)v;
		return true;
	case OPT_RATE:
		return load_parse_double(arg, 1, 1e8, &opt->rate);
	case OPT_DURATION:
		return load_parse_double(arg, 0.1, 86400, &opt->duration_s);
	case OPT_WARMUP:
		return load_parse_double(arg, 0, 3600, &opt->warmup_s);
	case OPT_GROUPS:
		return load_parse_u64(arg, 1, LOAD_GROUPS_MAX, &opt->groups);
	case OPT_KEYS:
		return load_parse_u64(arg, 1, UINT64_C(1) << 60, &opt->keys);
	case OPT_DIST:
		return load_parse_dist(opt, arg);
	case OPT_READ_RATIO:
		return load_parse_double(arg, 0, 1, &opt->read_ratio);
	case OPT_VALUE_SIZE:
		if (!load_parse_u64(arg, 0, LOAD_VALUE_SIZE_MAX, &v))
			return false;
		opt->value_size = (uint32_t)v;
		return true;
	case OPT_TIMEOUT_MS:
	case OPT_LEADER_WAIT_MS:
		if (!load_parse_u64(arg, code == OPT_TIMEOUT_MS ? 1 : 0, 600000, &v))
			return false;
		*(code == OPT_TIMEOUT_MS ? &opt->timeout_ms : &opt->leader_wait_ms) = (uint32_t)v;
		return true;
	case OPT_REDIRECTS_MAX:
		if (!load_parse_u64(arg, 0, 1000, &v))
			return false;
		opt->redirects_max = (uint32_t)v;
		return true;
	case OPT_THREADS:
		if (!load_parse_u64(arg, 1, LOAD_THREADS_MAX, &v))
			return false;
		opt->threads = (uint32_t)v;
		return true;
	case OPT_SEED:
		return load_parse_u64(arg, 0, UINT64_MAX, &opt->seed);
	case OPT_JSON:
		opt->json_path = arg;
		return true;
	case OPT_PLOT:
		opt->plot_path = arg;
		return true;
	case OPT_CHECK:
		opt->check = true;
		return true;
	case OPT_CHECK_INITIAL:
		opt->check_initial_unknown = strcmp(arg, "any") == 0;
		return opt->check_initial_unknown || strcmp(arg, "absent") == 0;
	case OPT_CHECK_HISTORY:
		opt->check_history_path = arg;
		return true;
	case OPT_CHECK_FILE:
		opt->check_file_path = arg;
		return true;
	case OPT_TLS_CA:
	case OPT_TLS_CERT:
	case OPT_TLS_KEY:
		*(code == OPT_TLS_CA     ? &opt->tls_ca
		  : code == OPT_TLS_CERT ? &opt->tls_cert
					 : &opt->tls_key) = arg;
		return true;
	default:
		return false;
	}
}

/* Returns 0, or EXIT_USAGE after saying why. */
int load_parse_options(struct load_options *opt, int argc, char **argv)
{
	uint64_t cluster_groups = 0;
	char why[512];
	int code;

	*opt = (struct load_options){
	    .concurrency = 64,
	    .inflight_max = 10000,
	    .duration_s = 10,
	    .warmup_s = 1,
	    .keys = 100000,
	    .read_ratio = 0.5,
	    .value_size = 100,
	    .timeout_ms = 2000,
	    .redirects_max = 10,
	    .threads = 2,
	    .leader_wait_ms = 10000,
	    .seed = 1,
	};
	while ((code = getopt_long(argc, argv, "h", load_long_options, NULL)) != -1) {
		if (code == OPT_HELP || code == 'h') {
			load_usage(stdout);
			exit(0);
		}
		if (code == '?' || !load_parse_option(opt, code, optarg, &cluster_groups)) {
			if (code != '?')
				fprintf(stderr, "flotilla-load: bad value '%s' for --%s\n", optarg,
					load_long_options[code - OPT_NODE].name);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "flotilla-load: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (opt->check_file_path != NULL)
		return 0;
	if (client_tls_setup(opt->tls_ca, opt->tls_cert, opt->tls_key, why, sizeof(why)) != 0) {
		fprintf(stderr, "flotilla-load: %s\n", why);
		return EXIT_USAGE;
	}
	if (opt->check_history_path != NULL && !opt->check) {
		fprintf(stderr, "flotilla-load: --check-history needs --check\n");
		return EXIT_USAGE;
	}
	if (opt->check && opt->value_size < LOAD_CHECK_VALUE_SIZE) {
		fprintf(stderr, "flotilla-load: --check needs --value-size %u at least\n",
			LOAD_CHECK_VALUE_SIZE);
		return EXIT_USAGE;
	}
	if (opt->nodes_count == 0) {
		fprintf(stderr, "flotilla-load: give --node ID=HOST:PORT or --cluster-dir DIR\n");
		return EXIT_USAGE;
	}
	if (opt->open_loop && opt->rate == 0) {
		fprintf(stderr, "flotilla-load: --mode open needs --rate\n");
		return EXIT_USAGE;
	}
	if (opt->groups == 0)
		opt->groups = cluster_groups != 0 ? cluster_groups : 1;
	return 0;
}
