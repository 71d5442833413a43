/* The diallers' self-connection check, on real loopback sockets: a socket
 * bound to a port and connected to that same address talks to itself; one
 * connected to a listener does not. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/sock.h"

/* A TCP socket bound to 127.0.0.1 at a port the kernel picks; its address in *addr. */
static int bound_socket(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	*addr =
	    (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

static void test_socket_connected_to_itself_is_found(void **state)
{
	struct sockaddr_in addr;
	int fd = bound_socket(&addr);

	(void)state;
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_true(sock_is_self_connected(fd));
	close(fd);
}

static void test_socket_connected_to_a_listener_is_not(void **state)
{
	struct sockaddr_in addr;
	int lfd = bound_socket(&addr), fd, afd;

	(void)state;
	assert_int_equal(listen(lfd, 1), 0);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	assert_false(sock_is_self_connected(fd));
	assert_false(sock_is_self_connected(afd));
	close(afd);
	close(fd);
	close(lfd);
}

static void test_unconnected_socket_is_not(void **state)
{
	struct sockaddr_in addr;
	int fd = bound_socket(&addr);

	(void)state;
	assert_false(sock_is_self_connected(fd));
	assert_false(sock_is_self_connected(-1));
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_socket_connected_to_itself_is_found),
	    cmocka_unit_test(test_socket_connected_to_a_listener_is_not),
	    cmocka_unit_test(test_unconnected_socket_is_not),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
