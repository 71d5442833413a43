/* Sockets: what every dialler checks once its connect() completes. */
#ifndef FLOTILLA_BASE_SOCK_H
#define FLOTILLA_BASE_SOCK_H

#include <stdbool.h>

/* Whether the connected TCP socket fd is connected to itself. Dialling a
 * port of the kernel's ephemeral range on which nothing listens can pick
 * that very port as the socket's own and complete (TCP simultaneous open):
 * the socket then talks to itself and, while open, holds the port, so the
 * process that owns the port cannot listen on it again. A dialler that
 * finds this closes the socket at once and counts a refused connection. */
bool sock_is_self_connected(int fd);

#endif
