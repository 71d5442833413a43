/* The net thread of a node: accepts peer connections (checking their
 * handshake) and hands them to the shard they name; dials peers on behalf
 * of shards, which ask through their shard_config.dial callback, and hands
 * the connected socket (or the failure) to the shard's inbox. The net
 * thread calls the shards (shard_submit); a shard never calls it. */
#ifndef SHARD_NET_H
#define SHARD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"

struct node_net;
struct shard;

struct node_net_peer {
	uint64_t id;
	char addr[256];
};

struct node_net_config {
	bool auth;
	uint8_t auth_key[32]; /* crypto_auth_KEYBYTES, derived from the configured secret. */
	uint64_t node_id;
	struct logger log; /* The node's. */
	uint64_t cluster_id;
	uint64_t incarnation; /* The data directory's: sent in every handshake. */
	uint32_t shards_count;
	const char *listen_addr;
	const struct node_net_peer *peers;
	uint32_t peers_count;
};

int node_net_start(struct node_net **net, const struct node_net_config *config,
		   struct shard **shards, char *why, size_t why_size);
void node_net_stop(struct node_net *net);
/* Every shard of the array passed to node_net_start() is running now. */
void node_net_ready(struct node_net *net);
uint16_t node_net_port(const struct node_net *net);
/* Ask for a connection from shard shard_index to peer; the result arrives in
 * that shard's inbox as SHARD_REQ_CONN or SHARD_REQ_DIAL_FAILED. */
void node_net_dial(struct node_net *net, uint32_t shard_index, uint64_t peer);

#endif /* SHARD_NET_H */
