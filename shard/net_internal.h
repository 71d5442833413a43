/* What shard/net.c and shard/net_accept.c share: the net thread's state and
 * the steps of a connection's set-up both sides run. Nothing outside these
 * two files includes it. */
#ifndef SHARD_NET_INTERNAL_H
#define SHARD_NET_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shard/auth.h"
#include "shard/gate.h"
#include "shard/net.h"
#include "shard/shard.h"
#include "shard/tls.h"
#include "shard/wire.h"

enum {
	NET_REFUSAL_GATE = TLS_REFUSAL_COUNT, /* Past the gate's bounds (a log cause). */
	NET_HANDSHAKE_TIMEOUT_MS = 2000,      /* The whole set-up of a connection, by default. */
	NET_CONNECT_TIMEOUT_MS = 500,
	NET_DIALS_MAX = 1024,
	NET_DIALS_RUNNING_MAX = 16, /* Dials set up at once, each on its own thread. */
	NET_SOCKET_BUFFER = 4 << 20,
	NET_IDENT_REFUSE_MS = 5000, /* A refused incarnation is refused again without a probe. */
	NET_IDENT_LOG_MS = 5000,    /* At most one identity log line per peer this often. */
};

/* What this node knows of a peer's identity. Under peers_lock. */
struct net_ident {
	uint64_t incarnation;      /* Known; 0: none seen yet. */
	uint64_t refused;          /* The incarnation refused last, */
	uint64_t refused_until_ms; /* until then without another probe. */
	uint64_t logged_ms;        /* The last identity log line about the peer. */
};

struct net_dial {
	uint32_t shard_index;
	uint64_t peer;
};

/* One entry of the address book as the net threads use it (id 0: a free
 * slot). Under peers_lock: the node changes it at run time. */
struct net_peer {
	uint64_t id;
	char addr[FL_ADDR_SIZE_MAX];
	char client_addr[WIRE_ADDR_NOTE_TEXT_MAX + 1]; /* Its address note; "": none yet. */
	struct net_ident ident;
};

struct node_net {
	struct node_net_config config;
	struct net_peer peers[FL_PEERS_MAX];
	char client_note[WIRE_ADDR_NOTE_SIZE]; /* Ours, sent when we dial (config.client_addr). */
	/* The address book and the identities: accept and dial threads read
	 * and note them, the node changes them. Held briefly, never across I/O. */
	pthread_mutex_t peers_lock;
	struct shard **shards;
	int listen_fd;
	int wake_fd[2]; /* A pipe: dial requests and stop wake the poll. */
	uint16_t port;
	pthread_t accept_thread, dial_thread;
	pthread_cond_t dial_cond;
	_Atomic bool stopping;
	_Atomic bool ready;   /* Every shard is running: accept connections. */
	pthread_mutex_t lock; /* Guards the dial queue (not the replication path). */
	struct net_dial dials[NET_DIALS_MAX];
	uint32_t dials_count;
	uint32_t dials_running;     /* Dial threads under way (under lock), */
	pthread_cond_t dials_ended; /* signalled as each ends. */
	struct gate gate;           /* Accepted set-ups under way, and the refusal lines. */
};

/* One accepted connection being set up, on its own thread (see SET-UP). */
struct net_setup {
	struct node_net *net;
	int fd;
	char host[GATE_HOST_SIZE];      /* Its source address, */
	char from[GATE_HOST_SIZE + 16]; /* and with the port, for the log. */
};

void net_socket_tune(int fd);
uint64_t net_now_ms(void);
/* A channel for one connection's set-up, its deadline starting now. */
struct tls_chan net_chan(struct node_net *net, int fd);
/* Check a peer's handshake. Returns NULL if fine, else why it is refused. */
const char *net_handshake_check(struct node_net *net, const struct wire_handshake *hs,
				uint64_t expect_node, uint32_t expect_shard);
/* Our handshake for shard_index with flags, encoded into buf. */
void net_handshake_ours(const struct node_net *net, uint32_t shard_index, uint32_t flags,
			uint8_t *buf);
/* The shared-key proofs (shard/auth.c) over ch. Returns 0, -EACCES, -errno. */
int net_auth_exchange(const struct node_net *net, struct tls_chan *ch, enum auth_role role,
		      const uint8_t *hs_ours, const uint8_t *hs_theirs, uint8_t *session_key);
/* Give req (a connection, or a failed dial) to its shard; freed if refused. */
void net_hand_over(struct node_net *net, uint32_t shard_index, struct shard_req *req);
/* Count a refused connection and log why (every time). */
void net_refused(struct node_net *net, const char *why);
/* A refusal in TLS mode: counted, and logged at most once per source host
 * and cause every GATE_LOG_MS. cause: an enum tls_refusal or
 * NET_REFUSAL_GATE; from says where from, for the log. */
void net_refused_tls(struct node_net *net, const char *host, const char *from, uint32_t cause,
		     const char *why);
/* Peer id told us its client address. */
void net_note_client_addr(struct node_net *net, uint64_t id, const char *client_addr);
/* Whether an accepted connection with handshake hs comes from the peer we
 * know under its node id (PEER IDENTITY in net.c). May probe the peer. */
bool net_ident_admit(struct node_net *net, const struct wire_handshake *hs, int fd);
/* The peer answered with incarnation at its address, or was admitted. */
void net_ident_note(struct node_net *net, uint64_t peer, uint64_t incarnation);

/* net_accept.c: accept one connection on the listen socket and start its
 * set-up on a thread of its own (the accept thread calls it). */
void net_accept(struct node_net *net);

#endif /* SHARD_NET_INTERNAL_H */
