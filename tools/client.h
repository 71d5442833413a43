/* Flotilla's client protocol (docs/client-protocol.md): the codec shared by
 * flotilla-node and its clients, one pipelined connection (struct client),
 * and a router over the nodes of a cluster that sends each request to its
 * group's leader and follows NOT_LEADER hints (struct client_router).
 *
 * Nothing here is thread-safe: use one client or router per thread. */
#ifndef TOOLS_CLIENT_H
#define TOOLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* REQUEST, little-endian; size counts the bytes after the size field.
 *    0: u32 size           at least 20, at most CLIENT_REQUEST_SIZE_MAX
 *    4: u32 op             CLIENT_OP_*
 *    8: u64 request_id     chosen by the client, echoed in the response
 *   16: u64 group
 *   24: body, by op:
 *       PUT        u32 key_size | u32 value_size | key | value
 *       GET        u32 key_size | key
 *       DELETE     u32 key_size | key
 *       CAS        u32 key_size | u32 expected_size | u32 value_size | key | expected | value
 *                  (expected_size CLIENT_ABSENT: the key must be absent; no expected bytes)
 *       LEADER     empty
 *       LOCAL_GET  u32 key_size | key   (debug: this node's state, no read barrier)
 *       STALE_GET  u32 key_size | u64 behind_max | u64 age_max_ms | key
 *                                       (this node's state, no barrier, bounded: 0 no bound)
 *       DIGEST     empty                (debug: this node's apply record, no read barrier)
 *       CHECK      empty                (a consistency check of the group; leader only)
 *       CORRUPT    u32 key_size | u32 value_size | key | value
 *                                       (tests only: set key in this node's copy alone)
 *       CHECK_STATUS empty              (this node's check and divergence counters)
 *       REBUILD    empty                (restore this node's copy from the leader's snapshot)
 *       JOIN, MEMBERS, DROP                       empty   (this node: membership admin)
 *       ADD_LEARNER, PROMOTE, REMOVE_MEMBER, TRANSFER  u64 member   (the group's leader)
 *       NODE_STATUS  empty              (this node's groups, leaders, repairs, disk; no group)
 *       SNAPSHOT     empty              (snapshot this node's copy of the group now)
 *       RECOVER      u32 flags          (make this node's replica the group's single
 *                                        voter: lost majority; bit 0 force)
 *       PEERS        empty              (this node's address book; no group)
 *       SET_PEER     u64 id | u32 addr_size | addr   (add a node or change its address)
 *       REMOVE_PEER  u64 id             (forget a node)
 * RESPONSE, little-endian:
 *    0: u32 size           24 + value_size
 *    4: u32 status         CLIENT_STATUS_*
 *    8: u64 request_id
 *   16: u64 leader_hint    leader's node id if known, else 0
 *   24: u32 value_size
 *   28: value */
#define CLIENT_REQUEST_SIZE_MAX     (16u << 20)
#define CLIENT_RESPONSE_SIZE_MAX    (16u << 20)
#define CLIENT_KEY_SIZE_MAX         (64u << 10)
#define CLIENT_ABSENT               UINT32_MAX
#define CLIENT_REQUEST_HEADER_SIZE  24 /* Including the size field. */
#define CLIENT_RESPONSE_HEADER_SIZE 28 /* Including the size field. */
#define CLIENT_NODES_MAX            16
#define CLIENT_ADDR_SIZE_MAX        64

enum {
	CLIENT_OP_PUT = 1,
	CLIENT_OP_GET = 2,
	CLIENT_OP_DELETE = 3,
	CLIENT_OP_CAS = 4,
	CLIENT_OP_LEADER = 5,
	CLIENT_OP_LOCAL_GET = 6,
	CLIENT_OP_DIGEST = 7,
	CLIENT_OP_CHECK = 8,
	CLIENT_OP_CORRUPT = 9,
	CLIENT_OP_CHECK_STATUS = 10,
	CLIENT_OP_REBUILD = 11,
	CLIENT_OP_JOIN = 12,
	CLIENT_OP_ADD_LEARNER = 13,
	CLIENT_OP_PROMOTE = 14,
	CLIENT_OP_REMOVE_MEMBER = 15,
	CLIENT_OP_TRANSFER = 16,
	CLIENT_OP_MEMBERS = 17,
	CLIENT_OP_DROP = 18,
	CLIENT_OP_STALE_GET = 19,
	CLIENT_OP_LAST = CLIENT_OP_STALE_GET,
	/* Operator ops, numbered from 40 (19 to 39 are left to the data ops). */
	CLIENT_OP_NODE_STATUS = 40,
	CLIENT_OP_SNAPSHOT = 41,
	CLIENT_OP_PEERS = 42,
	CLIENT_OP_SET_PEER = 43,
	CLIENT_OP_REMOVE_PEER = 44,
	CLIENT_OP_RECOVER = 45,
	CLIENT_OP_ADD_WITNESS = 46, /* Membership: add member as a witness (fl_add_witness). */
};

#define CLIENT_RECOVER_FORCE 1u /* RECOVER flags: even though a quorum seems reachable. */

enum {
	CLIENT_STATUS_OK = 0,
	CLIENT_STATUS_NOT_FOUND = 1,
	CLIENT_STATUS_NOT_LEADER = 2,
	CLIENT_STATUS_CAS_MISMATCH = 3,
	CLIENT_STATUS_ERROR = 4,
	CLIENT_STATUS_BAD_REQUEST = 5,
	CLIENT_STATUS_RETRY = 6,    /* Membership ops: not now (change pending, learner behind). */
	CLIENT_STATUS_NO_SPACE = 7, /* A write refused: the leader's disk is full; not done. */
	CLIENT_STATUS_STALE = 8,    /* STALE_GET past its bounds: the figures say how far. */
	CLIENT_STATUS_GROUPS_FULL = 9,   /* JOIN refused: the node hosts --groups-max groups. */
	CLIENT_STATUS_REFUSED = 10,      /* RECOVER not done: the text says why (a quorum is
					  * reachable, or this replica cannot carry the group). */
	CLIENT_STATUS_PEER_REFUSED = 11, /* SET_PEER, REMOVE_PEER: refused, nothing changed. */
	CLIENT_STATUS_WITNESS = 12,      /* A read sent to a witness: it holds no data; read
					  * elsewhere (leader_hint names the leader). */
	CLIENT_STATUS_FORBIDDEN = 13,    /* The op needs the admin role; this connection's
					  * certificate has the data role. Nothing was done. */
	CLIENT_STATUS_BUSY = 14,         /* A read's answer not kept: the node's client buffers
					  * are full; nothing was done, retry later. */
	CLIENT_STATUS_LAST = CLIENT_STATUS_BUSY,
};

/* A request. Pointers are borrowed (encode) or point into the decoded buffer
 * (decode); fields an op does not use are 0/NULL. */
struct client_request {
	uint32_t op;
	uint64_t request_id;
	uint64_t group;
	const void *key;
	const void *expected;
	const void *value;
	uint32_t key_size;
	uint32_t expected_size; /* CAS; CLIENT_ABSENT: the key must be absent. */
	uint32_t value_size;
	uint64_t
	    member; /* ADD_LEARNER, PROMOTE, REMOVE_MEMBER, ADD_WITNESS: the node; TRANSFER:
		     * the target; SET_PEER, REMOVE_PEER: the node (SET_PEER's address in key). */
	uint64_t behind_max, age_max_ms; /* STALE_GET's bounds; 0: none. */
	uint32_t flags;                  /* RECOVER: CLIENT_RECOVER_FORCE. */
};

struct client_response {
	uint32_t status;
	uint64_t request_id;
	uint64_t leader_hint;
	const void *value; /* Borrowed from the decoded buffer. */
	uint32_t value_size;
};

/* Encoded bytes of req, size field included; 0 when req breaks a limit
 * (unknown op, key over CLIENT_KEY_SIZE_MAX, size over CLIENT_REQUEST_SIZE_MAX). */
uint32_t client_request_size(const struct client_request *req);

/* Write req into buf, which holds client_request_size(req) bytes (not 0). */
void client_request_encode(const struct client_request *req, void *buf);

/* Decode the request at the front of buf, which holds size bytes. Returns the
 * bytes it takes (> 0), 0 when buf holds only part of it, or -EBADMSG when it
 * is malformed. On -EBADMSG, req->request_id is the request's id when its
 * bytes are in buf, else 0. A size field over the limit fails at once, without
 * waiting for the body. */
int client_request_decode(const void *buf, size_t size, struct client_request *req);

/* Why a request was refused (client_request_decode_why): the text of its
 * BAD_REQUEST, naming the field and the limit, and whether the connection
 * can go on. A framing error (size out of range, a body whose length
 * disagrees with its fields, an unknown op whose body cannot be checked)
 * leaves the stream out of step: skip is 0 and the connection must close.
 * A well-framed request refused for its content (a key over
 * CLIENT_KEY_SIZE_MAX) has skip = its length: skip it and go on. */
struct client_refusal {
	char text[200];
	uint32_t skip;
};

/* client_request_decode(), and on -EBADMSG r says why and whether to close. */
int client_request_decode_why(const void *buf, size_t size, struct client_request *req,
			      struct client_refusal *r);

/* The name of op ("PUT"), or NULL for an unknown op. */
const char *client_op_name(uint32_t op);

/* Encoded bytes of a response carrying value_size bytes. */
uint32_t client_response_size(uint32_t value_size);

/* Write resp into buf, which holds client_response_size(resp->value_size) bytes. */
void client_response_encode(const struct client_response *resp, void *buf);

/* Same contract as client_request_decode(), for responses. */
int client_response_decode(const void *buf, size_t size, struct client_response *resp);

/* Parse "host:port" (IPv4 or a name that resolves to one) into *addr, a
 * struct sockaddr_in. Returns 0 or -EINVAL. */
struct sockaddr_in;
int client_parse_addr(const char *text, struct sockaddr_in *addr);

/* One connection with pipelined requests: queue any number with
 * client_send(), push them with client_flush(), take responses in whatever
 * order the server sends them with client_receive()/client_wait(). The
 * socket is non-blocking; fd may go into the caller's poll/epoll set. */
struct client {
	int fd;    /* -1 when closed. */
	void *tls; /* SSL *: TLS (client_tls_setup); NULL: plaintext. */
	unsigned char *in;
	uint32_t in_size; /* Capacity. */
	uint32_t in_start, in_end;
	unsigned char *out;
	uint32_t out_size; /* Capacity. */
	uint32_t out_start, out_end;
};

/* Connect to addr ("host:port") within timeout_ms, with TLS when it is set
 * up (the handshake within the same timeout). Returns 0, -EINVAL (bad
 * address), -ETIMEDOUT, -ENOMEM, -errno from connect (-ECONNREFUSED) or
 * -EPROTO (TLS failed: client_error_text() says why). */
int client_connect(struct client *c, const char *addr, int timeout_ms);

/* Close the connection and free its buffers; safe to call twice. */
void client_close(struct client *c);

/* Queue req for sending. Returns 0, -EINVAL (req breaks a limit) or -ENOMEM. */
int client_send(struct client *c, const struct client_request *req);

/* Queue size bytes as they are (tests: malformed requests), sent like a
 * request, through TLS on a TLS connection. Returns 0 or -ENOMEM. */
int client_send_bytes(struct client *c, const void *bytes, size_t size);

/* Write what the socket takes. Returns 0 (all sent), -EAGAIN (some left:
 * wait for POLLOUT) or -errno (the connection is unusable). */
int client_flush(struct client *c);

/* Whether queued bytes wait to be written. */
bool client_has_output(const struct client *c);

/* Read what the socket has. Returns the bytes read (> 0), -EAGAIN (nothing
 * yet), -ECONNRESET (closed by the server) or -errno. Invalidates the value
 * pointers of responses taken before. */
int client_read(struct client *c);

/* Take the next response already read. Returns 1 (*resp is valid until the
 * next client_read/client_wait on c), 0 (none complete yet) or -EBADMSG. */
int client_receive(struct client *c, struct client_response *resp);

/* Flush, then wait up to timeout_ms for one response. Returns 0, -ETIMEDOUT,
 * -EBADMSG or -errno from the socket. */
int client_wait(struct client *c, struct client_response *resp, int timeout_ms);

/* TLS and roles (tools/client_tls.c; docs/security.md).
 *
 * Set the process's client TLS: the CA that node certificates chain to, and
 * this client's certificate and key (PEM files). A NULL or empty argument
 * falls back to FLOTILLA_TLS_CA, FLOTILLA_TLS_CERT, FLOTILLA_TLS_KEY; with
 * no CA at all, connections are plaintext. Without a call, the first
 * connect reads the environment. Call before threads connect. Returns 0 or
 * -EINVAL with err saying why. */
int client_tls_setup(const char *ca, const char *cert, const char *key, char *err, size_t err_size);

/* Whether connections use TLS (or would, and the settings are broken). */
bool client_tls_enabled(void);

/* strerror(-rv), or for -EPROTO the sentence of this thread's last TLS failure. */
const char *client_error_text(int rv);

/* Roles, from the OU of a certificate's subject. Plaintext connections to
 * a node have the admin role. */
enum {
	CLIENT_ACCESS_NONE = 0,
	CLIENT_ACCESS_DATA = 1,  /* OU data: the data ops and read-only inspection. */
	CLIENT_ACCESS_ADMIN = 2, /* OU admin: every op. */
	CLIENT_ACCESS_NODE = 3,  /* OU node: a node's certificate (peers; not a client). */
};

/* "data", "admin", "node" or "none". */
const char *client_role_name(uint32_t role);

/* The role op needs: CLIENT_ACCESS_DATA or CLIENT_ACCESS_ADMIN (unknown ops). */
uint32_t client_op_role(uint32_t op);

/* Whether a connection with role may run op. */
bool client_role_allows(uint32_t role, uint32_t op);

/* The text of the FORBIDDEN answer to op on a connection with role: the op
 * and the role it needs. */
void client_forbidden_text(uint32_t op, uint32_t role, char *buf, size_t size);

/* The role of a certificate (an X509 *): its subject's only OU, or
 * CLIENT_ACCESS_NONE (no OU, two, or another name). */
uint32_t client_tls_cert_role(const void *x509);

/* The same for DER bytes (CLIENT_ACCESS_NONE when they do not parse). */
uint32_t client_tls_der_role(const void *der, size_t size);

/* A request to run through the router, and its outcome. */
struct client_call {
	struct client_request req; /* In; the router sets req.request_id. */
	int rv;                    /* Out: 0 (answered), -ETIMEDOUT, -ECONNRESET, -EINVAL. */
	uint32_t status;           /* Out, when rv is 0: CLIENT_STATUS_*. */
	uint64_t node;             /* Out: the node that answered. */
	uint64_t leader_hint;      /* Out: the answer's leader hint. */
	void *value;               /* Out: malloc()ed copy; free with client_call_clear(). */
	uint32_t value_size;
	/* Private to the router. */
	uint64_t sent_id;
	uint64_t retry_at_ms;
	uint32_t attempts;
	bool done;
};

struct client_node {
	uint64_t id;
	char addr[CLIENT_ADDR_SIZE_MAX];
	struct client conn;
	uint64_t down_until_ms; /* Do not reconnect before. */
	bool tls_told;          /* A TLS failure connecting to it was reported. */
};

/* The nodes of a cluster and the leader of each group as last heard. */
struct client_router {
	struct client_node nodes[CLIENT_NODES_MAX];
	uint32_t nodes_count;
	uint64_t *leaders; /* Direct-mapped cache: slot group % leaders_slots. */
	uint64_t *leaders_group;
	uint32_t leaders_slots;
	uint64_t run_seq; /* Tells this run's responses from late ones of an older run. */
};

/* spec: "ID=HOST:PORT,ID=HOST:PORT,..." or "HOST:PORT,..." (ids 1, 2, ... in
 * order). Connects lazily. Returns 0, -EINVAL or -ENOMEM. */
int client_router_init(struct client_router *r, const char *spec);
void client_router_deinit(struct client_router *r);

/* Cached leader of group, 0 if unknown; and the setter (0 forgets). */
uint64_t client_router_leader(const struct client_router *r, uint64_t group);
void client_router_set_leader(struct client_router *r, uint64_t group, uint64_t node);

/* The connection to node id, connected now if needed; NULL when the node is
 * unknown or unreachable (then not retried for a short while). */
struct client *client_router_conn(struct client_router *r, uint64_t node);

/* Run calls, pipelined: each goes to its group's leader as last heard (or to
 * the nodes in turn), NOT_LEADER answers are sent again to the hinted leader,
 * NO_SPACE answers (nothing was done) again after a backoff, to whichever
 * node leads by then, and everything ends within timeout_ms. With idempotent, an ERROR answer
 * or a lost connection also leads to a retry (safe for PUT with a fixed value,
 * GET, LEADER; not for CAS or DELETE, whose retry may see their own effect).
 * Returns the count of calls that got an answer (rv 0); see each call's rv. */
uint32_t client_router_run(struct client_router *r, struct client_call *calls, uint32_t count,
			   bool idempotent, int timeout_ms);

/* Free a call's value and reset its outcome, keeping req. */
void client_call_clear(struct client_call *call);

/* DIGEST ANSWER VALUE: what the group's state machine applied on the answering
 * node, little-endian (docs/client-protocol.md, op 7):
 *    0: u64 applied_count       entries applied
 *    8: u64 last_applied_index  index of the last one (0: none)
 *   16: u64 digest              chain hash over every applied (index, term, payload)
 *   24: u64 order_violations    applied entries whose index did not exceed the previous
 *   32: u64 keys_count          keys in the group's map */
#define CLIENT_DIGEST_SIZE 40

struct client_digest {
	uint64_t applied_count;
	uint64_t last_applied_index;
	uint64_t digest;
	uint64_t order_violations;
	uint64_t keys_count;
};

/* Write digest into buf, which holds CLIENT_DIGEST_SIZE bytes. */
void client_digest_encode(const struct client_digest *digest, void *buf);

/* Parse a DIGEST answer's value. Returns 0, or -EBADMSG unless size is
 * CLIENT_DIGEST_SIZE. */
int client_digest_decode(const void *value, uint32_t size, struct client_digest *digest);

/* MEMBERS ANSWER VALUE: the group's membership as the answering node sees it,
 * little-endian (docs/client-protocol.md, op 17):
 *    0: u64 leader          0 if unknown
 *    8: u64 term
 *   16: u64 commit_index
 *   24: u64 last_index
 *   32: u64 conf_index      log index of the membership in force
 *   40: u32 flags           bit 0: the answering node leads; bit 1: joint;
 *                           bit 2: its replica repairs; bit 3: its replica diverged
 *   44: u32 members_count   at most CLIENT_MEMBERS_MAX
 *   48: members_count times 24 bytes:
 *       u64 id | u64 match (known on the leader only) | u32 role | u32 role_old
 * Roles: 0 none, 1 voter, 2 learner, 3 witness. */
#define CLIENT_MEMBERS_MAX         16
#define CLIENT_MEMBERS_HEADER_SIZE 48
#define CLIENT_MEMBER_SIZE         24
#define CLIENT_MEMBERS_LEADER      1u
#define CLIENT_MEMBERS_JOINT       2u
#define CLIENT_MEMBERS_REPAIRING   4u /* This replica repairs lost data (or repairs block it). */
#define CLIENT_MEMBERS_DIVERGED    8u /* A check found this replica's state differs. */

enum { CLIENT_ROLE_NONE, CLIENT_ROLE_VOTER, CLIENT_ROLE_LEARNER, CLIENT_ROLE_WITNESS };

struct client_member {
	uint64_t id;
	uint64_t match;
	uint32_t role;
	uint32_t role_old;
};

struct client_members {
	uint64_t leader;
	uint64_t term;
	uint64_t commit_index;
	uint64_t last_index;
	uint64_t conf_index;
	uint32_t flags;
	uint32_t members_count;
	struct client_member members[CLIENT_MEMBERS_MAX];
};

/* Encoded bytes of m (its members_count must be at most CLIENT_MEMBERS_MAX). */
uint32_t client_members_size(const struct client_members *m);
void client_members_encode(const struct client_members *m, void *buf);
/* Parse a MEMBERS answer's value. Returns 0 or -EBADMSG. */
int client_members_decode(const void *value, uint32_t size, struct client_members *m);
/* The role of node id in m's configuration in force (new half while joint). */
uint32_t client_members_role(const struct client_members *m, uint64_t id);

/* STALE_GET ANSWER VALUE: how stale the answering replica may be, then (OK
 * only) the key's value, little-endian (docs/client-protocol.md, op 19):
 *    0: u64 applied_index   the replica's state is the committed log up to here
 *    8: u64 leader_commit   a commit index the leader reached, as last learned
 *   16: u64 entries_behind  leader_commit - applied_index
 *   24: u64 contact_age_ms  since that was confirmed; UINT64_MAX: never
 *   32: the value (OK), nothing (NOT_FOUND, STALE) */
#define CLIENT_STALE_SIZE 32

struct client_stale {
	uint64_t applied_index;
	uint64_t leader_commit;
	uint64_t entries_behind;
	uint64_t contact_age_ms;
};

/* Write st into buf, which holds CLIENT_STALE_SIZE bytes. */
void client_stale_encode(const struct client_stale *st, void *buf);
/* Parse the figures at the front of a STALE_GET answer's value (the key's
 * value follows them). Returns 0, or -EBADMSG when size is under
 * CLIENT_STALE_SIZE. */
int client_stale_decode(const void *value, uint32_t size, struct client_stale *st);
/* NODE_STATUS ANSWER VALUE: the answering node as a whole, little-endian
 * (docs/client-protocol.md, op 40). Gauges are up to a second old.
 *    0: u64 node_id
 *    8: u64 groups                   hosted here
 *   16: u64 leaders                  groups this node leads
 *   24: u64 leaderless               groups whose leader this node does not know
 *   32: u64 repairing                groups whose replica here repairs lost data
 *   40: u64 checks                   consistency checks compared here since start
 *   48: u64 divergences              groups found diverged here since start
 *   56: u64 lag_max                  led groups: most entries a member is behind
 *   64: u64 writes_refused_no_space  since start
 *   72: u32 shards_count
 *   76: u32 shards_no_space          shards whose WAL file system is full now */
#define CLIENT_NODE_STATUS_SIZE 80

struct client_node_status {
	uint64_t node_id;
	uint64_t groups;
	uint64_t leaders;
	uint64_t leaderless;
	uint64_t repairing;
	uint64_t checks;
	uint64_t divergences;
	uint64_t lag_max;
	uint64_t writes_refused_no_space;
	uint32_t shards_count;
	uint32_t shards_no_space;
};

/* Write st into buf, which holds CLIENT_NODE_STATUS_SIZE bytes. */
void client_node_status_encode(const struct client_node_status *st, void *buf);

/* Parse a NODE_STATUS answer's value. Returns 0, or -EBADMSG when size is
 * smaller than CLIENT_NODE_STATUS_SIZE (a larger value is a newer node's:
 * the known fields are read). */
int client_node_status_decode(const void *value, uint32_t size, struct client_node_status *st);

/* RECOVER ANSWER VALUE: what the forced recovery did on the answering node,
 * little-endian (docs/client-protocol.md, op 45):
 *    0: u64 term_before     the replica's term before
 *    8: u64 term            its term after: it leads the group in it
 *   16: u64 commit_before   known committed before: kept
 *   24: u64 last_before     its last entry before; commit_before + 1 .. last_before
 *                           are committed now without a majority's acknowledgement
 *   32: u64 conf_index      index of the single-voter configuration entry
 *   40: u32 dropped_count   at most CLIENT_MEMBERS_MAX
 *   44: u32 0
 *   48: dropped_count times u64: the members dropped
 * The index range possibly lost starts at commit_before + 1. */
#define CLIENT_RECOVER_HEADER_SIZE 48

struct client_recover {
	uint64_t term_before;
	uint64_t term;
	uint64_t commit_before;
	uint64_t last_before;
	uint64_t conf_index;
	uint32_t dropped_count;
	uint64_t dropped[CLIENT_MEMBERS_MAX];
};

/* Encoded bytes of r (its dropped_count must be at most CLIENT_MEMBERS_MAX). */
uint32_t client_recover_size(const struct client_recover *r);
void client_recover_encode(const struct client_recover *r, void *buf);
/* Parse a RECOVER answer's value. Returns 0 or -EBADMSG. */
int client_recover_decode(const void *value, uint32_t size, struct client_recover *r);

/* PEERS ANSWER VALUE: the answering node's address book, little-endian
 * (docs/client-protocol.md, op 42):
 *    0: u32 count           entries that follow (the node itself first)
 *    4: u32 reserved        0
 *    8: entries, each
 *       u64 id | u32 flags | u16 addr_size | u16 client_addr_size | addr | client_addr
 *       flags: CLIENT_PEER_* */
#define CLIENT_PEERS_HEADER_SIZE 8
#define CLIENT_PEER_HEADER_SIZE  16
#define CLIENT_PEER_ADDR_MAX     255 /* Bytes of addr. */
#define CLIENT_PEER_CLIENT_MAX   115 /* Bytes of client_addr. */
#define CLIENT_PEERS_MAX         65  /* The node and its FL_PEERS_MAX peers. */

enum {
	CLIENT_PEER_SELF = 1u << 0,          /* The answering node itself. */
	CLIENT_PEER_CONNECTED_OUT = 1u << 1, /* Its connections to this peer are up. */
	CLIENT_PEER_CONNECTED_IN = 1u << 2,  /* This peer's connections to it are up. */
};

struct client_peer {
	uint64_t id;
	uint32_t flags;
	char addr[CLIENT_PEER_ADDR_MAX + 1];          /* Its peer listener. */
	char client_addr[CLIENT_PEER_CLIENT_MAX + 1]; /* "": not known. */
};

/* Bytes the PEERS value of count peers takes (at most). */
#define CLIENT_PEERS_SIZE_MAX(count)                                                               \
	(CLIENT_PEERS_HEADER_SIZE +                                                                \
	 (count) * (CLIENT_PEER_HEADER_SIZE + CLIENT_PEER_ADDR_MAX + CLIENT_PEER_CLIENT_MAX))

/* Write count peers into buf (CLIENT_PEERS_SIZE_MAX(count) bytes); returns
 * the bytes written. */
uint32_t client_peers_encode(const struct client_peer *peers, uint32_t count, void *buf);

/* Parse a PEERS answer's value into up to max peers; *count gets how many
 * it holds. Returns 0, or -EBADMSG when it is malformed. */
int client_peers_decode(const void *value, uint32_t size, struct client_peer *peers, uint32_t max,
			uint32_t *count);

/* Room for need more bytes at *end of the buffer *buf (*capacity bytes, live
 * bytes from *start to *end), moving the live bytes to the front first and
 * growing to at least capacity_min. Returns 0 or -ENOMEM. Shared by the
 * client's and the server's connection buffers. */
int client_reserve(unsigned char **buf, uint32_t *capacity, uint32_t *start, uint32_t *end,
		   uint64_t need, uint32_t capacity_min);

#endif /* TOOLS_CLIENT_H */
