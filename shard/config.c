/* The checks of fl_node_start()'s configuration, each refusal one line that
 * names the field, its value and the rule (shard/config.h). The rules:
 *
 *   node_id >= 1; data_dir and listen_addr given
 *   tick_ms, heartbeat_interval_ms, election_timeout_ms >= 1, and
 *     heartbeat_interval_ms >= tick_ms        timers fire once per tick at most
 *     election_timeout_ms >= 2 x heartbeat    a follower waits out a lost heartbeat
 *     election_timeout_ms >= 5 x tick_ms      randomized timeouts need ticks to differ
 *   entry_size_max from 1 to FL_ENTRY_SIZE_MAX (16 MiB)
 *   wal_segment_size 0 (the default) or at most 1 GiB
 *   auth_key NULL, or of at least 16 bytes
 *   log_level 0 to FL_LOG_DEBUG, log_format FL_LOG_TEXT to FL_LOG_JSON
 *   peers: at most 4 x FL_MEMBERS_MAX, ids >= 1, none this node's, none twice,
 *     each address "host:port" that resolves now
 *   sm: freeze, save_view and release all or none, and restore with them
 *
 * Addresses are resolved once here, at start, so that a typo or a name that
 * does not resolve refuses the node instead of failing every dial silently. */
#include "shard/config.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/wal.h"
#include "shard/book.h"
#include "shard/net.h"
#include "shard/snapshot_policy.h"

#define CONFIG_AUTH_KEY_SIZE_MIN 16

static_assert(FL_ELECTION_HEARTBEATS_MIN >= 2, "a follower waits out one lost heartbeat");

int config_check_timers(uint32_t tick_ms, uint32_t heartbeat_ms, uint32_t election_ms,
			const struct config_timer_names *n, char *why, size_t why_size)
{
	if (tick_ms == 0 || heartbeat_ms == 0 || election_ms == 0) {
		snprintf(why, why_size, "%s %u, %s %u, %s %u: each must be at least 1 ms", n->tick,
			 tick_ms, n->heartbeat, heartbeat_ms, n->election, election_ms);
		return -EINVAL;
	}
	if (heartbeat_ms < tick_ms) {
		snprintf(why, why_size,
			 "%s %u must be at least %s %u: timers fire at most once per tick",
			 n->heartbeat, heartbeat_ms, n->tick, tick_ms);
		return -EINVAL;
	}
	if (election_ms < (uint64_t)FL_ELECTION_HEARTBEATS_MIN * heartbeat_ms) {
		snprintf(why, why_size,
			 "%s %u must be at least %u x %s %u (%llu): a follower must not start an "
			 "election after one late heartbeat",
			 n->election, election_ms, FL_ELECTION_HEARTBEATS_MIN, n->heartbeat,
			 heartbeat_ms,
			 (unsigned long long)FL_ELECTION_HEARTBEATS_MIN * heartbeat_ms);
		return -EINVAL;
	}
	if (election_ms < (uint64_t)FL_ELECTION_TICKS_MIN * tick_ms) {
		snprintf(why, why_size,
			 "%s %u must be at least %u x %s %u (%llu): randomized election timeouts "
			 "need several ticks to differ",
			 n->election, election_ms, FL_ELECTION_TICKS_MIN, n->tick, tick_ms,
			 (unsigned long long)FL_ELECTION_TICKS_MIN * tick_ms);
		return -EINVAL;
	}
	return 0;
}

/* The port of an address: decimal digits, at most 65535, 0 if allowed. */
static int config_port_parse(const char *text, bool port_zero_ok)
{
	char *end;
	unsigned long port;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	port = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || port > 65535 || (port == 0 && !port_zero_ok))
		return -EINVAL;
	return (int)port;
}

int config_addr_resolve(const char *text, bool port_zero_ok, struct sockaddr_storage *addr,
			socklen_t *len, char *why, size_t why_size)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV},
			*res;
	const char *colon = strrchr(text, ':');
	char host[256];
	size_t host_size;
	int rv;

	if (colon == NULL) {
		snprintf(why, why_size, "no ':port'");
		return -EINVAL;
	}
	host_size = (size_t)(colon - text);
	if (host_size == 0 || host_size >= sizeof(host)) {
		snprintf(why, why_size, "the host must be 1 to %zu bytes before ':port'",
			 sizeof(host) - 1);
		return -EINVAL;
	}
	if (config_port_parse(colon + 1, port_zero_ok) < 0) {
		snprintf(why, why_size, "port '%s' is not a number from %d to 65535", colon + 1,
			 port_zero_ok ? 0 : 1);
		return -EINVAL;
	}
	memcpy(host, text, host_size);
	host[host_size] = '\0';
	rv = getaddrinfo(host, colon + 1, &hints, &res);
	if (rv != 0) {
		snprintf(why, why_size, "host '%s' does not resolve: %s", host,
			 rv == EAI_SYSTEM ? strerror(errno) : gai_strerror(rv));
		return -EINVAL;
	}
	memcpy(addr, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int config_check_peers(const struct fl_node_config *c, char *why, size_t why_size)
{
	char reason[384];

	if (c->peers_count > 4 * FL_MEMBERS_MAX) {
		snprintf(why, why_size, "peers_count %u exceeds the limit of %u peers",
			 c->peers_count, 4 * FL_MEMBERS_MAX);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < c->peers_count; i++) {
		const struct fl_peer *p = &c->peers[i];
		struct sockaddr_storage addr;
		socklen_t len;

		if (p->id == 0 || p->id == c->node_id) {
			snprintf(why, why_size, "peers[%u].id %llu: must be >= 1 and not node_id",
				 i, (unsigned long long)p->id);
			return -EINVAL;
		}
		for (uint32_t j = 0; j < i; j++) {
			if (c->peers[j].id == p->id) {
				snprintf(why, why_size, "peers[%u].id %llu: already peers[%u].id",
					 i, (unsigned long long)p->id, j);
				return -EINVAL;
			}
		}
		if (p->addr == NULL ||
		    strlen(p->addr) >= sizeof(((struct node_net_peer *)0)->addr)) {
			snprintf(why, why_size, "peers[%u].addr of node %llu: %s", i,
				 (unsigned long long)p->id,
				 p->addr == NULL ? "NULL" : "longer than 255 bytes");
			return -EINVAL;
		}
		if (!book_addr_is_valid(p->addr) ||
		    config_addr_resolve(p->addr, false, &addr, &len, reason, sizeof(reason)) != 0) {
			snprintf(why, why_size, "peers[%u].addr '%s' of node %llu: %s", i, p->addr,
				 (unsigned long long)p->id,
				 book_addr_is_valid(p->addr) ? reason
							     : "holds a space or a control byte");
			return -EINVAL;
		}
	}
	if (c->client_addr != NULL && (strlen(c->client_addr) >= FL_CLIENT_ADDR_SIZE_MAX ||
				       !book_addr_is_valid(c->client_addr))) {
		snprintf(why, why_size,
			 "client_addr '%.40s': must be 1 to %d printable bytes without spaces",
			 c->client_addr, FL_CLIENT_ADDR_SIZE_MAX - 1);
		return -EINVAL;
	}
	return 0;
}

/* The three steps of a frozen save come together, and need restore. */
static int config_check_sm(const struct fl_sm_ops *sm, char *why, size_t why_size)
{
	if ((sm->freeze == NULL) != (sm->save_view == NULL) ||
	    (sm->freeze == NULL) != (sm->release == NULL)) {
		snprintf(why, why_size,
			 "sm.freeze, sm.save_view and sm.release: give all three "
			 "or none");
		return -EINVAL;
	}
	if (sm->freeze != NULL && sm->restore == NULL) {
		snprintf(why, why_size, "sm.freeze needs sm.restore");
		return -EINVAL;
	}
	return 0;
}

int config_check(const struct fl_node_config *c, char *why, size_t why_size)
{
	static const struct config_timer_names names = {
	    .tick = "tick_ms",
	    .heartbeat = "heartbeat_interval_ms",
	    .election = "election_timeout_ms",
	};

	if (c->node_id == 0) {
		snprintf(why, why_size, "node_id 0: must be >= 1");
		return -EINVAL;
	}
	if (c->data_dir == NULL || c->listen_addr == NULL) {
		snprintf(why, why_size, "%s is NULL: it is required",
			 c->data_dir == NULL ? "data_dir" : "listen_addr");
		return -EINVAL;
	}
	if (config_check_timers(c->tick_ms, c->heartbeat_interval_ms, c->election_timeout_ms,
				&names, why, why_size) != 0)
		return -EINVAL;
	if (c->entry_size_max == 0 || c->entry_size_max > FL_ENTRY_SIZE_MAX) {
		snprintf(why, why_size, "entry_size_max %u: must be from 1 to %u (16 MiB)",
			 c->entry_size_max, FL_ENTRY_SIZE_MAX);
		return -EINVAL;
	}
	if (c->wal_segment_size > WAL_SEGMENT_SIZE_MAX) {
		snprintf(why, why_size, "wal_segment_size %u exceeds the limit of %u bytes (1 GiB)",
			 c->wal_segment_size, WAL_SEGMENT_SIZE_MAX);
		return -EINVAL;
	}
	if (c->snapshot_ratio_percent > SNAPSHOT_POLICY_RATIO_PERCENT_MAX) {
		snprintf(why, why_size, "snapshot_ratio_percent %u: must be from 0 to %u",
			 c->snapshot_ratio_percent, SNAPSHOT_POLICY_RATIO_PERCENT_MAX);
		return -EINVAL;
	}
	if (c->groups_max == 0) {
		snprintf(why, why_size, "groups_max 0: must be at least 1 (the default is 100000)");
		return -EINVAL;
	}
	if (c->auth_key != NULL && c->auth_key_size < CONFIG_AUTH_KEY_SIZE_MIN) {
		snprintf(why, why_size, "auth_key_size %u: a key must have at least %u bytes",
			 c->auth_key_size, CONFIG_AUTH_KEY_SIZE_MIN);
		return -EINVAL;
	}
	if (c->log_level > FL_LOG_DEBUG || c->log_format > FL_LOG_JSON) {
		snprintf(why, why_size, "log_level %u, log_format %u: at most %u and %u",
			 c->log_level, c->log_format, FL_LOG_DEBUG, FL_LOG_JSON);
		return -EINVAL;
	}
	if (config_check_sm(&c->sm, why, why_size) != 0)
		return -EINVAL;
	return config_check_peers(c, why, why_size);
}
