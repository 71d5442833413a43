#!/usr/bin/env python3
"""Hostile clients and peers against a running plaintext cluster (tests/
cluster/test_cluster_hostile.sh starts it and runs the well-behaved client):

    hostile.py --node ID=HOST:CLIENT_PORT:PEER_PORT:PID ... --spare-id ID
               --shards S --budget-mb MB --ready FILE --stop FILE [--hold-s S]

First a 900 KiB value is written (key "hostile-big", group 1), and each
node's resident memory (VmRSS of /proc/PID/status) is read as its baseline.
Then, against every node:
  - from 127.0.0.3: two connections pipelining GETs of the 900 KiB value,
    never reading; one connection sending 100,000 pipelined requests, never
    reading; one request announcing 2^31 bytes (must be refused with
    BAD_REQUEST and closed); one slowloris sender (a request's first bytes,
    then one byte a second: must be closed by the request deadline);
  - from 127.0.0.2: idle connections, 2,000 over the nodes (the
    per-source limit refuses most: they must not starve 127.0.0.1);
  - on the peer port, as the spare node id (known to the cluster, never
    started): PEER_CONNS connections to shard 0, each announcing a 64 MiB
    frame and sending half of it (more than the shard's 128 MiB bound on
    partial frames: the node must close some), the nodes in parallel; and
    one handshake sent a byte at a time.
Then FILE --ready is written, and the attacks are held (slowloris and the
byte-at-a-time handshake go on) until FILE --stop exists or --hold-s ends,
while each node's VmRSS is sampled every 100 ms. The bound on each node is
    baseline + --budget-mb (client buffers) + S x 128 MiB (partial peer
    frames, per shard) + SLACK_MB (connection structures, socket read
    chunks, one small answer per request in flight, allocator slack)
and the first sample past it ends the run (the sockets are closed, so a
node without the bounds is not driven out of memory). Every wait is
bounded. Exits 0 when every check holds, 1 otherwise."""
import ctypes
import os
import random
import resource
import socket
import struct
import sys
import threading
import time

from flotilla_tls import recv_exact, recv_response

OP_PUT, OP_GET, OP_LEADER = 1, 2, 5
STATUS_OK, STATUS_NOT_LEADER, STATUS_BAD_REQUEST = 0, 2, 5
BIG_KEY = b"hostile-big"
BIG_SIZE = 900 << 10
GET_PIPELINE = 1500  # per connection: far past --client-inflight-max (1024)
PIPELINED = 100000
IDLE_TOTAL = 2000
PEER_CONNS = 5
FRAME_BODY = 64 << 20
PEER_PARTIAL_PER_SHARD_MB = 128
SLACK_MB = 160
WIRE_MAGIC, WIRE_VERSION, WIRE_FRAME_RAFT = 0x414C5446, 2, 1

STOP = threading.Event()  # set at the first node past its bound: the attacks end

xxh = ctypes.CDLL("libxxhash.so.0")
xxh.XXH3_64bits.restype = ctypes.c_uint64
xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def log(text):
    print("hostile: %s" % text, flush=True)


def request(op, request_id, group, body=b""):
    return struct.pack("<IIQQ", 20 + len(body), op, request_id, group) + body


def get_request(request_id):
    return request(OP_GET, request_id, 1, struct.pack("<I", len(BIG_KEY)) + BIG_KEY)


def connect(addr, source, timeout_s=5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(timeout_s)
    s.connect(addr)
    return s


def is_closed(sock):
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def handshake(node_id, shard_index, shards, incarnation):
    head = struct.pack("<IIQQIIIIQ", WIRE_MAGIC, WIRE_VERSION, 1, node_id, shard_index, shards,
                       0, 0, incarnation)
    return head + struct.pack("<Q", xxh.XXH3_64bits(head, len(head)))


def put_big(nodes, deadline):
    value = bytes(random.Random(1).getrandbits(8) for _ in range(64)) * (BIG_SIZE // 64)
    body = struct.pack("<II", len(BIG_KEY), len(value)) + BIG_KEY + value
    target = nodes[0]
    while time.monotonic() < deadline:
        try:
            s = connect(target["client"], "127.0.0.3")
            s.sendall(request(OP_PUT, 1, 1, body))
            status, _, leader, text = recv_response(s, 10)
            s.close()
        except (OSError, ConnectionError) as e:
            log("PUT: %s; again" % e)
            time.sleep(0.2)
            continue
        if status == STATUS_OK:
            return True
        if status == STATUS_NOT_LEADER:
            target = next((n for n in nodes if n["id"] == leader), nodes[0])
        time.sleep(0.1)
    return False


class Node:
    def __init__(self, spec):
        ident, host, client_port, peer_port, pid = spec.replace("=", ":").split(":")
        self.id = int(ident)
        self.client = (host, int(client_port))
        self.peer = (host, int(peer_port))
        self.pid = int(pid)
        self.socks = []
        self.baseline = 0.0
        self.max_rss = 0.0
        self.bound = 0.0

    def __getitem__(self, key):
        return getattr(self, key)


def attack_client(n, results):
    # 900 KiB GETs, pipelined, never read.
    for _ in range(2):
        s = connect(n.client, "127.0.0.3")
        s.setblocking(False)
        data = b"".join(get_request(i + 1) for i in range(GET_PIPELINE))
        try:
            s.send(data)
        except BlockingIOError:
            pass
        n.socks.append(s)
    # 100,000 pipelined requests, never read: what the socket takes now,
    # the rest in the hold loop.
    s = connect(n.client, "127.0.0.3")
    s.setblocking(False)
    n.pipe = [s, b"".join(request(OP_LEADER, i + 1, 1) for i in range(PIPELINED))]
    n.socks.append(s)
    # A request announcing 2^31 bytes.
    s = connect(n.client, "127.0.0.3")
    s.sendall(struct.pack("<IIQQ", 1 << 31, OP_GET, 7, 1))
    try:
        status, request_id, _, text = recv_response(s, 5)
        refused = status == STATUS_BAD_REQUEST and recv_exact_eof(s)
        results.append(("2^31 bytes announced to node %d" % n.id, refused,
                        "status %d: %s" % (status, text.decode(errors="replace"))))
    except (OSError, ConnectionError) as e:
        results.append(("2^31 bytes announced to node %d" % n.id, False, str(e)))
    s.close()
    # Slowloris: 6 bytes now, one a second in the hold loop.
    s = connect(n.client, "127.0.0.3")
    n.slow = [s, request(OP_LEADER, 9, 1) * 4, 6, time.monotonic()]
    s.sendall(n.slow[1][:6])


def recv_exact_eof(sock):
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def attack_peer(n, shards, spare_id):
    incarnation = 0x486F7374696C65  # fixed: every connection the same process
    n.peer_socks = []
    for shard in [0] * PEER_CONNS:
        if not STOP.is_set():
            try:
                s = connect(n.peer, "127.0.0.3")
                s.sendall(handshake(spare_id, shard, shards, incarnation))
                answer = recv_exact(s, 56, 5)
                flags = struct.unpack("<I", answer[32:36])[0]
                if flags & 4:
                    log("node %d refused the handshake as node %d" % (n.id, spare_id))
                    s.close()
                    continue
                s.sendall(struct.pack("<IIQ", FRAME_BODY, WIRE_FRAME_RAFT, 0))
                n.peer_socks.append(s)
                s.settimeout(10)
                half = bytes(FRAME_BODY // 2)
                for off in range(0, len(half), 1 << 20):
                    if STOP.is_set():
                        break
                    s.sendall(half[off:off + (1 << 20)])
            except (OSError, ConnectionError) as e:
                log("node %d, shard %d: half frame ended early: %s" % (n.id, shard, e))
    # A handshake a byte at a time: one byte each 0.5 s in the hold loop.
    s = connect(n.peer, "127.0.0.3")
    n.drip = [s, handshake(spare_id, 0, shards, incarnation + 1), 0, 0.0]


def attack_idle(nodes):
    opened = refused = 0
    for i in range(IDLE_TOTAL):
        n = nodes[i % len(nodes)]
        try:
            s = connect(n.client, "127.0.0.2", 2)
            n.socks.append(s)
            opened += 1
        except OSError:
            refused += 1
    return opened, refused


def sample(nodes, results):
    """Read each node's VmRSS; False when one is past its bound."""
    ok = True
    for n in nodes:
        try:
            mb = rss_mb(n.pid)
        except OSError:
            results.append(("node %d alive" % n.id, False, "its process is gone"))
            return False
        n.max_rss = max(n.max_rss, mb)
        if mb > n.bound:
            results.append(("node %d RSS under %.1f MB" % (n.id, n.bound), False,
                            "%.1f MB" % mb))
            STOP.set()
            ok = False
    return ok


def hold(nodes, args, results):
    end = time.monotonic() + args["hold_s"]
    ready_written = False
    while time.monotonic() < end and not os.path.exists(args["stop"]):
        now = time.monotonic()
        for n in nodes:
            s, data, sent, last = n.slow
            if sent < len(data) and now >= last + 1 and not is_closed(s):
                try:
                    s.send(data[sent:sent + 1])
                    n.slow[2] += 1
                except OSError:
                    pass
                n.slow[3] = now
            s, data, sent, last = n.drip
            if sent < len(data) and now >= last + 0.5:
                try:
                    s.send(data[sent:sent + 1])
                    n.drip[2] += 1
                except OSError:
                    n.drip[2] = len(data)
                n.drip[3] = now
            s, data = n.pipe
            if data:
                try:
                    n.pipe[1] = data[s.send(data):]
                except BlockingIOError:
                    pass
                except OSError:
                    n.pipe[1] = b""
        if not sample(nodes, results):
            return False
        if not ready_written:
            with open(args["ready"], "w") as f:
                f.write("ready\n")
            ready_written = True
        time.sleep(0.1)
    return True


def parse_args(argv):
    args = {"nodes": [], "hold_s": 90.0}
    i = 1
    while i < len(argv):
        key, value = argv[i], argv[i + 1]
        if key == "--node":
            args["nodes"].append(Node(value))
        else:
            args[key[2:].replace("-", "_")] = value
        i += 2
    args["shards"] = int(args["shards"])
    args["spare_id"] = int(args["spare_id"])
    args["budget_mb"] = int(args["budget_mb"])
    args["hold_s"] = float(args["hold_s"])
    return args


def main():
    args = parse_args(sys.argv)
    nodes = args["nodes"]
    results = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not put_big(nodes, time.monotonic() + 20):
        log("FAIL: could not write the 900 KiB value")
        return 1
    time.sleep(1)  # replicated and applied everywhere
    for n in nodes:
        n.baseline = rss_mb(n.pid)
        n.bound = (n.baseline + args["budget_mb"] + args["shards"] * PEER_PARTIAL_PER_SHARD_MB +
                   SLACK_MB)
        log("node %d: baseline %.0f MB, bound %.0f MB" % (n.id, n.baseline, n.bound))
    ok = True
    start = time.monotonic()
    for n in nodes:
        attack_client(n, results)
        ok = ok and sample(nodes, results)
    log("client attacks set up in %.1f s" % (time.monotonic() - start))
    threads = [threading.Thread(target=attack_peer, args=(n, args["shards"], args["spare_id"]))
               for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            if ok:
                ok = sample(nodes, results)
            t.join(0.1)
    log("peer attacks set up at %.1f s" % (time.monotonic() - start))
    if not ok:
        log("FAIL: a node passed its bound while the attacks were set up")
        for what, good, detail in results:
            if not good:
                log("FAIL: %s (%s)" % (what, detail))
        return 1
    opened, refused = attack_idle(nodes)
    log("idle connections: %d open, %d refused; attacks set up in %.1f s"
        % (opened, refused, time.monotonic() - start))
    if ok:
        ok = hold(nodes, args, results)
    for n in nodes:
        slow_closed = is_closed(n.slow[0])
        results.append(("slowloris to node %d closed by the node" % n.id, slow_closed,
                        "%d of %d bytes sent" % (n.slow[2], len(n.slow[1]))))
        shed = sum(1 for s in n.peer_socks if is_closed(s))
        log("node %d: %d of %d half-frame peer connections closed by the node; "
            "RSS baseline %.0f MB, max %.0f MB, bound %.0f MB"
            % (n.id, shed, len(n.peer_socks), n.baseline, n.max_rss, n.bound))
    for n in nodes:
        for s in n.socks + n.peer_socks + [n.slow[0], n.drip[0]]:
            s.close()
    failed = not ok
    for what, good, detail in results:
        log("%s %s (%s)" % ("ok:" if good else "FAIL:", what, detail))
        failed = failed or not good
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
