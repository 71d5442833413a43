/* The accept side of the net thread (see shard/net.c for the protocol).
 *
 * SET-UP. The accept thread only accepts: each connection's set-up (TLS
 * handshake, Flotilla handshake, identity check, shared-key proofs) runs on
 * a short-lived thread of its own, bounded as a whole by the set-up
 * deadline (fl_node_config.peer_handshake_timeout_ms), so a peer that sends
 * its handshake a byte at a time, or nothing, holds only its own thread and
 * never delays another peer's connection. The gate (shard/gate.c) lets at
 * most GATE_HANDSHAKES_MAX set-ups run at once, GATE_PER_SOURCE_MAX from
 * one address; past either, a connection is closed at once, counted, and a
 * rate-limited line logged. With TLS on, the acceptor first checks that the
 * connection opens with a TLS record (else: a plaintext peer), then runs the
 * TLS handshake, reads the node id from the peer's certificate, and refuses
 * a Flotilla handshake that claims another node id. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"
#include "shard/net_internal.h"

/* The TLS part of an accepted connection's set-up: a TLS record first (not a
 * plaintext peer), the handshake, and a node certificate, whose id goes to
 * cert_id. Returns true, or false once the refusal is counted and logged. */
static bool net_accept_tls(struct node_net *net, struct net_setup *su, struct tls_chan *ch,
			   uint64_t *cert_id)
{
	char why[TLS_WHY_SIZE];
	int rv = tls_chan_sniff(ch);

	if (rv == TLS_REFUSAL_PLAINTEXT) {
		net_refused_tls(net, su->host, su->from, TLS_REFUSAL_PLAINTEXT,
				"plaintext connection where TLS is required (a node without "
				"--tls-ca, --tls-cert and --tls-key?)");
		return false;
	}
	if (rv == 0) {
		ch->ssl = tls_session_new(net->config.tls, ch->fd, false);
		if (ch->ssl == NULL)
			return false; /* Out of memory: the peer dials again. */
		rv = tls_chan_handshake(ch, why, sizeof(why));
	}
	if (rv == 0)
		rv = tls_peer_node_id(ch->ssl, cert_id, why, sizeof(why));
	if (rv == -ETIMEDOUT)
		snprintf(why, sizeof(why), "no TLS handshake within %u ms",
			 net->config.handshake_timeout_ms);
	else if (rv < 0)
		snprintf(why, sizeof(why), "closed during the TLS handshake (%s)", strerror(-rv));
	if (rv != 0 && rv != -ECANCELED)
		net_refused_tls(net, su->host, su->from,
				rv > 0             ? (uint32_t)rv
				: rv == -ETIMEDOUT ? TLS_REFUSAL_TIMEOUT
						   : TLS_REFUSAL_OTHER,
				why);
	return rv == 0;
}

/* The wire handshake of an accepted connection (inside TLS when on): the
 * peer's handshake into hs (raw bytes in buf) and its address note. Returns
 * true, or false once refused. */
static bool net_accept_handshake(struct node_net *net, struct net_setup *su, struct tls_chan *ch,
				 uint8_t *buf, struct wire_handshake *hs, char *client_addr)
{
	uint8_t note[WIRE_ADDR_NOTE_SIZE];
	char why[TLS_WHY_SIZE] = "";
	int rv = tls_chan_read(ch, buf, WIRE_HANDSHAKE_SIZE, why, sizeof(why));

	if (rv != 0) {
		if (ch->ssl != NULL && rv == -EPROTO)
			net_refused_tls(net, su->host, su->from, TLS_REFUSAL_OTHER, why);
		else
			net_refused(net, rv == -ETIMEDOUT ? "no handshake in time"
							  : "closed during handshake");
		return false;
	}
	if (wire_handshake_decode(hs, buf) != 0) {
		net_refused(net,
			    "malformed handshake (magic, version, flags or checksum: a node of "
			    "another version?)");
		return false;
	}
	if ((hs->flags & WIRE_HANDSHAKE_ADDR) != 0 &&
	    (tls_chan_read(ch, note, sizeof(note), NULL, 0) != 0 ||
	     wire_addr_note_decode(note, client_addr) != 0)) {
		net_refused(net, "malformed or missing address note after the handshake");
		return false;
	}
	return true;
}

/* Set up one accepted connection (see SET-UP), then hand it to its shard.
 * Runs on the connection's own set-up thread. */
static void net_accept_conn(struct node_net *net, struct net_setup *su)
{
	uint8_t buf[WIRE_HANDSHAKE_SIZE], ours[WIRE_HANDSHAKE_SIZE], key[AUTH_KEY_SIZE];
	char client_addr[WIRE_ADDR_NOTE_TEXT_MAX + 1] = "";
	struct tls_chan ch = net_chan(net, su->fd);
	struct wire_handshake hs;
	struct shard_req *req;
	uint64_t cert_id = 0;
	const char *why;
	bool refused;
	int rv;

	if (net->config.tls != NULL && !net_accept_tls(net, su, &ch, &cert_id))
		goto out;
	if (!net_accept_handshake(net, su, &ch, buf, &hs, client_addr))
		goto out;
	if (ch.ssl != NULL && hs.node_id != cert_id) {
		char line[TLS_WHY_SIZE];

		snprintf(line, sizeof(line),
			 "its certificate is for node %llu but its handshake claims node %llu",
			 (unsigned long long)cert_id, (unsigned long long)hs.node_id);
		net_refused_tls(net, su->host, su->from, TLS_REFUSAL_NODE_ID, line);
		goto out;
	}
	why = net_handshake_check(net, &hs, 0, UINT32_MAX);
	if (why != NULL) {
		char line[128];

		snprintf(line, sizeof(line), "node %llu has %s", (unsigned long long)hs.node_id,
			 why);
		net_refused(net, line);
		goto out;
	}
	/* A probe only asks who we are; anything else must be the peer we know. */
	refused = (hs.flags & WIRE_HANDSHAKE_PROBE) == 0 && !net_ident_admit(net, &hs, su->fd);
	net_handshake_ours(net, hs.shard_index, refused ? WIRE_HANDSHAKE_REFUSED : 0, ours);
	if (tls_chan_write(&ch, ours, sizeof(ours)) != 0 || refused)
		goto out;
	if (net->config.auth &&
	    (rv = net_auth_exchange(net, &ch, AUTH_ACCEPTOR, ours, buf, key)) != 0) {
		char line[160];

		snprintf(line, sizeof(line), "node %llu failed authentication: %s",
			 (unsigned long long)hs.node_id,
			 rv == -EACCES ? "wrong proof (another key, or not the peer)"
				       : strerror(-rv));
		net_refused(net, line);
		goto out;
	}
	if (hs.flags & WIRE_HANDSHAKE_PROBE)
		goto out; /* Answered: that was all it asked. */
	if (ch.ssl != NULL && tls_frame_key(ch.ssl, key) != 0)
		goto out;
	net_ident_note(net, hs.node_id, hs.incarnation);
	if ((hs.flags & WIRE_HANDSHAKE_ADDR) != 0)
		net_note_client_addr(net, hs.node_id, client_addr);
	req = calloc(1, sizeof(*req));
	if (req == NULL)
		goto out;
	/* Blocking again: the shard's io_uring does the waiting from here on. */
	fcntl(su->fd, F_SETFL, fcntl(su->fd, F_GETFL) & ~O_NONBLOCK);
	net_socket_tune(su->fd);
	req->type = SHARD_REQ_CONN;
	req->fd = su->fd;
	req->member = hs.node_id;
	req->auth = net->config.auth;
	req->seal = ch.ssl != NULL;
	if (req->auth || req->seal)
		memcpy(req->session_key, key, sizeof(key));
	sodium_memzero(key, sizeof(key));
	tls_session_free(ch.ssl);
	net_hand_over(net, hs.shard_index, req);
	return;
out:
	sodium_memzero(key, sizeof(key));
	if (ch.ssl != NULL)
		tls_session_free(ch.ssl);
	close(su->fd);
}

static void *net_setup_main(void *arg)
{
	struct net_setup *su = arg;

	net_accept_conn(su->net, su);
	gate_leave(&su->net->gate, su->host);
	free(su);
	return NULL;
}

/* "host" and "host:port" of a socket address. */
static void net_addr_text(const struct sockaddr_storage *addr, char *host, size_t host_size,
			  char *from, size_t from_size)
{
	bool v4 = addr->ss_family == AF_INET;
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)addr;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr;

	if (inet_ntop(addr->ss_family,
		      v4 ? (const void *)&a4->sin_addr : (const void *)&a6->sin6_addr, host,
		      (socklen_t)host_size) == NULL)
		snprintf(host, host_size, "?");
	snprintf(from, from_size, "from %s:%u", host, ntohs(v4 ? a4->sin_port : a6->sin6_port));
}

/* Accept one connection and start its set-up on a thread of its own, if
 * the gate lets it in (see SET-UP). Runs on the accept thread. */
void net_accept(struct node_net *net)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof(addr);
	struct net_setup *su;
	pthread_attr_t attr;
	pthread_t thread;
	int fd = accept4(net->listen_fd, (struct sockaddr *)&addr, &len,
			 SOCK_CLOEXEC | SOCK_NONBLOCK),
	    rv;

	if (fd < 0)
		return;
	su = calloc(1, sizeof(*su));
	if (su == NULL) {
		close(fd);
		return;
	}
	*su = (struct net_setup){.net = net, .fd = fd};
	net_addr_text(&addr, su->host, sizeof(su->host), su->from, sizeof(su->from));
	rv = gate_enter(&net->gate, su->host, net_now_ms());
	if (rv != 0) {
		char line[160];

		snprintf(line, sizeof(line),
			 "too many connections being set up (%d %s); closed at once",
			 rv == -EUSERS ? GATE_PER_SOURCE_MAX : GATE_HANDSHAKES_MAX,
			 rv == -EUSERS ? "from this address" : "on this node");
		net_refused_tls(net, su->host, su->from, NET_REFUSAL_GATE, line);
		close(fd);
		free(su);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 << 10);
	if (pthread_create(&thread, &attr, net_setup_main, su) != 0) {
		gate_leave(&net->gate, su->host);
		close(fd);
		free(su);
	}
	pthread_attr_destroy(&attr);
}
