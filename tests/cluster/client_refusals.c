/* flotilla-refusals: the client port's refusals, one by one, against a
 * running single-node cluster that leads group 1 (tests/cluster/
 * test_client_refusals.sh starts it):
 *
 *   flotilla-refusals HOST:PORT
 *
 * Each refusal must carry its own text, naming the field and the limit, and
 * leave the connection open or closed as docs/client-protocol.md says: a
 * well-framed request refused for its content keeps it (the same connection
 * then answers LEADER), a framing error closes it. Prints one line per case;
 * exits 0 when all pass, 1 otherwise, 2 on bad usage. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/le.h"
#include "tools/client.h"

#define REFUSALS_WAIT_MS 10000

struct refusal_case {
	const char *what;
	uint32_t status;  /* Expected. */
	const char *text; /* Expected within the answer's text. */
	bool closes;      /* The server closes the connection after it. */
};

/* A request as bytes: header, then body_size bytes of body. */
static unsigned char *refusals_frame(uint32_t size_field, uint32_t op, uint64_t group,
				     uint32_t body_size, size_t *out_size)
{
	unsigned char *buf = calloc(1, CLIENT_REQUEST_HEADER_SIZE + (size_t)body_size);

	if (buf == NULL)
		return NULL;
	le_put32(buf, size_field);
	le_put32(buf + 4, op);
	le_put64(buf + 8, 42); /* request_id */
	le_put64(buf + 16, group);
	*out_size = CLIENT_REQUEST_HEADER_SIZE + (size_t)body_size;
	return buf;
}

/* Queue bytes on c as they are and write them out: through the client's
 * own output path, so a TLS connection carries them like any request. */
static bool refusals_send(struct client *c, const unsigned char *bytes, size_t size)
{
	uint64_t deadline = (uint64_t)time(NULL) + REFUSALS_WAIT_MS / 1000;
	int rv;

	if (client_send_bytes(c, bytes, size) != 0)
		return false;
	while ((rv = client_flush(c)) == -EAGAIN && (uint64_t)time(NULL) <= deadline) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};

		poll(&pfd, 1, 100);
	}
	return rv == 0;
}

/* LEADER of group 1 on c: whether it answers OK (the connection is alive). */
static bool refusals_alive(struct client *c, uint64_t *leader)
{
	struct client_request req = {.op = CLIENT_OP_LEADER, .request_id = 7, .group = 1};
	struct client_response resp;

	if (client_send(c, &req) != 0 || client_wait(c, &resp, REFUSALS_WAIT_MS) != 0)
		return false;
	if (leader != NULL)
		*leader = resp.leader_hint;
	return resp.status == CLIENT_STATUS_OK;
}

/* Send bytes on a fresh connection and check the answer against want. */
static int refusals_check(const char *addr, const struct refusal_case *want,
			  const unsigned char *bytes, size_t size)
{
	struct client c;
	struct client_response resp;
	char text[256] = "";
	int rv = client_connect(&c, addr, REFUSALS_WAIT_MS);
	bool ok;

	if (rv != 0) {
		printf("FAIL %s: cannot connect (%d)\n", want->what, rv);
		return 1;
	}
	if (!refusals_send(&c, bytes, size) || client_wait(&c, &resp, REFUSALS_WAIT_MS) != 0) {
		printf("FAIL %s: no answer\n", want->what);
		client_close(&c);
		return 1;
	}
	snprintf(text, sizeof(text), "%.*s", (int)resp.value_size,
		 resp.value != NULL ? (const char *)resp.value : "");
	ok = resp.status == want->status && strstr(text, want->text) != NULL;
	if (!ok) {
		printf("FAIL %s: status %u \"%s\", want status %u with \"%s\"\n", want->what,
		       resp.status, text, want->status, want->text);
		client_close(&c);
		return 1;
	}
	if (want->closes) {
		rv = client_wait(&c, &resp, REFUSALS_WAIT_MS);
		ok = rv == -ECONNRESET;
	} else {
		ok = refusals_alive(&c, NULL);
	}
	client_close(&c);
	printf("%s %s: \"%s\", connection %s\n", ok ? "ok" : "FAIL", want->what, text,
	       want->closes ? (ok ? "closed" : "NOT closed") : (ok ? "open" : "NOT open"));
	return ok ? 0 : 1;
}

/* Wait until the node leads group 1 (one voter: it elects itself). */
static int refusals_wait_leader(const char *addr)
{
	for (int i = 0; i < REFUSALS_WAIT_MS / 100; i++) {
		struct client c;
		uint64_t leader = 0;
		bool led = false;

		if (client_connect(&c, addr, REFUSALS_WAIT_MS) == 0) {
			led = refusals_alive(&c, &leader) && leader != 0;
			client_close(&c);
		}
		if (led)
			return 0;
		nanosleep(&(struct timespec){.tv_nsec = 100 * 1000000}, NULL);
	}
	printf("FAIL: group 1 has no leader\n");
	return 1;
}

int main(int argc, char **argv)
{
	static const struct refusal_case cases[] = {
	    {"JOIN of group 0", CLIENT_STATUS_BAD_REQUEST,
	     "group 0 is out of range: groups are numbered from 1", false},
	    {"GET of a 70000-byte key", CLIENT_STATUS_BAD_REQUEST,
	     "key of 70000 bytes exceeds the 65536-byte limit", false},
	    {"PUT over --entry-size-max", CLIENT_STATUS_ERROR,
	     "write of 2097169 bytes (key, value and 16 bytes of header) exceeds "
	     "--entry-size-max 1048576",
	     false},
	    {"REBUILD on the leader", CLIENT_STATUS_ERROR,
	     "this node leads group 1: move leadership first (TRANSFER", false},
	    {"unknown op 77", CLIENT_STATUS_BAD_REQUEST, "unknown op 77", true},
	    {"GET body one byte too long", CLIENT_STATUS_BAD_REQUEST,
	     "GET body of 8 bytes, but key_size 3 makes 7", true},
	    {"size over 16 MiB", CLIENT_STATUS_BAD_REQUEST,
	     "request size 16777217 exceeds the 16777216-byte limit", true},
	    {"size under 20", CLIENT_STATUS_BAD_REQUEST,
	     "request size 3 is below the 20-byte minimum", true},
	};
	const uint32_t big_value = 2u << 20;
	unsigned char *frames[8];
	size_t sizes[8];
	int failed = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: flotilla-refusals HOST:PORT\n");
		return 2;
	}
	if (refusals_wait_leader(argv[1]) != 0)
		return 1;
	frames[0] = refusals_frame(20, CLIENT_OP_JOIN, 0, 0, &sizes[0]);
	frames[1] = refusals_frame(20 + 4 + 70000, CLIENT_OP_GET, 1, 4 + 70000, &sizes[1]);
	frames[2] =
	    refusals_frame(20 + 8 + 1 + big_value, CLIENT_OP_PUT, 1, 8 + 1 + big_value, &sizes[2]);
	frames[3] = refusals_frame(20, CLIENT_OP_REBUILD, 1, 0, &sizes[3]);
	frames[4] = refusals_frame(20, 77, 1, 0, &sizes[4]);
	frames[5] = refusals_frame(20 + 8, CLIENT_OP_GET, 1, 8, &sizes[5]);
	frames[6] = refusals_frame(CLIENT_REQUEST_SIZE_MAX + 1, CLIENT_OP_GET, 1, 0, &sizes[6]);
	frames[7] = refusals_frame(3, CLIENT_OP_GET, 1, 0, &sizes[7]);
	for (int i = 0; i < 8; i++)
		if (frames[i] == NULL)
			return 2;
	le_put32(frames[1] + 24, 70000);
	le_put32(frames[2] + 24, 1);
	le_put32(frames[2] + 28, big_value);
	frames[2][32] = 'k';
	le_put32(frames[5] + 24, 3);
	memcpy(frames[5] + 28, "key", 3);
	for (int i = 0; i < 8; i++) {
		failed |= refusals_check(argv[1], &cases[i], frames[i], sizes[i]);
		free(frames[i]);
	}
	printf("refusals: %s\n", failed ? "FAILED" : "ok");
	return failed;
}
