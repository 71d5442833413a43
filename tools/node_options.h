/* flotilla-node's options: every flag, the --config file that sets the same
 * names, their defaults and their checks. */
#ifndef TOOLS_NODE_OPTIONS_H
#define TOOLS_NODE_OPTIONS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "flotilla.h"

#define NODE_PEERS_MAX           64
#define NODE_ADDR_SIZE_MAX       64
#define NODE_STORE_NAME_SIZE_MAX 16
#define NODE_AUTH_KEY_SIZE_MIN   32 /* Bytes of a --auth-key-file key (64 hex digits). */
#define NODE_AUTH_KEY_SIZE_MAX   128

struct node_options {
	uint64_t id;
	uint64_t cluster_id;
	char data_dir[PATH_MAX];
	char listen_addr[NODE_ADDR_SIZE_MAX];
	char client_addr[NODE_ADDR_SIZE_MAX];
	char metrics_addr[NODE_ADDR_SIZE_MAX]; /* GET /metrics over HTTP; "": off. */
	char store[NODE_STORE_NAME_SIZE_MAX];  /* A name node_store_find() knows. */
	uint64_t peer_ids[NODE_PEERS_MAX];
	char peer_addrs[NODE_PEERS_MAX][NODE_ADDR_SIZE_MAX];
	uint32_t peers_count;
	uint64_t members[FL_MEMBERS_MAX];
	uint32_t members_count;
	uint32_t shards_count;
	uint32_t groups_count;
	uint32_t groups_max; /* The most groups hosted (fl_node_config.groups_max). */
	uint32_t election_ms;
	uint32_t heartbeat_ms;
	uint32_t tick_ms;
	uint32_t entry_size_max;
	uint32_t inbox_max;
	uint32_t wal_segment_size;
	uint32_t snapshot_entries;
	uint32_t check_entries;
	bool allow_corrupt; /* Accept CORRUPT requests (test builds only). */
	uint32_t snapshot_bytes;
	uint32_t snapshot_ratio_percent;
	bool snapshot_compress;
	bool snapshot_freeze;
	bool quiesce;
	bool lease_read;
	bool join;
	uint32_t client_threads;
	uint32_t conns_max;
	uint32_t conns_per_source_max; /* Client connections from one address. */
	uint32_t inflight_max;
	uint32_t client_idle_s;       /* Close a connection without a request this long; 0: off. */
	uint32_t client_request_ms;   /* A started request completes within this; 0: off. */
	uint32_t client_handshake_ms; /* A client's TLS handshake completes within this. */
	uint32_t client_buffer_budget_mb; /* Client input and output buffers, node-wide. */
	uint32_t leader_poll_ms;
	uint8_t log_level;                        /* enum fl_log_level. */
	uint8_t log_format;                       /* enum fl_log_format. */
	char auth_key_file[PATH_MAX];             /* Empty: no shared key. */
	uint8_t auth_key[NODE_AUTH_KEY_SIZE_MAX]; /* Read by node_options_check(). */
	uint32_t auth_key_size;                   /* 0: none. */
	char tls_ca_file[PATH_MAX];               /* The three, or none (empty): plaintext. */
	char tls_cert_file[PATH_MAX];
	char tls_key_file[PATH_MAX];
};

/* The defaults: the library's, then the program's own. */
void node_options_default(struct node_options *opt);

/* Apply the flags of argv in order (--name VALUE or --name=VALUE; --config
 * FILE reads name=value lines). --help prints the usage and exits 0.
 * Returns 0 or -EINVAL after saying why on stderr. */
int node_options_parse(struct node_options *opt, int argc, char **argv);

/* Check what no single flag can: required flags, peers against members, the
 * store's name; fills in the default voters and reads the --auth-key-file.
 * Returns 0 or -EINVAL. */
int node_options_check(struct node_options *opt);

void node_options_usage(FILE *out);

#endif /* TOOLS_NODE_OPTIONS_H */
