#!/usr/bin/env python3
"""The client port's limits against one running flotilla-node started with
--client-request-ms 500 --client-idle-s 1 --client-conns-max 8 (tests/
cluster/test_client_limits.sh starts it):

    client_limits.py HOST:PORT

A well-behaved client sends LEADER every 100 ms throughout and must get
every answer. Meanwhile: a slowloris client (a request's first 6 bytes,
then one byte each 200 ms) must be closed 0.5 to 2.5 s after its first byte;
an idle connection 1 to 3 s after it opened; and with 8 connections open, a
ninth must get an ERROR answer with request id 0 naming --client-conns-max,
then be closed, and so must each of a burst of 20 more. Every wait is bounded. Exits 0 when all hold, 1 otherwise.

Plain TCP, or TLS when the cluster speaks it (flotilla_tls.py)."""
import struct
import sys
import time

import flotilla_tls

BURST = 20
OP_LEADER = 5
STATUS_OK = 0
STATUS_ERROR = 4


def leader_request(request_id):
    # size (the bytes after it), op, request_id, group 1.
    return struct.pack("<IIQQ", 20, OP_LEADER, request_id, 1)


class Good:
    """The well-behaved client: one LEADER at a time, each answered."""

    def __init__(self, host, port):
        self.sock = flotilla_tls.connect(host, port)
        self.next_id = 1
        self.answered = 0
        self.last_ms = 0

    def poke(self, now_ms):
        if now_ms < self.last_ms + 100:
            return
        self.last_ms = now_ms
        self.sock.sendall(leader_request(self.next_id))
        status, request_id, _, _ = flotilla_tls.recv_response(self.sock)
        if status != STATUS_OK or request_id != self.next_id:
            raise AssertionError("good client: status %d id %d" % (status, request_id))
        self.next_id += 1
        self.answered += 1


def now_ms():
    return int(time.monotonic() * 1000)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = sys.argv[1].rsplit(":", 1)
    port = int(port)
    failed = False
    good = Good(host, port)
    good.poke(now_ms())

    # Slowloris: 6 bytes, then one byte per 200 ms; the 24-byte request
    # would take 3.6 s more.
    slow = flotilla_tls.connect(host, port)
    request = leader_request(99)
    slow.sendall(request[:6])
    start = now_ms()
    sent, closed_ms, next_byte = 6, None, start + 200
    while now_ms() < start + 5000 and closed_ms is None:
        good.poke(now_ms())
        if flotilla_tls.is_closed(slow):
            closed_ms = now_ms() - start
            break
        if now_ms() >= next_byte and sent < len(request):
            try:
                slow.send(request[sent:sent + 1])
                sent += 1
            except flotilla_tls.CLOSED:
                closed_ms = now_ms() - start
                break
            next_byte += 200
        time.sleep(0.02)
    slow.close()
    if closed_ms is None or not 450 <= closed_ms <= 2500:
        print("FAIL: slowloris (%d of %d bytes sent) closed after %s ms, want 500 to 2500"
              % (sent, len(request), closed_ms))
        failed = True
    else:
        print("ok: slowloris closed %d ms after its first byte (%d of %d bytes sent)"
              % (closed_ms, sent, len(request)))

    # Idle: nothing sent.
    idle = flotilla_tls.connect(host, port)
    start, closed_ms = now_ms(), None
    while now_ms() < start + 5000:
        good.poke(now_ms())
        if flotilla_tls.is_closed(idle):
            closed_ms = now_ms() - start
            break
        time.sleep(0.02)
    idle.close()
    if closed_ms is None or not 900 <= closed_ms <= 3000:
        print("FAIL: idle connection closed after %s ms, want 1000 to 3000" % closed_ms)
        failed = True
    else:
        print("ok: idle connection closed %d ms after it opened" % closed_ms)

    # The connection limit: the good client and 7 more make 8; a ninth is
    # refused with an answer.
    held = []
    for i in range(7):
        held.append(flotilla_tls.connect(host, port))
    extra = None
    try:
        extra = flotilla_tls.connect(host, port)
        status, request_id, _, value = flotilla_tls.recv_response(extra, 5)
        text = value.decode(errors="replace")
        if status != STATUS_ERROR or request_id != 0 or "--client-conns-max" not in text:
            print("FAIL: ninth connection: status %d id %d text %r" % (status, request_id, text))
            failed = True
        else:
            extra.settimeout(5)
            rest = extra.recv(1)
            if rest != b"":
                print("FAIL: ninth connection not closed after its answer")
                failed = True
            else:
                print("ok: ninth connection refused: %s" % text)
    except flotilla_tls.CLOSED as e:
        print("FAIL: ninth connection got no answer: %s" % e)
        failed = True
    if extra is not None:
        extra.close()
    # A burst over the limit: each refused, logged as one count (the
    # shell checks the log).
    burst = 0
    for i in range(BURST):
        s = None
        try:
            s = flotilla_tls.connect(host, port)
            status, request_id, _, _ = flotilla_tls.recv_response(s, 5)
            burst += status == STATUS_ERROR and request_id == 0
        except flotilla_tls.CLOSED:
            pass
        if s is not None:
            s.close()
    if burst != BURST:
        print("FAIL: %d of a burst of %d over the limit were refused with an answer"
              % (burst, BURST))
        failed = True
    else:
        print("ok: a burst of %d over the limit, each refused with an answer" % BURST)
    good.last_ms = 0
    good.poke(now_ms())
    for s in held:
        s.close()
    # Past the burst's second, so that its count is logged.
    end = now_ms() + 1500
    while now_ms() < end:
        good.poke(now_ms())
        time.sleep(0.02)
    print("ok: the good client got %d answers throughout" % good.answered)
    good.sock.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
