/* flotilla-node: the address book ops of the client protocol
 * (docs/client-protocol.md, ops 42 to 44): PEERS lists it, SET_PEER and
 * REMOVE_PEER change it through fl_node_set_peer() and
 * fl_node_remove_peer(). Each is answered on the connection's thread once
 * the node has made the change (every shard took it), so an answer OK means
 * the change is written to the data directory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flotilla.h"
#include "tools/client.h"
#include "tools/node_internal.h"

static void request_peers_list(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	struct fl_peer_info *info = calloc(FL_PEERS_MAX, sizeof(*info));
	struct client_peer *peers = calloc(CLIENT_PEERS_MAX, sizeof(*peers));
	unsigned char *value = malloc(CLIENT_PEERS_SIZE_MAX(CLIENT_PEERS_MAX));
	uint32_t count = 0, n = 1;
	int rv =
	    info && peers && value ? fl_node_peers(s->node, info, FL_PEERS_MAX, &count) : -ENOMEM;

	if (rv != 0) {
		conn_respond_text(c, CLIENT_STATUS_ERROR, req->request_id, 0, fl_strerror(rv));
		goto out;
	}
	peers[0] = (struct client_peer){.id = s->opt.id, .flags = CLIENT_PEER_SELF};
	snprintf(peers[0].addr, sizeof(peers[0].addr), "%.127s", s->self_peer_addr);
	snprintf(peers[0].client_addr, sizeof(peers[0].client_addr), "%.115s", s->self_client_addr);
	for (uint32_t i = 0; i < count && i < FL_PEERS_MAX && n < CLIENT_PEERS_MAX; i++, n++) {
		peers[n] = (struct client_peer){
		    .id = info[i].id,
		    .flags = (info[i].connected_out ? CLIENT_PEER_CONNECTED_OUT : 0) |
			     (info[i].connected_in ? CLIENT_PEER_CONNECTED_IN : 0)};
		snprintf(peers[n].addr, sizeof(peers[n].addr), "%s", info[i].addr);
		snprintf(peers[n].client_addr, sizeof(peers[n].client_addr), "%s",
			 info[i].client_addr);
	}
	conn_respond(c, CLIENT_STATUS_OK, req->request_id, 0, value,
		     client_peers_encode(peers, n, value));
out:
	free(info);
	free(peers);
	free(value);
}

/* The refusal's text: what was wrong, as the node's log line says too. */
static void request_peer_refused(struct conn *c, const struct client_request *req, int rv,
				 const char *addr)
{
	struct server *s = c->worker->server;
	char text[400];

	if (rv == -EINVAL && (req->member == 0 || req->member == s->opt.id))
		snprintf(text, sizeof(text), "node id %llu: %s", (unsigned long long)req->member,
			 req->member == 0 ? "node ids start at 1" : "that is this node's own id");
	else if (rv == -EINVAL)
		snprintf(text, sizeof(text),
			 "address '%.255s' of node %llu: not HOST:PORT that resolves here "
			 "(printable, no spaces)",
			 addr, (unsigned long long)req->member);
	else
		snprintf(text, sizeof(text), "node %llu: %s", (unsigned long long)req->member,
			 fl_strerror(rv));
	conn_respond_text(c,
			  rv == -EINVAL || rv == FL_ERR_PEERS_FULL || rv == FL_ERR_PEER_UNKNOWN
			      ? CLIENT_STATUS_PEER_REFUSED
			      : CLIENT_STATUS_ERROR,
			  req->request_id, 0, text);
}

void request_peers(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	char addr[CLIENT_PEER_ADDR_MAX + 1] = "";
	int rv;

	if (req->op == CLIENT_OP_PEERS) {
		request_peers_list(c, req);
		return;
	}
	if (req->op == CLIENT_OP_SET_PEER) {
		memcpy(addr, req->key, req->key_size); /* Checked: at most CLIENT_PEER_ADDR_MAX. */
		rv = memchr(addr, '\0', req->key_size) != NULL
			 ? -EINVAL
			 : fl_node_set_peer(s->node, req->member, addr);
	} else {
		rv = fl_node_remove_peer(s->node, req->member);
	}
	if (rv == 0)
		conn_respond(c, CLIENT_STATUS_OK, req->request_id, 0, NULL, 0);
	else
		request_peer_refused(c, req, rv, addr);
}
