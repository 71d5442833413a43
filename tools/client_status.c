/* The NODE_STATUS answer's codec (op 40; the format is in client.h and
 * docs/client-protocol.md). A file of its own beside client.c, which holds
 * the request codec and the connections. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "base/le.h"
#include "tools/client.h"

static_assert(CLIENT_NODE_STATUS_SIZE == 9 * 8 + 2 * 4, "nine u64 then two u32");

void client_node_status_encode(const struct client_node_status *st, void *buf)
{
	unsigned char *p = buf;

	le_put64(p, st->node_id);
	le_put64(p + 8, st->groups);
	le_put64(p + 16, st->leaders);
	le_put64(p + 24, st->leaderless);
	le_put64(p + 32, st->repairing);
	le_put64(p + 40, st->checks);
	le_put64(p + 48, st->divergences);
	le_put64(p + 56, st->lag_max);
	le_put64(p + 64, st->writes_refused_no_space);
	le_put32(p + 72, st->shards_count);
	le_put32(p + 76, st->shards_no_space);
}

int client_node_status_decode(const void *value, uint32_t size, struct client_node_status *st)
{
	const unsigned char *p = value;

	memset(st, 0, sizeof(*st));
	if (size < CLIENT_NODE_STATUS_SIZE)
		return -EBADMSG;
	st->node_id = le_get64(p);
	st->groups = le_get64(p + 8);
	st->leaders = le_get64(p + 16);
	st->leaderless = le_get64(p + 24);
	st->repairing = le_get64(p + 32);
	st->checks = le_get64(p + 40);
	st->divergences = le_get64(p + 48);
	st->lag_max = le_get64(p + 56);
	st->writes_refused_no_space = le_get64(p + 64);
	st->shards_count = le_get32(p + 72);
	st->shards_no_space = le_get32(p + 76);
	return 0;
}
