/* flotilla-roles: one connection to a node, then one request per argument,
 * each answer printed on a line of its own (tests/cluster/test_client_tls.sh):
 *
 *   flotilla-roles HOST:PORT OP[:GROUP[:MEMBER]] ...
 *
 * TLS as every client built on tools/client.c: FLOTILLA_TLS_CA,
 * FLOTILLA_TLS_CERT and FLOTILLA_TLS_KEY (none: plaintext). OP is an op's
 * name (PUT writes key "k" = "v"; GET and DELETE use key "k"). Prints
 * "connected", then per op "OP status N leader L: TEXT" (L: the leader
 * hint; TEXT: the answer's value
 * when it is text, else its size). Exits 0 when every op was answered, 1
 * when the connection failed (its reason printed as "connect failed: ..."),
 * 2 on bad usage. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/client.h"

#define ROLES_WAIT_MS 5000

/* The op named by name (up to ':'), or 0. */
static uint32_t roles_op(const char *name)
{
	size_t len = strcspn(name, ":");

	for (uint32_t op = 1; op < 64; op++) {
		const char *known = client_op_name(op);

		if (known != NULL && strlen(known) == len && strncmp(known, name, len) == 0)
			return op;
	}
	return 0;
}

static bool roles_is_text(const void *value, uint32_t size)
{
	const unsigned char *p = value;

	for (uint32_t i = 0; i < size; i++)
		if (!isprint(p[i]))
			return false;
	return size > 0;
}

int main(int argc, char **argv)
{
	struct client c;
	int rv;

	if (argc < 2) {
		fprintf(stderr, "usage: flotilla-roles HOST:PORT OP[:GROUP[:MEMBER]] ...\n");
		return 2;
	}
	rv = client_connect(&c, argv[1], ROLES_WAIT_MS);
	if (rv != 0) {
		printf("connect failed: %s\n", client_error_text(rv));
		return 1;
	}
	printf("connected\n");
	for (int i = 2; i < argc; i++) {
		struct client_request req = {.op = roles_op(argv[i]), .request_id = (uint64_t)i};
		const char *colon = strchr(argv[i], ':');
		struct client_response resp;

		if (req.op == 0) {
			fprintf(stderr, "flotilla-roles: unknown op %s\n", argv[i]);
			client_close(&c);
			return 2;
		}
		req.group = colon != NULL ? strtoull(colon + 1, NULL, 10) : 1;
		colon = colon != NULL ? strchr(colon + 1, ':') : NULL;
		req.member = colon != NULL ? strtoull(colon + 1, NULL, 10) : 0;
		if (req.op == CLIENT_OP_PUT || req.op == CLIENT_OP_GET ||
		    req.op == CLIENT_OP_DELETE) {
			req.key = "k";
			req.key_size = 1;
		}
		if (req.op == CLIENT_OP_PUT) {
			req.value = "v";
			req.value_size = 1;
		}
		rv = client_send(&c, &req);
		if (rv == 0)
			rv = client_wait(&c, &resp, ROLES_WAIT_MS);
		if (rv != 0) {
			printf("%s failed: %s\n", client_op_name(req.op), client_error_text(rv));
			client_close(&c);
			return 1;
		}
		if (roles_is_text(resp.value, resp.value_size))
			printf("%s status %u leader %llu: %.*s\n", client_op_name(req.op),
			       resp.status, (unsigned long long)resp.leader_hint,
			       (int)resp.value_size, (const char *)resp.value);
		else
			printf("%s status %u leader %llu: %u bytes\n", client_op_name(req.op),
			       resp.status, (unsigned long long)resp.leader_hint, resp.value_size);
		fflush(stdout);
	}
	client_close(&c);
	return 0;
}
