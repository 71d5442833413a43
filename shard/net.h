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
#include "flotilla.h"

struct node_net;
struct shard;
struct tls;

struct node_net_peer {
	uint64_t id;
	char addr[FL_ADDR_SIZE_MAX];
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
	const char *client_addr; /* Sent to the peers we dial (an address note); NULL: none. */
	const struct node_net_peer *peers; /* At start; copied. */
	uint32_t peers_count;              /* At most FL_PEERS_MAX. */
	/* Mutual TLS for every peer connection (shard/tls.c); NULL: plaintext.
	 * Borrowed until node_net_stop(); auth is false when it is set. */
	struct tls *tls;
	uint32_t handshake_timeout_ms; /* A connection's whole set-up; 0: 2000. */
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

/* The address book at run time (any thread): add peer id or change its
 * address (dials from then on go there; its identity is learned anew), or
 * forget it (its connections are refused from then on). Connections already
 * made are the shards' to close. set returns 0 or -ENOSPC (FL_PEERS_MAX
 * known already). */
int node_net_set_peer(struct node_net *net, uint64_t id, const char *addr);
void node_net_remove_peer(struct node_net *net, uint64_t id);
/* Copy the client address peer id told us when it dialled ("" if none yet)
 * into client_addr. Returns false when id is not in the book. */
bool node_net_peer_client_addr(struct node_net *net, uint64_t id, char *client_addr, size_t size);

#endif /* SHARD_NET_H */
