/* The node's address book at run time: fl_node_set_peer(),
 * fl_node_remove_peer(), fl_node_peers(), and its opening at start.
 *
 * A change is made under the node's book_lock, in this order: the new book
 * is written to the data directory (nothing changes if that fails), then
 * the net threads' table is changed (dials go to the new address, accepted
 * connections are checked against the new book), then every shard gets the
 * whole book through its inbox (SHARD_REQ_PEERS) and reconciles its peer
 * connections with it; the call returns once every shard has. Holding the
 * lock until then keeps the shards' view in the order of the changes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/log.h"
#include "shard/config.h"
#include "shard/node_internal.h"

int node_book_open(struct fl_node *node, char *why, size_t why_size)
{
	const struct fl_node_config *c = &node->config;
	uint32_t n = 0;
	int rv = book_load(node->book, c->data_dir, why, why_size);

	if (rv != 0)
		return rv;
	rv = book_merge(node->book, c->peers, c->peers_count);
	if (rv != 0) {
		snprintf(why, why_size,
			 "the address book (%s/%s) and the configured peers make more than %d "
			 "peers",
			 c->data_dir, BOOK_FILE, FL_PEERS_MAX);
		return rv;
	}
	rv = book_save(node->book, c->data_dir);
	if (rv != 0) {
		snprintf(why, why_size, "cannot write %s/%s: %s", c->data_dir, BOOK_FILE,
			 strerror(-rv));
		return rv;
	}
	for (uint32_t i = 0; i < node->book->count; i++) {
		const struct book_entry *e = &node->book->entries[i];

		if (e->addr[0] == '\0' || e->id == c->node_id)
			continue;
		node->peer_ids[n] = e->id;
		node->net_peers[n].id = e->id;
		snprintf(node->net_peers[n].addr, sizeof(node->net_peers[n].addr), "%s", e->addr);
		n++;
	}
	return (int)n;
}

/* Hand the book in force to every shard and wait for each. Under book_lock. */
static int node_book_push(struct fl_node *node)
{
	int rv = 0;

	for (uint32_t i = 0; i < node->shards_count; i++) {
		size_t size = FL_PEERS_MAX * sizeof(struct shard_book_entry);
		struct shard_req *req = calloc(1, sizeof(*req) + size);
		struct shard_book_entry *entries;
		uint32_t n = 0;
		int one;

		if (req == NULL)
			return -ENOMEM;
		req->type = SHARD_REQ_PEERS;
		req->fd = -1;
		entries = (struct shard_book_entry *)req->data;
		for (uint32_t j = 0; j < node->book->count && n < FL_PEERS_MAX; j++) {
			const struct book_entry *e = &node->book->entries[j];

			if (e->addr[0] != '\0')
				entries[n++] =
				    (struct shard_book_entry){.id = e->id, .epoch = e->epoch};
		}
		req->size = n;
		one = node_shard_call(node, i, req, NULL);
		if (one != 0 && rv == 0)
			rv = one;
	}
	return rv;
}

/* Write next as the book, then make it the one in force. Under book_lock. */
static int node_book_commit(struct fl_node *node, struct book *next)
{
	int rv = book_save(next, node->config.data_dir);

	if (rv != 0) {
		struct logger lg = node_logger_of(node);

		log_at(&lg, LOG_LEVEL_WARN, "address book unchanged: cannot write %s/%s: %s",
		       node->config.data_dir, BOOK_FILE, strerror(-rv));
		return rv;
	}
	*node->book = *next;
	return 0;
}

int fl_node_set_peer(struct fl_node *node, uint64_t id, const char *addr)
{
	struct logger lg = node_logger_of(node);
	struct sockaddr_storage sa;
	socklen_t len;
	char reason[384], was[FL_ADDR_SIZE_MAX] = "";
	struct book *next;
	struct book_entry *e;
	bool changed;
	int rv;

	if (id == 0 || id == node->config.node_id) {
		log_at(&lg, LOG_LEVEL_WARN, "set peer %llu: refused: %s", (unsigned long long)id,
		       id == 0 ? "node ids start at 1" : "that is this node's own id");
		return -EINVAL;
	}
	if (!book_addr_is_valid(addr) ||
	    config_addr_resolve(addr, false, &sa, &len, reason, sizeof(reason)) != 0) {
		log_at(&lg, LOG_LEVEL_WARN, "set peer %llu: refused: address '%.80s': %s",
		       (unsigned long long)id, addr != NULL ? addr : "(null)",
		       addr != NULL && book_addr_is_valid(addr)
			   ? reason
			   : "not 1 to 255 printable bytes without spaces");
		return -EINVAL;
	}
	next = malloc(sizeof(*next));
	if (next == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&node->book_lock);
	*next = *node->book;
	e = book_find(next, id);
	if (e != NULL)
		snprintf(was, sizeof(was), "%s", e->addr);
	rv = book_set(next, id, addr, &changed);
	if (rv == ERR_PEERS_FULL)
		log_at(&lg, LOG_LEVEL_WARN, "set peer %llu: refused: %d peers known already",
		       (unsigned long long)id, FL_PEERS_MAX);
	if (rv == 0 && changed)
		rv = node_book_commit(node, next);
	if (rv == 0 && changed) {
		rv = node_net_set_peer(node->net, id, addr);
		ASSERT(rv == 0); /* The net table has a slot for every peer in force. */
		rv = node_book_push(node);
		log_at(&lg, LOG_LEVEL_INFO, "address book: node %llu at %s (%s%s)",
		       (unsigned long long)id, addr, was[0] != '\0' ? "was " : "new",
		       was[0] != '\0' ? was : "");
	}
	pthread_mutex_unlock(&node->book_lock);
	free(next);
	return rv;
}

int fl_node_remove_peer(struct fl_node *node, uint64_t id)
{
	struct logger lg = node_logger_of(node);
	struct book *next = malloc(sizeof(*next));
	int rv;

	if (next == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&node->book_lock);
	*next = *node->book;
	rv = book_remove(next, id);
	if (rv == 0)
		rv = node_book_commit(node, next);
	if (rv == 0) {
		node_net_remove_peer(node->net, id);
		rv = node_book_push(node);
		log_at(&lg, LOG_LEVEL_INFO, "address book: node %llu removed",
		       (unsigned long long)id);
	}
	pthread_mutex_unlock(&node->book_lock);
	free(next);
	return rv;
}

int fl_node_peers(struct fl_node *node, struct fl_peer_info *peers, uint32_t max, uint32_t *count)
{
	struct shard_peer_state *states = calloc(FL_PEERS_MAX, sizeof(*states));
	uint32_t n = 0;
	int rv = 0;

	if (states == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&node->book_lock);
	for (uint32_t i = 0; i < node->book->count; i++) {
		const struct book_entry *e = &node->book->entries[i];

		if (e->addr[0] == '\0')
			continue;
		if (n < max) {
			struct fl_peer_info *p = &peers[n];

			*p = (struct fl_peer_info){.id = e->id,
						   .connected_out = node->shards_count > 0,
						   .connected_in = node->shards_count > 0};
			snprintf(p->addr, sizeof(p->addr), "%s", e->addr);
			node_net_peer_client_addr(node->net, e->id, p->client_addr,
						  sizeof(p->client_addr));
		}
		n++;
	}
	for (uint32_t s = 0; s < node->shards_count && rv == 0; s++) {
		struct shard_req *req = calloc(1, sizeof(*req) + sizeof(states));
		uint64_t filled = 0;

		if (req == NULL) {
			rv = -ENOMEM;
			break;
		}
		req->type = SHARD_REQ_PEER_STATES;
		req->fd = -1;
		memcpy(req->data, &states, sizeof(states));
		rv = node_shard_call(node, s, req, &filled);
		for (uint32_t i = 0; i < n && i < max && rv == 0; i++) {
			bool out = false, in = false;

			for (uint64_t j = 0; j < filled; j++)
				if (states[j].id == peers[i].id) {
					out = states[j].out_up;
					in = states[j].in_up;
				}
			peers[i].connected_out &= out;
			peers[i].connected_in &= in;
		}
	}
	pthread_mutex_unlock(&node->book_lock);
	free(states);
	*count = n;
	return rv;
}
