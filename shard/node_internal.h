/* What shard/node.c and shard/node_peers.c share: struct fl_node. Nothing
 * outside these two files includes it. */
#ifndef SHARD_NODE_INTERNAL_H
#define SHARD_NODE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "base/log.h"
#include "flotilla.h"
#include "shard/book.h"
#include "shard/datadir.h"
#include "shard/net.h"
#include "shard/shard.h"

struct fl_node {
	struct fl_node_config config;
	struct shard **shards;
	uint32_t shards_count;
	struct node_net *net;
	struct snapshot_worker *snapshots; /* With sm.freeze: writes the frozen views. */
	uint64_t *peer_ids;                /* At start: FL_PEERS_MAX. */
	struct node_net_peer *net_peers;   /* At start: FL_PEERS_MAX. */
	struct datadir datadir;            /* Locked from start to stop. */
	_Atomic uint64_t groups_hosted;    /* Over every shard: group_reserve() in group.c. */
	/* The address book (shard/book.h): changed by fl_node_set_peer() and
	 * fl_node_remove_peer() under book_lock, which is held until every
	 * shard took the change, so shards see the changes in order. */
	pthread_mutex_t book_lock;
	struct book *book;
	struct tls *tls; /* Mutual TLS between nodes (shard/tls.c); NULL: off. */
};

/* Submit req to shard and wait for its callback (req->cb and req->arg are
 * set here). A full inbox is retried for up to a second. Returns the
 * callback's rv (and *result), or the submission's error. */
int node_shard_call(struct fl_node *node, uint32_t shard, struct shard_req *req, uint64_t *result);

/* The node's logger (the sink fl_node_config chose). */
struct logger node_logger_of(const struct fl_node *node);

/* node_peers.c: load the address book from the data directory, merge the
 * configuration's peers, write it back; fill node->peer_ids and
 * node->net_peers with the peers in force. Returns their count (>= 0), or
 * an error with why set. */
int node_book_open(struct fl_node *node, char *why, size_t why_size);

#endif /* SHARD_NODE_INTERNAL_H */
