"""Connections of the Python test clients to a node's client port, plain or
TLS as the cluster speaks, like the C tools (tools/client.c).

When FLOTILLA_TLS_CA, FLOTILLA_TLS_CERT and FLOTILLA_TLS_KEY are all set
(the cluster tests export them for a TLS cluster: cluster_tls_env in
cluster_lib.sh), a connection is TLS 1.3 with that client certificate, and
the node's certificate must chain to that CA; its host name is not checked
(a node's certificate names its node id, not an address). Otherwise a
connection is plain TCP. The scripts import this from their own directory."""
import os
import socket
import ssl
import struct

# What a client sees when the node closes a connection or does not answer.
CLOSED = (ConnectionError, socket.timeout, ssl.SSLError)

_context = None


def context():
    """The TLS client context from the environment, or None: plaintext."""
    global _context
    files = [os.environ.get(name) for name in
             ("FLOTILLA_TLS_CA", "FLOTILLA_TLS_CERT", "FLOTILLA_TLS_KEY")]
    if not all(files):
        return None
    if _context is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=files[0])
        ctx.load_cert_chain(certfile=files[1], keyfile=files[2])
        _context = ctx
    return _context


def connect(host, port, timeout=5, source=None):
    """A connection to host:port from source (an address of this host; any
    when None), its TLS handshake done when the cluster speaks TLS. Raises
    one of CLOSED (or OSError) when it cannot be made."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        if source is not None:
            sock.bind((source, 0))
        sock.connect((host, int(port)))
        ctx = context()
        return sock if ctx is None else ctx.wrap_socket(sock)
    except BaseException:
        sock.close()
        raise


def is_closed(sock):
    """Whether the node closed sock (end of stream, reset or a TLS alert),
    without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return True
    finally:
        sock.setblocking(True)


def recv_exact(sock, size, timeout_s):
    """size bytes from sock, each read within timeout_s; raises
    ConnectionError when the node closes first (or socket.timeout)."""
    sock.settimeout(timeout_s)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), size))
        data += chunk
    return data


def recv_response(sock, timeout_s=5):
    """One response of the client protocol (docs/client-protocol.md):
    (status, request_id, leader_hint, value as bytes)."""
    head = recv_exact(sock, 28, timeout_s)
    _, status, request_id, leader, value_size = struct.unpack("<IIQQI", head)
    value = recv_exact(sock, value_size, timeout_s) if value_size else b""
    return status, request_id, leader, value
