/* The node's net thread: the one place that blocks on connection set-up, so
 * that shard loops never do.
 *
 * It accepts peer connections on the node's listen address, reads the
 * peer's handshake with a time limit, checks it (cluster id, a known node id,
 * the same shard count, a shard index in range), answers with our own, and
 * hands the socket to the shard of that index. It also dials peers for the
 * shards: connect with a time limit, exchange handshakes, and hand the socket
 * back, or report the errno (ECONNREFUSED is how a shard learns that a peer
 * process is gone). Connections are one-way: a node sends on the connections
 * it dialled and receives on the ones it accepted.
 *
 * TLS (when the node has a CA, a certificate and a key; shard/tls.c). Every
 * connection, the identity probe's too, runs a mutual TLS 1.3 handshake
 * first, and the handshakes below travel inside it. The acceptor refuses a
 * plaintext peer, a certificate that does not chain to the CA or has
 * expired, no certificate, and a Flotilla handshake whose node id is not
 * the one its certificate names (CN node-<id>); the dialler refuses an
 * answer whose certificate is not the dialled node's. Each refusal is
 * counted and logged with its cause, at most once per source and cause
 * every GATE_LOG_MS. Afterwards the dialler's frames are sealed with a key
 * both sides export from the TLS session (shard/seal.c), and the shard gets
 * that key with the socket; the TLS session itself ends there. The shared
 * key is not used with TLS. Every set-up, TLS or not, is bounded as a whole
 * by one deadline, and each accepted one runs on its own thread
 * (shard/net_accept.c), so a slow peer delays no other.
 *
 * AUTHENTICATION (when a shared key is configured; both handshakes then carry
 * WIRE_HANDSHAKE_AUTH and WIRE_HANDSHAKE_AUTH_FRAMES, and a node without the
 * key, or with the older scheme, is refused). After the handshakes, each side
 * sends a 32-byte random challenge and a proof bound to its role (dialler or
 * acceptor), both challenges, both handshakes and the cluster id; both
 * derive the session key of the dialler's frames, which then each carry a
 * tag (shard/auth.c has the protocol; shard/conn.c checks the tags). The
 * shard is handed the session key with the socket.
 *
 * PEER IDENTITY. Each handshake carries the incarnation id of the sender's
 * data directory (fixed when the directory was made; shard/datadir.c), so a
 * restart on the same directory keeps it and a process started on another
 * directory under the same node id does not. The net thread remembers one
 * incarnation per peer: the one that answered when we dialled the peer's
 * configured address, or the first one accepted. An accepted connection with
 * another incarnation is either the peer's replacement (its directory was
 * made anew) or a second process claiming its node id. To tell them apart,
 * the net thread probes the peer's configured address (a handshake flagged
 * WIRE_HANDSHAKE_PROBE, answered and closed without reaching a shard): if the
 * newcomer is what answers there, it is the peer now and is accepted; if the
 * known incarnation answers, or nothing does, the newcomer is refused (its
 * dialler sees WIRE_HANDSHAKE_REFUSED) for NET_IDENT_REFUSE_MS, and both
 * incarnations are logged, at most once per peer every NET_IDENT_LOG_MS.
 * Connections accepted before a conflict was seen stay until they close.
 *
 * THE ADDRESS BOOK. The peers known (id, address, identity, client address)
 * are a fixed table of FL_PEERS_MAX slots under peers_lock, changed at run
 * time by the node (node_net_set_peer, node_net_remove_peer): a dial reads
 * its peer's address when it starts, an accept checks the id against the
 * table, and a new address forgets the identity known at the old one.
 * Closing the connections of a removed or readdressed peer is the shards'
 * part (shard/peer.c). A dialler with a client address sends it in an
 * address note right after its handshake (WIRE_HANDSHAKE_ADDR); the
 * acceptor keeps it for the peer once the connection is admitted. */
#include "shard/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/sock.h"
#include "shard/auth.h"
#include "shard/config.h"
#include "shard/gate.h"
#include "shard/net_internal.h"
#include "shard/shard.h"
#include "shard/tls.h"
#include "shard/wire.h"

void net_socket_tune(int fd)
{
	int one = 1, size = NET_SOCKET_BUFFER;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

/* A channel for one connection's set-up, its deadline starting now. */
struct tls_chan net_chan(struct node_net *net, int fd)
{
	return (struct tls_chan){.fd = fd,
				 .deadline_ms = tls_now_ms() + net->config.handshake_timeout_ms,
				 .stop = &net->stopping};
}

uint64_t net_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The slot of peer id, or NULL. Under peers_lock. */
static struct net_peer *net_peer_of(struct node_net *net, uint64_t id)
{
	for (uint32_t i = 0; i < FL_PEERS_MAX && id != 0; i++)
		if (net->peers[i].id == id)
			return &net->peers[i];
	return NULL;
}

static bool net_peer_known(struct node_net *net, uint64_t id)
{
	bool known;

	pthread_mutex_lock(&net->peers_lock);
	known = net_peer_of(net, id) != NULL;
	pthread_mutex_unlock(&net->peers_lock);
	return known;
}

/* Copy peer id's address into addr (FL_ADDR_SIZE_MAX bytes). Returns false
 * when id is not in the book. */
static bool net_peer_addr(struct node_net *net, uint64_t id, char *addr)
{
	struct net_peer *p;

	pthread_mutex_lock(&net->peers_lock);
	p = net_peer_of(net, id);
	if (p != NULL)
		memcpy(addr, p->addr, FL_ADDR_SIZE_MAX);
	pthread_mutex_unlock(&net->peers_lock);
	return p != NULL;
}

/* Check a peer's handshake. Returns NULL if fine, else why it is refused. */
const char *net_handshake_check(struct node_net *net, const struct wire_handshake *hs,
				uint64_t expect_node, uint32_t expect_shard)
{
	if (hs->cluster_id != net->config.cluster_id)
		return "another cluster id";
	if (!net_peer_known(net, hs->node_id))
		return "unknown node id";
	if (expect_node != 0 && hs->node_id != expect_node)
		return "not the node dialled";
	if (hs->shard_count != net->config.shards_count)
		return "a different shard count";
	if (hs->shard_index >= net->config.shards_count ||
	    (expect_shard != UINT32_MAX && hs->shard_index != expect_shard))
		return "a bad shard index";
	if (((hs->flags & WIRE_HANDSHAKE_AUTH) != 0) != net->config.auth)
		return net->config.auth ? "no authentication key (this node requires one)"
					: "an authentication key (this node has none)";
	if (net->config.auth && (hs->flags & WIRE_HANDSHAKE_AUTH_FRAMES) == 0)
		return "the older shared-key authentication without authenticated frames "
		       "(upgrade it)";
	return NULL;
}

/* Prove we hold the key and check that the peer does (shard/auth.c). role
 * is ours; hs_ours and hs_theirs are the handshakes as sent on the wire. On
 * success session_key gets the key of the frames the dialler sends. Returns
 * 0, -EACCES on a wrong proof, or -errno from the socket. */
int net_auth_exchange(const struct node_net *net, struct tls_chan *ch, enum auth_role role,
		      const uint8_t *hs_ours, const uint8_t *hs_theirs, uint8_t *session_key)
{
	enum auth_role other = role == AUTH_DIALLER ? AUTH_ACCEPTOR : AUTH_DIALLER;
	uint8_t mine[AUTH_CHALLENGE_SIZE], theirs[AUTH_CHALLENGE_SIZE];
	uint8_t proof[AUTH_PROOF_SIZE], got[AUTH_PROOF_SIZE];
	struct auth_transcript t = {.cluster_id = net->config.cluster_id};
	int rv;

	t.challenge[role] = mine;
	t.challenge[other] = theirs;
	t.handshake[role] = hs_ours;
	t.handshake[other] = hs_theirs;
	randombytes_buf(mine, sizeof(mine));
	rv = tls_chan_write(ch, mine, sizeof(mine));
	if (rv == 0)
		rv = tls_chan_read(ch, theirs, sizeof(theirs), NULL, 0);
	if (rv != 0)
		return rv;
	auth_proof(proof, net->config.auth_key, role, &t);
	rv = tls_chan_write(ch, proof, sizeof(proof));
	if (rv == 0)
		rv = tls_chan_read(ch, got, sizeof(got), NULL, 0);
	if (rv != 0)
		return rv;
	/* The peer's proof is of the other role: ours, sent back, never is. */
	if (!auth_proof_check(got, net->config.auth_key, other, &t))
		return -EACCES;
	auth_session_key(session_key, net->config.auth_key, AUTH_DIALLER, &t);
	return 0;
}

void net_handshake_ours(const struct node_net *net, uint32_t shard_index, uint32_t flags,
			uint8_t *buf)
{
	struct wire_handshake hs = {
	    .version = WIRE_VERSION,
	    .cluster_id = net->config.cluster_id,
	    .node_id = net->config.node_id,
	    .shard_index = shard_index,
	    .shard_count = net->config.shards_count,
	    .incarnation = net->config.incarnation,
	    .flags =
		flags | (net->config.auth ? WIRE_HANDSHAKE_AUTH | WIRE_HANDSHAKE_AUTH_FRAMES : 0)};

	wire_handshake_encode(&hs, buf);
}

void net_hand_over(struct node_net *net, uint32_t shard_index, struct shard_req *req)
{
	if (shard_submit(net->shards[shard_index], req) != 0) {
		if (req->type == SHARD_REQ_CONN)
			close(req->fd);
		free(req);
	}
}

void net_refused(struct node_net *net, const char *why)
{
	log_at(&net->config.log, LOG_LEVEL_WARN, "refused a peer connection: %s", why);
	atomic_fetch_add_explicit(&shard_stats(net->shards[0])->peers_refused, 1,
				  memory_order_relaxed);
}

/* A refusal in TLS mode: counted, and logged at most once per source and
 * cause every GATE_LOG_MS (a flood of bad handshakes must not flood the
 * log). cause: an enum tls_refusal, or NET_REFUSAL_GATE. */
void net_refused_tls(struct node_net *net, const char *host, const char *from, uint32_t cause,
		     const char *why)
{
	uint32_t unlogged = 0;

	atomic_fetch_add_explicit(&shard_stats(net->shards[0])->peers_refused, 1,
				  memory_order_relaxed);
	if (gate_may_log(&net->gate, host, cause, net_now_ms(), &unlogged))
		log_at(&net->config.log, LOG_LEVEL_WARN,
		       "refused a peer connection %s: %s (one such line per source every %d s; "
		       "%u not logged since the last)",
		       from, why, GATE_LOG_MS / 1000, unlogged);
}

static int net_connect(struct node_net *net, uint32_t shard_index, uint64_t peer, uint32_t flags,
		       struct wire_handshake *hs, uint8_t *session_key);

/* Peer id told us its client address. */
void net_note_client_addr(struct node_net *net, uint64_t id, const char *client_addr)
{
	struct net_peer *p;

	pthread_mutex_lock(&net->peers_lock);
	p = net_peer_of(net, id);
	if (p != NULL)
		snprintf(p->client_addr, sizeof(p->client_addr), "%s", client_addr);
	pthread_mutex_unlock(&net->peers_lock);
}

/* Peer id's identity record, or NULL when it left the book. Under peers_lock. */
static struct net_ident *net_ident_of(struct node_net *net, uint64_t id)
{
	struct net_peer *p = net_peer_of(net, id);

	return p != NULL ? &p->ident : NULL;
}

/* Whether a line about this peer's identity may be logged now; if so, the
 * time is noted. Under peers_lock. */
static bool net_ident_may_log(struct net_ident *id, uint64_t now_ms)
{
	if (id->logged_ms != 0 && now_ms < id->logged_ms + NET_IDENT_LOG_MS)
		return false;
	id->logged_ms = now_ms;
	return true;
}

/* Who answers at peer's configured address: its incarnation, or 0 when
 * nothing answers in time. Blocks for at most the connect and handshake
 * time limits. */
static uint64_t net_ident_probe(struct node_net *net, uint64_t peer)
{
	struct wire_handshake hs;
	uint8_t key[AUTH_KEY_SIZE];
	int fd = net_connect(net, 0, peer, WIRE_HANDSHAKE_PROBE, &hs, key);

	sodium_memzero(key, sizeof(key));
	if (fd < 0)
		return 0;
	close(fd);
	return hs.incarnation;
}

/* Both facts of a refusal: the newcomer, and the process we keep. */
static void net_ident_log_refusal(struct node_net *net, const struct wire_handshake *hs,
				  uint64_t known, bool answered, int fd)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof(addr);
	char from[INET6_ADDRSTRLEN + 8] = "?", book_addr[FL_ADDR_SIZE_MAX] = "?";
	unsigned long long node = hs->node_id;

	if (getpeername(fd, (struct sockaddr *)&addr, &len) == 0) {
		char host[INET6_ADDRSTRLEN] = "?";
		bool v4 = addr.ss_family == AF_INET;
		struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;

		inet_ntop(addr.ss_family, v4 ? (void *)&a4->sin_addr : (void *)&a6->sin6_addr, host,
			  sizeof(host));
		snprintf(from, sizeof(from), "%s:%u", host,
			 ntohs(v4 ? a4->sin_port : a6->sin6_port));
	}
	log_at(&net->config.log, LOG_LEVEL_WARN,
	       "two processes claim node %llu: refused the newer one, incarnation %016llx "
	       "(connecting from %s); node %llu is incarnation %016llx, %s at its address %s. Stop "
	       "the process started on another data directory (logged at most every %d s per peer)",
	       node, (unsigned long long)hs->incarnation, from, node, (unsigned long long)known,
	       answered ? "live and answering" : "and nothing else answers",
	       net_peer_addr(net, hs->node_id, book_addr) ? book_addr : "?",
	       NET_IDENT_LOG_MS / 1000);
}

/* Whether an accepted connection with handshake hs comes from the peer we
 * know under its node id (see PEER IDENTITY above). May probe the peer's
 * address: runs on the accept thread, never on a shard's. */
bool net_ident_admit(struct node_net *net, const struct wire_handshake *hs, int fd)
{
	struct net_ident *id;
	uint64_t known, answer, now_ms = net_now_ms();
	bool cached, log_now;

	pthread_mutex_lock(&net->peers_lock);
	id = net_ident_of(net, hs->node_id);
	known = id != NULL ? id->incarnation : 0;
	cached = id != NULL && id->refused == hs->incarnation && now_ms < id->refused_until_ms;
	pthread_mutex_unlock(&net->peers_lock);
	/* The same directory restarted keeps its incarnation: admitted at once,
	 * whether or not its old connections have closed yet. */
	if (known == 0 || known == hs->incarnation)
		return true;
	/* No lock held while probing: the dial thread notes identities too. */
	answer = cached ? known : net_ident_probe(net, hs->node_id);
	if (answer == hs->incarnation)
		return true; /* It answers at the peer's address: the peer now. */
	pthread_mutex_lock(&net->peers_lock);
	now_ms = net_now_ms();
	id = net_ident_of(net, hs->node_id);
	if (id == NULL) { /* Removed from the book meanwhile. */
		pthread_mutex_unlock(&net->peers_lock);
		return false;
	}
	if (!cached) {
		id->refused = hs->incarnation;
		id->refused_until_ms = now_ms + NET_IDENT_REFUSE_MS;
	}
	if (answer != 0)
		id->incarnation = known = answer;
	log_now = net_ident_may_log(id, now_ms);
	pthread_mutex_unlock(&net->peers_lock);
	if (log_now)
		net_ident_log_refusal(net, hs, known, answer != 0, fd);
	atomic_fetch_add_explicit(&shard_stats(net->shards[0])->peers_refused, 1,
				  memory_order_relaxed);
	return false;
}

/* The peer answered with incarnation at its address, or was admitted. */
void net_ident_note(struct node_net *net, uint64_t peer, uint64_t incarnation)
{
	struct net_ident *id;
	uint64_t was;
	bool log_now;

	pthread_mutex_lock(&net->peers_lock);
	id = net_ident_of(net, peer);
	if (id == NULL) { /* Removed from the book meanwhile. */
		pthread_mutex_unlock(&net->peers_lock);
		return;
	}
	was = id->incarnation;
	/* Not rate-limited: it happens once per new directory of the peer. */
	log_now = was != 0 && was != incarnation;
	id->incarnation = incarnation;
	if (id->refused == incarnation)
		id->refused_until_ms = 0;
	pthread_mutex_unlock(&net->peers_lock);
	if (log_now)
		log_at(&net->config.log, LOG_LEVEL_INFO,
		       "node %llu is now incarnation %016llx (was %016llx): it runs on a new data "
		       "directory",
		       (unsigned long long)peer, (unsigned long long)incarnation,
		       (unsigned long long)was);
}

/* The dialled peer refused us: another process claims our node id. */
static void net_ident_refused_us(struct node_net *net, uint64_t peer)
{
	struct net_ident *id;
	bool log_now;

	pthread_mutex_lock(&net->peers_lock);
	id = net_ident_of(net, peer);
	log_now = id != NULL && net_ident_may_log(id, net_now_ms());
	pthread_mutex_unlock(&net->peers_lock);
	if (log_now)
		log_at(&net->config.log, LOG_LEVEL_ERROR,
		       "node %llu refuses this process as node %llu: another process with node id "
		       "%llu and another data directory is live (this one is incarnation %016llx). "
		       "Stop one of them (logged at most every %d s per peer)",
		       (unsigned long long)peer, (unsigned long long)net->config.node_id,
		       (unsigned long long)net->config.node_id,
		       (unsigned long long)net->config.incarnation, NET_IDENT_LOG_MS / 1000);
	atomic_fetch_add_explicit(&shard_stats(net->shards[0])->peers_refused, 1,
				  memory_order_relaxed);
}

/* The TLS part of a dial: the handshake, and a certificate of the node
 * dialled. Returns 0, or -EACCES once the refusal is counted and logged, or
 * -errno. */
static int net_connect_tls(struct node_net *net, struct tls_chan *ch, uint64_t peer,
			   const char *addr)
{
	char why[TLS_WHY_SIZE], host[FL_ADDR_SIZE_MAX + 64], line[TLS_WHY_SIZE + 64];
	uint64_t cert_id = 0;
	int rv;

	ch->ssl = tls_session_new(net->config.tls, ch->fd, true);
	if (ch->ssl == NULL)
		return -ENOMEM;
	rv = tls_chan_handshake(ch, why, sizeof(why));
	if (rv == 0)
		rv = tls_peer_node_id(ch->ssl, &cert_id, why, sizeof(why));
	if (rv == 0 && cert_id != peer) {
		snprintf(why, sizeof(why), "its certificate is for node %llu, not the node dialled",
			 (unsigned long long)cert_id);
		rv = TLS_REFUSAL_NODE_ID;
	}
	if (rv <= 0)
		return rv;
	snprintf(host, sizeof(host), "dialled %s", addr);
	snprintf(line, sizeof(line), "to node %llu at %s", (unsigned long long)peer, addr);
	net_refused_tls(net, host, line, (uint32_t)rv, why);
	return -EACCES;
}

/* Dial peer for shard_index, sending flags in our handshake; *hs gets the
 * peer's, and session_key (AUTH_KEY_SIZE bytes) the key of the frames we
 * send when authentication or TLS is on. Returns the connected socket, or
 * -EEXIST (the peer refuses this process: another one claims our node id),
 * or -errno. The whole set-up is bounded by the set-up deadline. */
static int net_connect(struct node_net *net, uint32_t shard_index, uint64_t peer, uint32_t flags,
		       struct wire_handshake *hs, uint8_t *session_key)
{
	char text[FL_ADDR_SIZE_MAX];
	struct sockaddr_storage addr;
	socklen_t len;
	uint8_t buf[WIRE_HANDSHAKE_SIZE], ours[WIRE_HANDSHAKE_SIZE];
	struct tls_chan ch;
	int fd, rv, err = 0;
	socklen_t err_len = sizeof(err);
	char why[TLS_WHY_SIZE];

	if (!net_peer_addr(net, peer, text) ||
	    config_addr_resolve(text, false, &addr, &len, why, sizeof(why)) != 0)
		return -EINVAL;
	fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	ch = net_chan(net, fd);
	if (connect(fd, (struct sockaddr *)&addr, len) != 0 && errno != EINPROGRESS) {
		rv = -errno;
		goto err;
	}
	{
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};

		rv = poll(&pfd, 1, NET_CONNECT_TIMEOUT_MS);
		if (rv == 0) {
			rv = -ETIMEDOUT;
			goto err;
		}
	}
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
	if (err != 0) {
		rv = -err;
		goto err;
	}
	/* The peer is down and its port in the ephemeral range: this socket may
	 * have taken that port and connected to itself, which would keep the
	 * peer from listening again until we closed it (base/sock.h). */
	if (sock_is_self_connected(fd)) {
		rv = -ECONNREFUSED;
		goto err;
	}
	if (net->config.tls != NULL && (rv = net_connect_tls(net, &ch, peer, text)) != 0)
		goto err;
	/* Our client address goes with every dial but a probe. */
	if (net->config.client_addr != NULL && (flags & WIRE_HANDSHAKE_PROBE) == 0)
		flags |= WIRE_HANDSHAKE_ADDR;
	net_handshake_ours(net, shard_index, flags, ours);
	rv = tls_chan_write(&ch, ours, sizeof(ours));
	if (rv == 0 && (flags & WIRE_HANDSHAKE_ADDR) != 0)
		rv = tls_chan_write(&ch, net->client_note, sizeof(net->client_note));
	if (rv == 0)
		rv = tls_chan_read(&ch, buf, sizeof(buf), why, sizeof(why));
	if (rv == -EPROTO && ch.ssl != NULL) {
		/* TLS 1.3: the acceptor checks our certificate after we finished.
		 * Redials come every second: the line is rate-limited too. */
		char host[FL_ADDR_SIZE_MAX + 16], line[FL_ADDR_SIZE_MAX + 64];

		snprintf(host, sizeof(host), "dialled %s", text);
		snprintf(line, sizeof(line), "to node %llu at %s (it refused this node)",
			 (unsigned long long)peer, text);
		net_refused_tls(net, host, line, TLS_REFUSAL_OTHER, why);
	}
	if (rv != 0)
		goto err;
	if (wire_handshake_decode(hs, buf) != 0 ||
	    net_handshake_check(net, hs, peer, shard_index) != NULL) {
		net_refused(net, "the dialled peer answered with a bad handshake");
		rv = -EPROTO;
		goto err;
	}
	if (hs->flags & WIRE_HANDSHAKE_REFUSED) {
		net_ident_refused_us(net, peer);
		rv = -EEXIST;
		goto err;
	}
	if (net->config.auth &&
	    (rv = net_auth_exchange(net, &ch, AUTH_DIALLER, ours, buf, session_key)) != 0) {
		if (rv == -EACCES) {
			char line[160];

			snprintf(line, sizeof(line),
				 "dialled node %llu failed authentication: wrong proof (another "
				 "key, or not the peer)",
				 (unsigned long long)peer);
			net_refused(net, line);
		}
		goto err;
	}
	if (ch.ssl != NULL) {
		rv = tls_frame_key(ch.ssl, session_key);
		tls_session_free(ch.ssl);
		ch.ssl = NULL;
		if (rv != 0)
			goto err;
	}
	/* Blocking again: the shard's io_uring does the waiting from here on. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	net_socket_tune(fd);
	return fd;
err:
	if (ch.ssl != NULL)
		tls_session_free(ch.ssl);
	close(fd);
	return rv;
}

static void net_dial_one(struct node_net *net, struct net_dial d)
{
	struct shard_req *req = calloc(1, sizeof(*req));
	struct wire_handshake hs;
	uint8_t key[AUTH_KEY_SIZE];
	int fd = net_connect(net, d.shard_index, d.peer, 0, &hs, key);

	_Static_assert(AUTH_KEY_SIZE == TLS_KEY_SIZE, "one key field for both modes");

	if (req == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	req->member = d.peer;
	if (fd >= 0)
		net_ident_note(net, d.peer, hs.incarnation); /* It answers at its address. */
	if (fd >= 0) {
		req->type = SHARD_REQ_CONN;
		req->fd = fd;
		req->outgoing = true;
		req->auth = net->config.auth;
		req->seal = net->config.tls != NULL;
		if (req->auth || req->seal)
			memcpy(req->session_key, key, sizeof(key));
	} else {
		req->type = SHARD_REQ_DIAL_FAILED;
		req->fd = -fd;
	}
	sodium_memzero(key, sizeof(key));
	net_hand_over(net, d.shard_index, req);
}

/* Accepting and dialling run on two threads: two nodes dialling each other
 * must each be able to answer the other's handshake meanwhile. */
static void *net_accept_main(void *arg)
{
	struct node_net *net = arg;

	while (!atomic_load(&net->stopping)) {
		struct pollfd pfds[2] = {{.fd = net->listen_fd, .events = POLLIN},
					 {.fd = net->wake_fd[0], .events = POLLIN}};

		if (!atomic_load(&net->ready))
			pfds[0].fd = -1; /* poll ignores it */
		if (poll(pfds, 2, 100) <= 0)
			continue;
		if (pfds[0].revents & POLLIN)
			net_accept(net);
		if (pfds[1].revents & POLLIN) {
			char drain[64];

			(void)!read(net->wake_fd[0], drain, sizeof(drain));
		}
	}
	return NULL;
}

struct net_dial_run {
	struct node_net *net;
	struct net_dial dial;
};

static void *net_dial_run_main(void *arg)
{
	struct net_dial_run *run = arg;
	struct node_net *net = run->net;

	net_dial_one(net, run->dial);
	free(run);
	pthread_mutex_lock(&net->lock);
	net->dials_running--;
	pthread_cond_broadcast(&net->dials_ended);
	pthread_mutex_unlock(&net->lock);
	return NULL;
}

/* Run dial d on a thread of its own, once fewer than NET_DIALS_RUNNING_MAX
 * run: a dial to a slow or silent address (each bounded by the set-up
 * deadline) then delays no other. Inline when no thread can be had. */
static void net_dial_start(struct node_net *net, struct net_dial d)
{
	struct net_dial_run *run = malloc(sizeof(*run));
	pthread_attr_t attr;
	pthread_t thread;
	int rv = -1;

	pthread_mutex_lock(&net->lock);
	while (net->dials_running >= NET_DIALS_RUNNING_MAX && !atomic_load(&net->stopping))
		pthread_cond_wait(&net->dials_ended, &net->lock);
	net->dials_running++;
	pthread_mutex_unlock(&net->lock);
	if (run != NULL) {
		*run = (struct net_dial_run){.net = net, .dial = d};
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 256 << 10);
		rv = pthread_create(&thread, &attr, net_dial_run_main, run);
		pthread_attr_destroy(&attr);
	}
	if (rv == 0)
		return;
	free(run);
	net_dial_one(net, d);
	pthread_mutex_lock(&net->lock);
	net->dials_running--;
	pthread_cond_broadcast(&net->dials_ended);
	pthread_mutex_unlock(&net->lock);
}

static void *net_dial_main(void *arg)
{
	struct node_net *net = arg;
	struct net_dial dials[NET_DIALS_MAX];

	for (;;) {
		uint32_t count;

		pthread_mutex_lock(&net->lock);
		/* Shards dial as soon as they run, but a connection can be handed
		 * over only once every shard is registered (node_net_ready). */
		while ((net->dials_count == 0 || !atomic_load(&net->ready)) &&
		       !atomic_load(&net->stopping))
			pthread_cond_wait(&net->dial_cond, &net->lock);
		count = net->dials_count;
		memcpy(dials, net->dials, count * sizeof(dials[0]));
		net->dials_count = 0;
		pthread_mutex_unlock(&net->lock);
		if (atomic_load(&net->stopping))
			return NULL;
		for (uint32_t i = 0; i < count && !atomic_load(&net->stopping); i++)
			net_dial_start(net, dials[i]);
	}
}

void node_net_dial(struct node_net *net, uint32_t shard_index, uint64_t peer)
{
	pthread_mutex_lock(&net->lock);
	if (net->dials_count < NET_DIALS_MAX) {
		net->dials[net->dials_count++] = (struct net_dial){shard_index, peer};
		pthread_cond_signal(&net->dial_cond);
	}
	pthread_mutex_unlock(&net->lock);
}

static int net_listen(struct node_net *net, char *why, size_t why_size)
{
	struct sockaddr_storage addr;
	socklen_t len;
	int one = 1;
	char reason[384];

	if (config_addr_resolve(net->config.listen_addr, true, &addr, &len, reason,
				sizeof(reason)) != 0) {
		snprintf(why, why_size, "listen_addr '%s': %s", net->config.listen_addr, reason);
		return -EINVAL;
	}
	net->listen_fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (net->listen_fd < 0)
		return -errno;
	setsockopt(net->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(net->listen_fd, (struct sockaddr *)&addr, len) != 0 ||
	    listen(net->listen_fd, 256) != 0) {
		int rv = -errno;

		snprintf(why, why_size, "cannot listen on %s: %s", net->config.listen_addr,
			 strerror(errno));
		close(net->listen_fd);
		return rv;
	}
	len = sizeof(addr);
	getsockname(net->listen_fd, (struct sockaddr *)&addr, &len);
	net->port = ntohs(addr.ss_family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_port
						    : ((struct sockaddr_in6 *)&addr)->sin6_port);
	return 0;
}

int node_net_start(struct node_net **out, const struct node_net_config *config,
		   struct shard **shards, char *why, size_t why_size)
{
	struct node_net *net = calloc(1, sizeof(*net));
	sigset_t pipe_only, mask;
	int rv;

	if (net == NULL)
		return -ENOMEM;
	ASSERT(config->peers_count <= FL_PEERS_MAX); /* Checked by the node. */
	net->config = *config;
	net->shards = shards;
	for (uint32_t i = 0; i < config->peers_count; i++) {
		net->peers[i].id = config->peers[i].id;
		snprintf(net->peers[i].addr, sizeof(net->peers[i].addr), "%s",
			 config->peers[i].addr);
	}
	net->config.peers = NULL; /* Only the table above from here on. */
	if (net->config.handshake_timeout_ms == 0)
		net->config.handshake_timeout_ms = NET_HANDSHAKE_TIMEOUT_MS;
	gate_init(&net->gate);
	if (config->client_addr != NULL)
		wire_addr_note_encode(config->client_addr, (uint8_t *)net->client_note);
	pthread_mutex_init(&net->peers_lock, NULL);
	pthread_mutex_init(&net->lock, NULL);
	pthread_cond_init(&net->dial_cond, NULL);
	pthread_cond_init(&net->dials_ended, NULL);
	rv = net_listen(net, why, why_size);
	if (rv != 0)
		goto err;
	if (pipe2(net->wake_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
		rv = -errno;
		goto err_after_listen;
	}
	/* OpenSSL writes to the socket with write(2): a peer that closed
	 * would raise SIGPIPE. The net threads (and the set-up threads the
	 * accept thread starts, which inherit the mask) keep it blocked; the
	 * write fails with EPIPE instead. */
	sigemptyset(&pipe_only);
	sigaddset(&pipe_only, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_only, &mask);
	rv = -pthread_create(&net->accept_thread, NULL, net_accept_main, net);
	if (rv == 0) {
		rv = -pthread_create(&net->dial_thread, NULL, net_dial_main, net);
		if (rv != 0) {
			atomic_store(&net->stopping, true);
			pthread_join(net->accept_thread, NULL);
		}
	}
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	if (rv != 0)
		goto err_after_pipe;
	*out = net;
	return 0;
err_after_pipe:
	close(net->wake_fd[0]);
	close(net->wake_fd[1]);
err_after_listen:
	close(net->listen_fd);
err:
	gate_deinit(&net->gate);
	pthread_cond_destroy(&net->dials_ended);
	pthread_cond_destroy(&net->dial_cond);
	pthread_mutex_destroy(&net->lock);
	pthread_mutex_destroy(&net->peers_lock);
	free(net);
	return rv;
}

void node_net_stop(struct node_net *net)
{
	atomic_store(&net->stopping, true);
	(void)!write(net->wake_fd[1], "s", 1);
	pthread_mutex_lock(&net->lock);
	pthread_cond_signal(&net->dial_cond);
	pthread_cond_broadcast(&net->dials_ended); /* A dial waiting for its turn. */
	pthread_mutex_unlock(&net->lock);
	pthread_join(net->accept_thread, NULL);
	pthread_join(net->dial_thread, NULL);
	/* Set-ups and dials under way see stopping within TLS_POLL_SLICE_MS
	 * (or their connect's time limit). */
	gate_wait_idle(&net->gate);
	pthread_mutex_lock(&net->lock);
	while (net->dials_running > 0)
		pthread_cond_wait(&net->dials_ended, &net->lock);
	pthread_mutex_unlock(&net->lock);
	gate_deinit(&net->gate);
	close(net->listen_fd);
	close(net->wake_fd[0]);
	close(net->wake_fd[1]);
	pthread_cond_destroy(&net->dials_ended);
	pthread_cond_destroy(&net->dial_cond);
	pthread_mutex_destroy(&net->lock);
	pthread_mutex_destroy(&net->peers_lock);
	free(net);
}

void node_net_ready(struct node_net *net)
{
	atomic_store(&net->ready, true);
	(void)!write(net->wake_fd[1], "r", 1);
	pthread_mutex_lock(&net->lock);
	pthread_cond_signal(&net->dial_cond);
	pthread_mutex_unlock(&net->lock);
}

uint16_t node_net_port(const struct node_net *net)
{
	return net->port;
}

int node_net_set_peer(struct node_net *net, uint64_t id, const char *addr)
{
	struct net_peer *p;
	int rv = 0;

	pthread_mutex_lock(&net->peers_lock);
	p = net_peer_of(net, id);
	for (uint32_t i = 0; i < FL_PEERS_MAX && p == NULL; i++)
		if (net->peers[i].id == 0) {
			p = &net->peers[i];
			*p = (struct net_peer){.id = id};
		}
	if (p == NULL) {
		rv = -ENOSPC;
	} else if (strcmp(p->addr, addr) != 0) {
		snprintf(p->addr, sizeof(p->addr), "%s", addr);
		/* Whoever answers at the new address is the peer: no identity
		 * known there yet (see PEER IDENTITY). */
		p->ident = (struct net_ident){0};
	}
	pthread_mutex_unlock(&net->peers_lock);
	return rv;
}

void node_net_remove_peer(struct node_net *net, uint64_t id)
{
	struct net_peer *p;

	pthread_mutex_lock(&net->peers_lock);
	p = net_peer_of(net, id);
	if (p != NULL)
		*p = (struct net_peer){0};
	pthread_mutex_unlock(&net->peers_lock);
}

bool node_net_peer_client_addr(struct node_net *net, uint64_t id, char *client_addr, size_t size)
{
	struct net_peer *p;

	pthread_mutex_lock(&net->peers_lock);
	p = net_peer_of(net, id);
	if (p != NULL)
		snprintf(client_addr, size, "%s", p->client_addr);
	pthread_mutex_unlock(&net->peers_lock);
	return p != NULL;
}
