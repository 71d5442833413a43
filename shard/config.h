/* The checks of a node's configuration (struct fl_node_config) before
 * anything starts, and of "host:port" addresses. Each refusal names the field
 * (or the flag: callers pass the names they show), the value and the rule,
 * in one line written to why. flotilla-node runs the same rules on its flags,
 * through the functions that take names. */
#ifndef SHARD_CONFIG_H
#define SHARD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "flotilla.h"

/* The names that config_check_timers() shows for tick, heartbeat and election. */
struct config_timer_names {
	const char *tick;
	const char *heartbeat;
	const char *election;
};

/* The rules between the timers (see FL_ELECTION_HEARTBEATS_MIN and
 * FL_ELECTION_TICKS_MIN in flotilla.h): every value >= 1, heartbeat >=
 * tick, election >= FL_ELECTION_HEARTBEATS_MIN x heartbeat and election >=
 * FL_ELECTION_TICKS_MIN x tick. Returns 0 or -EINVAL with why filled in. */
int config_check_timers(uint32_t tick_ms, uint32_t heartbeat_ms, uint32_t election_ms,
			const struct config_timer_names *names, char *why, size_t why_size);

/* Parse text as "host:port" and resolve it (the first address getaddrinfo
 * gives). The port is a decimal number up to 65535; 0 only with
 * port_zero_ok (a listener: the kernel picks one). Returns 0 with *addr and
 * *len set, or -EINVAL with why saying what is wrong, without repeating
 * text ("no ':port'", "port 'x' is not a number from 1 to 65535", "host 'h'
 * does not resolve: ..."). */
int config_addr_resolve(const char *text, bool port_zero_ok, struct sockaddr_storage *addr,
			socklen_t *len, char *why, size_t why_size);

/* Check every field of c and the rules between them; peers' addresses are
 * resolved. Returns 0 or -EINVAL with a line naming the field, the value and
 * the rule in why (fl_node_start() logs it). */
int config_check(const struct fl_node_config *c, char *why, size_t why_size);

#endif /* SHARD_CONFIG_H */
