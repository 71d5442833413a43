/* Fuzz target: the client protocol of flotilla-node (tools/client.c) and
 * the key-value commands it turns requests into (tools/kv.c).
 *
 * INPUT: u8 mode, then bytes.
 *   mode % 5 == 0: bytes a client sent to the node. Requests are decoded
 *       one after the other as the node's conn_process() does; each write
 *       becomes a KV command as conn_propose() builds it, which is decoded
 *       and applied to a key-value map as a committed entry would be, and
 *       each read is served from that map.
 *   mode % 5 == 1: bytes a node sent to a client: responses, and the
 *       DIGEST value of any response that is that size.
 *   mode % 5 == 2: the bytes are one log entry handed to kv_apply() (a
 *       committed entry need not be a valid command: replicas reject it
 *       alike).
 *   mode % 5 == 3: as 0, on a connection whose client certificate has the
 *       data role: each op the role table refuses is answered FORBIDDEN
 *       (encoded and decoded back) instead of run.
 *   mode % 5 == 4: the bytes are a client certificate (DER), mapped to its
 *       role as the node's TLS handshake does.
 * Checks: no crash; every accepted request or response re-encodes to the
 * same bytes; a command built from an accepted write decodes to itself;
 * kv_apply() answers one of its result codes; a data connection runs only
 * data ops, and its refusals round-trip; a certificate maps to one role. */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "tools/client.h"
#include "tools/kv.h"

#define FUZZ_CLIENT_GROUP 3

static void fuzz_client_apply(struct kv *kv, const void *data, uint32_t size, uint64_t index)
{
	struct fl_entry e = {.index = index, .term = 1, .data = data, .size = size};
	uint64_t result = UINT64_MAX;

	kv_apply(kv, FUZZ_CLIENT_GROUP, &e, 1, &result);
	FUZZ_CHECK(result == KV_RESULT_OK || result == KV_RESULT_NOT_FOUND ||
		   result == KV_RESULT_CAS_MISMATCH || result == KV_RESULT_BAD_ENTRY);
}

/* A write as conn_propose() encodes it, decoded and applied. */
static void fuzz_client_write(struct kv *kv, const struct client_request *req, uint64_t index)
{
	struct kv_cmd cmd = {.op = req->op,
			     .key = req->key,
			     .key_size = req->key_size,
			     .expected = req->expected,
			     .expected_size = req->op == CLIENT_OP_CAS ? req->expected_size : 0,
			     .value = req->value,
			     .value_size = req->value_size};
	uint32_t size = kv_cmd_size(&cmd);
	struct kv_cmd back;
	uint8_t *buf;

	if (size == 0)
		return; /* The node answers -EMSGSIZE. */
	buf = malloc(size);
	FUZZ_CHECK(buf != NULL);
	kv_cmd_encode(&cmd, buf);
	FUZZ_CHECK(kv_cmd_decode(buf, size, &back) == 0);
	FUZZ_CHECK(back.op == cmd.op && back.key_size == cmd.key_size);
	FUZZ_CHECK(back.expected_size == cmd.expected_size && back.value_size == cmd.value_size);
	FUZZ_CHECK(cmd.key_size == 0 || memcmp(back.key, cmd.key, cmd.key_size) == 0);
	FUZZ_CHECK(cmd.value_size == 0 || memcmp(back.value, cmd.value, cmd.value_size) == 0);
	fuzz_client_apply(kv, buf, size, index);
	free(buf);
}

/* A FORBIDDEN answer to req as the node builds it, decoded back. */
static void fuzz_client_forbid(const struct client_request *req, uint32_t role)
{
	char text[160];
	struct client_response resp = {
	    .status = CLIENT_STATUS_FORBIDDEN, .request_id = req->request_id, .value = text};
	struct client_response back;
	uint8_t buf[CLIENT_RESPONSE_HEADER_SIZE + sizeof(text)];

	FUZZ_CHECK(client_op_role(req->op) == CLIENT_ACCESS_ADMIN);
	client_forbidden_text(req->op, role, text, sizeof(text));
	resp.value_size = (uint32_t)strlen(text);
	FUZZ_CHECK(resp.value_size > 0 && strstr(text, "needs the admin role") != NULL);
	client_response_encode(&resp, buf);
	FUZZ_CHECK(client_response_decode(buf, client_response_size(resp.value_size), &back) ==
		   (int)client_response_size(resp.value_size));
	FUZZ_CHECK(back.status == CLIENT_STATUS_FORBIDDEN && back.request_id == req->request_id);
}

static void fuzz_client_requests(const uint8_t *data, size_t size, uint32_t role)
{
	struct kv kv;
	uint64_t index = 1;

	FUZZ_CHECK(kv_init(&kv) == 0);
	while (size > 0) {
		struct client_request req;
		int n = client_request_decode(data, size, &req);
		uint8_t *again;

		if (n <= 0)
			break; /* Incomplete (wait), or malformed (answer and close). */
		FUZZ_CHECK((size_t)n <= size);
		FUZZ_CHECK(client_request_size(&req) == (uint32_t)n);
		again = malloc((size_t)n);
		FUZZ_CHECK(again != NULL);
		client_request_encode(&req, again);
		FUZZ_CHECK(memcmp(again, data, (size_t)n) == 0);
		free(again);
		if (!client_role_allows(role, req.op)) {
			fuzz_client_forbid(&req, role);
		} else if (req.op == CLIENT_OP_PUT || req.op == CLIENT_OP_DELETE ||
			   req.op == CLIENT_OP_CAS) {
			fuzz_client_write(&kv, &req, index++);
		} else if (req.op == CLIENT_OP_GET || req.op == CLIENT_OP_LOCAL_GET) {
			void *value;
			uint32_t value_size;
			int rv = kv_get(&kv, FUZZ_CLIENT_GROUP, req.key, req.key_size, &value,
					&value_size);

			FUZZ_CHECK(rv == 0 || rv == -ENOENT);
			free(value);
		} else if (req.op == CLIENT_OP_DIGEST) {
			struct kv_digest digest;

			kv_digest_get(&kv, FUZZ_CLIENT_GROUP, &digest);
			FUZZ_CHECK(digest.keys_count == kv_keys_count(&kv, FUZZ_CLIENT_GROUP));
		}
		data += n;
		size -= (size_t)n;
	}
	kv_deinit(&kv);
}

static void fuzz_client_responses(const uint8_t *data, size_t size)
{
	while (size > 0) {
		struct client_response resp;
		struct client_digest digest;
		int n = client_response_decode(data, size, &resp);
		uint8_t *again;

		if (n <= 0)
			break;
		FUZZ_CHECK((size_t)n <= size);
		FUZZ_CHECK(client_response_size(resp.value_size) == (uint32_t)n);
		again = malloc((size_t)n);
		FUZZ_CHECK(again != NULL);
		client_response_encode(&resp, again);
		FUZZ_CHECK(memcmp(again, data, (size_t)n) == 0);
		free(again);
		if (client_digest_decode(resp.value, resp.value_size, &digest) == 0) {
			uint8_t buf[CLIENT_DIGEST_SIZE];

			client_digest_encode(&digest, buf);
			FUZZ_CHECK(memcmp(buf, resp.value, CLIENT_DIGEST_SIZE) == 0);
		}
		data += n;
		size -= (size_t)n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kv kv;
	uint32_t role;

	if (size < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
		fuzz_client_requests(data + 1, size - 1, CLIENT_ACCESS_ADMIN);
		break;
	case 3:
		fuzz_client_requests(data + 1, size - 1, CLIENT_ACCESS_DATA);
		break;
	case 4:
		role = client_tls_der_role(data + 1, size - 1);
		FUZZ_CHECK(role == CLIENT_ACCESS_NONE || role == CLIENT_ACCESS_DATA ||
			   role == CLIENT_ACCESS_ADMIN || role == CLIENT_ACCESS_NODE);
		break;
	case 1:
		fuzz_client_responses(data + 1, size - 1);
		break;
	default:
		if (size - 1 > UINT32_MAX)
			return 0;
		FUZZ_CHECK(kv_init(&kv) == 0);
		fuzz_client_apply(&kv, data + 1, (uint32_t)(size - 1), 1);
		kv_deinit(&kv);
		break;
	}
	return 0;
}
