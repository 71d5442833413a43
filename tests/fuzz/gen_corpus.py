#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into corpus/<target>/.

Seeds are small, valid (or nearly valid) inputs in each target's input
format, described at the top of tests/fuzz/fuzz_<target>.c. Checksums are
left as zeros wherever the target reseals its input. Crash inputs found by
fuzzing are kept next to the seeds as crash-<what> and are not touched here.

    tests/fuzz/gen_corpus.py [target...]
"""
import base64
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(v):
    return struct.pack("<B", v)


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def pad8(b):
    return b + b"\0" * (-len(b) % 8)


def conf(members, joint=False):
    """raft_conf_encode(): u32 count, u32 flags, then 16 bytes per member."""
    out = u32(len(members)) + u32(1 if joint else 0)
    for node, role, role_old in members:
        out += u64(node) + u8(role) + u8(role_old) + b"\0" * 6
    return out


# ------------------------------------------------------------------- wire

def wire_msg(group, src, dst, term, mtype, log_term=0, index=0, commit=0, context=0,
             flags=0, reject=0, entries=(), snapshot=None):
    out = u64(group) + u64(src) + u64(dst) + u64(term) + u64(log_term) + u64(index)
    out += u64(commit) + u64(context) + u64(0) + u64(0)
    out += u8(mtype) + u8(flags) + u8(reject) + u8(0) + u32(len(entries))
    for eterm, etype, data in entries:
        out += u64(eterm) + u32(etype) + u32(len(data)) + pad8(data)
    if snapshot is not None:
        sindex, sterm, sconf = snapshot
        out += u64(sindex) + u64(sterm) + u32(len(sconf)) + u32(0) + pad8(sconf)
    return out


def wire_frame(kind, body):
    return u32(len(body)) + u32(kind) + u64(0) + body


# A node certificate (OU node, CN node-2, from tools/tls-certs), DER, fixed
# so the seed does not change between runs.
NODE_CERT_DER_B64 = (
    "MIICDjCCAbSgAwIBAgIIL67r1nl0DQowCgYIKoZIzj0EAwIwSDERMA8GA1UECgwIRmxvdGlsbGEx"
    "MzAxBgNVBAMMKkZsb3RpbGxhIGNsdXN0ZXIgQ0EgMjAyNjEyMDdUMTU0MDM5Wi0yOTE5OTAeFw0y"
    "NjEyMDcxNTQwNDBaFw0yOTAzMTExNTQwNDBaMDMxETAPBgNVBAoMCEZsb3RpbGxhMQ0wCwYDVQQL"
    "DARub2RlMQ8wDQYDVQQDDAZub2RlLTIwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR+ykzTIknB"
    "bIcRI3NHvQptws4A1j2ks4pvnOdI3IBLWsF+Yj7yP6lGO3EL6sHfiLsVx1bdHrEpbwGxQoHVrxgN"
    "o4GcMIGZMAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQDAgeAMB0GA1UdJQQWMBQGCCsGAQUFBwMB"
    "BggrBgEFBQcDAjAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwHQYDVR0OBBYEFItITPETyrpI"
    "HUdl7lrPd4HYs2xWMB8GA1UdIwQYMBaAFL5lICk1kuW+zAKzoJv8oblCZ2IDMAoGCCqGSM49BAMC"
    "A0gAMEUCIFrWY0yOiyRMsi84CRqyCH1Qq+QfbzeTDk0MmT1oSOc+AiEA6JQROATdPZoZEQDexrxc"
    "sn+PfkgKFZ3luKJW6CuSLmo="
)


def node_cert_der():
    return base64.b64decode(NODE_CERT_DER_B64)


def wire_seeds():
    handshake = u32(0x414C5446) + u32(2) + u64(42) + u64(2) + u32(0) + u32(4)
    handshake += u32(0) + u32(0) + u64(0x1234567890ABCDEF) + u64(0)
    three = conf([(1, 1, 0), (2, 1, 0), (3, 1, 0)])
    append = wire_msg(7, 1, 2, 3, 1, log_term=2, index=10, commit=9,
                      entries=[(3, 0, b"hello"), (3, 1, b""), (3, 2, three)])
    vote = wire_msg(7, 3, 2, 4, 3, log_term=3, index=12)
    snap = wire_msg(7, 1, 2, 5, 9, snapshot=(100, 4, three))
    resp = wire_msg(9, 2, 1, 3, 2, index=12, reject=1)
    beat = u64(7) + u64(3) + u64(9) + u64(77) + u8(7) + u8(0) + b"\0" * 6
    beat_resp = u64(8) + u64(3) + u64(0) + u64(77) + u8(8) + u8(2) + b"\0" * 6
    chunk = u64(7) + u64(100) + u64(4) + u64(0) + u64(5) + u64(0) + u32(5) + u32(0) + b"abcde"
    return {
        "handshake": u8(2) + handshake,
        "raft-frame": u8(3) + wire_frame(1, append + vote),
        "snapshot-msg": u8(3) + wire_frame(1, snap + resp),
        "beats": u8(3) + wire_frame(3, beat + beat_resp),
        "chunk-then-raft": u8(3) + wire_frame(2, chunk) + wire_frame(1, resp),
        # Mode bit 2: frames of an authenticated connection, each with a
        # 16-byte tag after its body (recomputed when resealing).
        "tagged-frames": u8(7) + wire_frame(3, beat + beat_resp) + b"\0" * 16
        + wire_frame(1, resp) + b"\0" * 16,
        # Mode bit 3: frames of a TLS connection, each sealed (AES-256-GCM,
        # a fixed key) with a 16-byte tag after its body; with bit 1 the
        # body given is sealed first, so the decoders see it.
        "sealed-frames": u8(11) + wire_frame(3, beat + beat_resp) + b"\0" * 16
        + wire_frame(1, append) + b"\0" * 16,
        "sealed-unsealed": u8(9) + wire_frame(1, resp) + b"\0" * 16,
        # Mode bit 2 of an even mode: a peer's DER certificate (node-2's).
        "node-cert": u8(4) + node_cert_der(),
    }


# -------------------------------------------------------------------- wal

def wal_record(group, first_index, term, batch, rtype, payload=b"", flags=0):
    head = u64(0) + u64(group) + u64(first_index) + u64(term) + u64(batch)
    return head + u32(len(payload)) + u16(rtype) + u16(flags) + pad8(payload)


def wal_entries(group, first_index, term, batch, datas, flags=0):
    payload = u32(len(datas)) + u32(0)
    for d in datas:
        payload += u32(len(d)) + u32(0)
    payload += b"".join(datas)
    return wal_record(group, first_index, term, batch, 1, payload, flags)


def wal_hard(group, term, vote, commit, batch):
    return wal_record(group, 0, 0, batch, 2, u64(term) + u64(vote) + u64(commit))


def wal_segment(seq, records, prev_seq=0, prev_end=0, first_batch=1, tail=b"", version=2):
    """A segment file; the harness seals header and records (fix bits 0..2)."""
    body = b"".join(records) + tail
    size = 64 + len(body)
    size += -size % 8
    head = u64(0) + u64(0) + u32(version) + u32(size) + u64(seq) + u64(size)
    head += u64(prev_end) + u64(first_batch) + u64(prev_seq)
    data = (head + body).ljust(size, b"\0")
    return data, 64 + len(b"".join(records))


def wal_file(seq, data, fix=7):
    return u8(seq - 1) + u8(fix) + u16(len(data)) + data


def wal_seeds():
    one, _ = wal_segment(1, [
        wal_entries(1, 1, 1, 1, [b"a", b"bb", b"ccc"]),
        wal_hard(1, 1, 1, 2, 1),
        wal_entries(2, 1, 1, 2, [b"x" * 20]),
        wal_entries(1, 3, 2, 3, [b"overwrite"]),
    ])
    first, first_end = wal_segment(1, [
        wal_entries(1, 1, 1, 1, [b"a", b"b"]),
        wal_entries(3, 1, 1, 1, [b"c"]),
        wal_record(3, 0, 0, 2, 4),  # REMOVED
    ])
    second, _ = wal_segment(2, [
        wal_record(1, 2, 1, 3, 3, flags=1),  # MARK at 2, entries kept
        wal_entries(1, 3, 1, 3, [b"d"]),
        wal_entries(1, 3, 1, 4, [b"d"], flags=2),  # COPY
    ], prev_seq=1, prev_end=first_end, first_batch=3)
    torn, _ = wal_segment(1, [wal_entries(4, 1, 5, 1, [b"kept"])],
                          tail=wal_entries(4, 2, 5, 2, [b"torn" * 8])[:40])
    # Format 4: each batch ends with an END record (type 6). Fix bit 3 flips
    # a bit of the first record's payload, in the last batch: damage, since
    # records of that batch verify after it.
    ended, _ = wal_segment(1, [
        wal_entries(1, 1, 1, 1, [b"a", b"b"]),
        wal_record(0, 0, 0, 1, 6),
        wal_entries(1, 3, 1, 2, [b"c"]),
        wal_entries(2, 1, 1, 2, [b"d"]),
        wal_record(0, 0, 0, 2, 6),
    ], version=4)
    last, _ = wal_segment(1, [
        wal_entries(1, 1, 1, 1, [b"a", b"b"]),
        wal_entries(2, 1, 1, 1, [b"d"]),
        wal_record(0, 0, 0, 1, 6),
    ], version=4)
    return {
        "end-records": u8(2) + wal_file(1, ended),
        "end-records-last-batch-damaged": u8(2) + wal_file(1, last, fix=15),
        "end-records-last-batch-salvaged": u8(6) + wal_file(1, last, fix=15),
        "one-segment-append": u8(2) + wal_file(1, one),
        "two-segments-mark-removed": u8(2) + wal_file(1, first) + wal_file(2, second),
        "two-segments-read-only": u8(1) + wal_file(1, first) + wal_file(2, second),
        "torn-tail": u8(2) + wal_file(1, torn),
        "corrupt-first-segment": u8(0) + wal_file(1, first, fix=5) + wal_file(2, second),
        "salvage-unnamed-record": u8(6) + wal_file(1, first, fix=5) + wal_file(2, second),
        "salvage-damaged-payload": u8(6) + wal_file(1, first, fix=15) + wal_file(2, second),
    }


# --------------------------------------------------------------- snapshot

def kv_snapshot(items, applied=3, last=9, digest=0x1234, violations=0, count=None):
    out = u32(0x3153564B) + u32(0) + u64(applied) + u64(last) + u64(digest)
    out += u64(violations) + u64(len(items) if count is None else count)
    for key, value in items:
        out += u32(len(key)) + u32(len(value)) + key + value
    return out


def manifest(group, index, term, mconf):
    """Size and checksums are left to the harness (fix bits 3 and 4)."""
    out = u32(0x504E5346) + u32(1) + u64(group) + u64(index) + u64(term)
    out += u64(0) + u64(0) + u32(len(mconf)) + u32(0) + pad8(mconf)
    return out + u64(0)


def snapshot_input(fix, man, file):
    return u8(fix) + u16(len(man)) + man + file


def snapshot_seeds():
    three = conf([(1, 1, 0), (2, 1, 0), (3, 1, 0)])
    joint = conf([(1, 1, 1), (2, 1, 1), (4, 2, 0), (5, 0, 1)], joint=True)
    items = [(b"k1", b"v1"), (b"", b"empty key"), (b"k3", b"")]
    return {
        "manifest-and-file": snapshot_input(0x1F, manifest(7, 9, 2, three), kv_snapshot(items)),
        "joint-conf": snapshot_input(0x1F, manifest(7, 20, 4, joint), kv_snapshot([])),
        "no-manifest-file-only": snapshot_input(0, b"", kv_snapshot(items)),
        "items-missing": snapshot_input(0x1F, manifest(7, 9, 2, three),
                                        kv_snapshot(items[:1], count=5)),
    }


# ----------------------------------------------------------------- client

def request(op, rid, group, body=b""):
    return u32(20 + len(body)) + u32(op) + u64(rid) + u64(group) + body


def response(status, rid, hint, value=b""):
    return u32(24 + len(value)) + u32(status) + u64(rid) + u64(hint) + u32(len(value)) + value


def kv_cmd(op, key, expected=None, value=b""):
    absent = expected is None and op == 4
    out = u32(op) + u32(len(key)) + u32(0xFFFFFFFF if absent else len(expected or b""))
    return out + u32(len(value)) + key + (expected or b"") + value


def client_seeds():
    put = request(1, 1, 3, u32(1) + u32(2) + b"k" + b"v1")
    get = request(2, 2, 3, u32(1) + b"k")
    cas_absent = request(4, 3, 3, u32(2) + u32(0xFFFFFFFF) + u32(1) + b"k2" + b"x")
    cas = request(4, 4, 3, u32(1) + u32(2) + u32(2) + b"k" + b"v1" + b"v2")
    delete = request(3, 5, 3, u32(1) + b"k")
    others = request(5, 6, 3) + request(6, 7, 3, u32(2) + b"k2") + request(7, 8, 3)
    digest = u64(3) + u64(9) + u64(0xABCDEF) + u64(0) + u64(2)
    return {
        "requests": u8(0) + put + get + cas_absent + cas + delete + others,
        "request-partial": u8(0) + put + get[:30],
        "responses": u8(1) + response(0, 1, 2, b"value") + response(2, 2, 3)
        + response(0, 8, 0, digest),
        "kv-entry-put": u8(2) + kv_cmd(1, b"key", value=b"value"),
        "kv-entry-cas": u8(2) + kv_cmd(4, b"key", expected=b"old", value=b"new"),
        # A data-role connection: the writes and reads run, the admin ops
        # (DROP, JOIN, TRANSFER, REMOVE_MEMBER, PEERS) are refused. The
        # certificate seeds (mode 4, seed-cert-*) are DER files made once by
        # tools/tls-certs and kept as they are.
        "data-role-requests": u8(3) + put + get + request(18, 9, 3) + request(12, 10, 3)
        + request(16, 11, 3, u64(2)) + request(15, 12, 3, u64(3)) + request(42, 13, 0)
        + delete,
    }


# ------------------------------------------------------------------- raft

def raft_op(op, node=0, arg=0, extra=b""):
    return u8(op) + u8(node) + u8(arg) + extra


def raft_seeds():
    tick = raft_op(0, 0, 255)  # 5.12 s for every node: elections happen
    deliver_all = raft_op(3)
    elect = (raft_op(0, 0, 4) + deliver_all * 2) * 24  # 100 ms steps, 2.4 s
    replicate = (raft_op(5, 0, 7) + raft_op(5, 1, 9) + deliver_all * 4 + raft_op(0, 0, 5)) * 2
    churn = raft_op(4, 0, 1) + raft_op(2, 0, 0) + raft_op(1, 0, 3) + tick + deliver_all * 3
    hold = raft_op(7, 1, 0) + raft_op(5, 0, 3) + deliver_all * 2 + raft_op(7, 1, 1)
    change = raft_op(12, 0, 0, u8(3) + u8(1) + u8(1) + u8(1) + u8(2) + u8(1)) + deliver_all * 4
    compact = raft_op(11, 0, 0) + raft_op(11, 1, 1)
    # Injected APPEND (type 1) from node 2 to node 1 at its term, with entries.
    inject_append = raft_op(6, 0, 0, u8(0) + u8(1 | 0 << 2) + u8(0) + u8(0) + u8(0) + u8(1)
                            + u8(0) + u8(0) + u8(0) + u8(0) + u8(0) + u8(2)
                            + u8(1) + u8(0) + u8(3) + b"abc" + u8(1) + u8(2) + u8(0)
                            + u8(2) + u8(0) + u8(1) + u8(1) + u8(1))
    # Injected SNAPSHOT (type 9) from node 3 to node 2, term + 1.
    inject_snap = raft_op(6, 0, 0, u8(1) + u8(2 | 8 << 2) + u8(1) + u8(0) + u8(5) + u8(5)
                          + u8(0) + u8(0) + u8(0) + u8(0) + u8(0) + u8(20) + u8(3)
                          + u8(2) + u8(0) + u8(1) + u8(1))
    return {
        "three-elect-replicate": u8(2) + u8(3) + elect + replicate + churn + compact,
        "one-node": u8(0) + u8(0) + elect + replicate + compact + replicate,
        "two-hold-change": u8(1) + u8(0x11) + elect + hold + change + replicate,
        "three-quiesce-lease": u8(2) + u8(0x0F) + elect + replicate + tick * 3
        + raft_op(8, 0, 1) + deliver_all * 2 + raft_op(9, 0, 2) + deliver_all * 3,
        "three-injected": u8(2) + u8(3) + elect + replicate + inject_append + inject_snap
        + deliver_all * 3,
    }


GENERATORS = {
    "client": client_seeds,
    "raft": raft_seeds,
    "snapshot": snapshot_seeds,
    "wal": wal_seeds,
    "wire": wire_seeds,
}


def main():
    targets = sys.argv[1:] or sorted(GENERATORS)
    for target in targets:
        out_dir = os.path.join(HERE, "corpus", target)
        os.makedirs(out_dir, exist_ok=True)
        for name, data in GENERATORS[target]().items():
            with open(os.path.join(out_dir, "seed-" + name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
