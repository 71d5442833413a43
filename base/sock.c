#include "base/sock.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

bool sock_is_self_connected(int fd)
{
	struct sockaddr_storage self, peer;
	socklen_t self_len = sizeof(self), peer_len = sizeof(peer);

	if (getsockname(fd, (struct sockaddr *)&self, &self_len) != 0 ||
	    getpeername(fd, (struct sockaddr *)&peer, &peer_len) != 0)
		return false;
	if (self_len != peer_len || self.ss_family != peer.ss_family)
		return false;
	if (self.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&self;
		const struct sockaddr_in *b = (const struct sockaddr_in *)&peer;

		return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	if (self.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&self;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&peer;

		return a->sin6_port == b->sin6_port &&
		       memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
	}
	return false;
}
