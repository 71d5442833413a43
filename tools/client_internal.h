/* What tools/client.c and tools/client_tls.c share: the TLS layer of one
 * connection. No other file includes this. */
#ifndef TOOLS_CLIENT_INTERNAL_H
#define TOOLS_CLIENT_INTERNAL_H

#include <stdint.h>

#include "tools/client.h"

/* After the TCP connect of c to addr: the TLS handshake when TLS is set up
 * (c->tls set), within timeout_ms. Returns 0 (TLS, or plaintext when it is
 * not set up) or -EPROTO with client_error_text(-EPROTO) saying why. */
int client_tls_connect(struct client *c, const char *addr, int timeout_ms);
void client_tls_close(struct client *c);

/* client_flush() and client_read() over TLS, with their contracts; read
 * makes room for want more bytes when the buffer fills. */
int client_tls_write(struct client *c);
int client_tls_read(struct client *c, uint64_t want, uint32_t capacity_min);

#endif /* TOOLS_CLIENT_INTERNAL_H */
