#!/usr/bin/env python3
"""Per-source connection and group bounds against one running flotilla-node
started with --groups 2 --groups-max 3 --client-conns-max 64
--client-conns-per-source-max 4 (tests/cluster/test_client_limits.sh starts
it):

    client_bounds.py HOST:PORT

Per source: 4 connections from 127.0.0.2 (another source: all of
127.0.0.0/8 is loopback on Linux) are served; a fifth from 127.0.0.2 and
each of a burst of 10 more get an ERROR answer with request id 0 naming
--client-conns-per-source-max, then are closed; meanwhile a client from
127.0.0.1 connects and is served; once one of the 4 closes, 127.0.0.2 may
connect again.

Groups: the node hosts groups 1 and 2; JOIN of group 100 is OK (3 hosted);
JOIN of group 101 and 102 get GROUPS_FULL (status 9) naming --groups-max;
JOIN of group 100 again is OK (already hosted); LEADER of group 1 is still
answered; after DROP of group 100, JOIN of group 101 is OK. Every wait is
bounded. Exits 0 when all hold, 1 otherwise.

Plain TCP, or TLS when the cluster speaks it (flotilla_tls.py)."""
import struct
import sys
import time

import flotilla_tls

PER_SOURCE = 4
BURST = 10
OP_LEADER, OP_JOIN, OP_DROP = 5, 12, 18
STATUS_OK, STATUS_ERROR, STATUS_GROUPS_FULL = 0, 4, 9


def request(op, request_id, group):
    # size (the bytes after it), op, request_id, group; these ops have no body.
    return struct.pack("<IIQQ", 20, op, request_id, group)


def recv_response(sock, timeout_s=5):
    status, request_id, _, value = flotilla_tls.recv_response(sock, timeout_s)
    return status, request_id, value.decode(errors="replace")


def connect_from(source, host, port):
    return flotilla_tls.connect(host, port, source=source)


def call(sock, op, request_id, group):
    sock.sendall(request(op, request_id, group))
    status, got_id, text = recv_response(sock)
    if got_id != request_id:
        raise AssertionError("answer to request %d has id %d" % (request_id, got_id))
    return status, text


def leader_ok(sock, request_id):
    """LEADER of group 1, retried while an election may be under way."""
    deadline = time.monotonic() + 10
    while True:
        status, text = call(sock, OP_LEADER, request_id, 1)
        if status == STATUS_OK:
            return True
        if time.monotonic() > deadline:
            print("FAIL: LEADER of group 1: status %d %r" % (status, text))
            return False
        time.sleep(0.1)


def refused_per_source(sock):
    """Whether sock got the per-source refusal, then was closed."""
    try:
        status, request_id, text = recv_response(sock, 5)
        sock.settimeout(5)
        closed = sock.recv(1) == b""
    except flotilla_tls.CLOSED as e:
        print("FAIL: no refusal: %s" % e)
        return False
    if status != STATUS_ERROR or request_id != 0 or \
            "--client-conns-per-source-max" not in text or not closed:
        print("FAIL: over the per-source limit: status %d id %d text %r closed %s"
              % (status, request_id, text, closed))
        return False
    return True


def check_sources(host, port):
    failed = False
    held = [connect_from("127.0.0.2", host, port) for _ in range(PER_SOURCE)]
    for i, s in enumerate(held):
        if not leader_ok(s, 10 + i):
            failed = True
    print("ok: %d connections from 127.0.0.2 served" % PER_SOURCE)
    extra = connect_from("127.0.0.2", host, port)
    if refused_per_source(extra):
        print("ok: the next one from 127.0.0.2 refused, then closed")
    else:
        failed = True
    extra.close()
    burst = 0
    for _ in range(BURST):
        s = connect_from("127.0.0.2", host, port)
        burst += refused_per_source(s)
        s.close()
    if burst != BURST:
        print("FAIL: %d of a burst of %d from 127.0.0.2 refused" % (burst, BURST))
        failed = True
    else:
        print("ok: a burst of %d more from 127.0.0.2, each refused with an answer" % BURST)
    other = connect_from("127.0.0.1", host, port)
    if leader_ok(other, 20):
        print("ok: a client from 127.0.0.1 is served meanwhile")
    else:
        failed = True
    other.close()
    # One of the 4 closes: its slot comes back (the server frees it before
    # the client can see the close, but the close reaches the server a
    # little later: retry for a while).
    held.pop().close()
    deadline, again = time.monotonic() + 5, None
    while time.monotonic() < deadline:
        s = None
        try:
            s = connect_from("127.0.0.2", host, port)
            status, _ = call(s, OP_LEADER, 30, 1)
        except flotilla_tls.CLOSED + (AssertionError,):
            status = None
        if status == STATUS_OK:
            again = s
            break
        if s is not None:
            s.close()
        time.sleep(0.1)
    if again is None:
        print("FAIL: 127.0.0.2 could not connect again after one of its connections closed")
        failed = True
    else:
        print("ok: 127.0.0.2 connects again once one of its connections closed")
        again.close()
    for s in held:
        s.close()
    return failed


def check_groups(host, port):
    failed = False
    sock = connect_from("127.0.0.1", host, port)
    want = [(OP_JOIN, 100, STATUS_OK, None),
            (OP_JOIN, 101, STATUS_GROUPS_FULL, "--groups-max 3"),
            (OP_JOIN, 102, STATUS_GROUPS_FULL, "--groups-max 3"),
            (OP_JOIN, 100, STATUS_OK, None),
            (OP_DROP, 100, STATUS_OK, None),
            (OP_JOIN, 101, STATUS_OK, None)]
    names = {OP_JOIN: "JOIN", OP_DROP: "DROP"}
    for i, (op, group, status_want, text_want) in enumerate(want):
        status, text = call(sock, op, 100 + i, group)
        if status != status_want or (text_want is not None and text_want not in text):
            print("FAIL: %s of group %d: status %d %r, want %d%s"
                  % (names[op], group, status, text, status_want,
                     " and %r" % text_want if text_want else ""))
            failed = True
        else:
            print("ok: %s of group %d: status %d%s"
                  % (names[op], group, status, " %r" % text if text else ""))
        if op == OP_JOIN and status == STATUS_GROUPS_FULL:
            if leader_ok(sock, 200 + i):
                print("ok: LEADER of group 1 answered after it")
            else:
                failed = True
    sock.close()
    return failed


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = sys.argv[1].rsplit(":", 1)
    port = int(port)
    failed = check_sources(host, port)
    failed = check_groups(host, port) or failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
