#!/usr/bin/env python3
"""A TCP proxy that injects partitions, for test_partition.sh where network
namespaces are not available: each node reaches each other node through its
own route, and a route can be blocked on command.

  partition_proxy.py CONTROL_PORT NAME=LISTEN_HOST:PORT>TARGET_HOST:PORT ...

A blocked route moves no bytes in either direction, on the connections it
carries and on new ones, which it accepts and holds: to the nodes it looks
like a network that drops every packet, as TCP sees it (nothing is lost;
everything waits). Unblocking lets the held bytes through. A connection that
either side closes is closed on the other side too.

Commands, one line each, on a TCP connection to 127.0.0.1:CONTROL_PORT,
each answered with one line, "ok" or "error: ...":
  block NAME      unblock NAME      heal (unblock every route)

Prints "ready" once every port listens; exits 3 when a port is in use.
Python 3 standard library only.
"""
import asyncio
import errno
import sys

CHUNK = 65536


class Route:
    def __init__(self, name, listen, target):
        self.name = name
        self.listen = listen
        self.target = target
        self.open = asyncio.Event()
        self.open.set()


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def parse_route(text):
    name, _, rest = text.partition("=")
    listen, _, target = rest.partition(">")
    if not name or not listen or not target:
        raise ValueError("bad route '%s'" % text)
    return Route(name, parse_addr(listen), parse_addr(target))


async def pump(route, reader, writer, peer_writer):
    try:
        while True:
            await route.open.wait()
            data = await reader.read(CHUNK)
            if not data:
                break
            await route.open.wait()  # Bytes read just before a block wait too.
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        peer_writer.close()


async def serve(route, reader, writer):
    await route.open.wait()
    try:
        target_reader, target_writer = await asyncio.open_connection(*route.target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(
        pump(route, reader, target_writer, writer),
        pump(route, target_reader, writer, target_writer),
    )


async def control(routes, reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        words = line.decode(errors="replace").split()
        reply = "ok"
        if words == ["heal"]:
            for route in routes.values():
                route.open.set()
        elif len(words) == 2 and words[0] in ("block", "unblock") and words[1] in routes:
            route = routes[words[1]]
            route.open.clear() if words[0] == "block" else route.open.set()
        else:
            reply = "error: unknown command '%s'" % " ".join(words)
        writer.write((reply + "\n").encode())
        await writer.drain()
    writer.close()


async def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    routes = {}
    for text in argv[2:]:
        route = parse_route(text)
        routes[route.name] = route
    servers = []
    try:
        for route in routes.values():
            servers.append(await asyncio.start_server(
                lambda r, w, route=route: serve(route, r, w), *route.listen))
        servers.append(await asyncio.start_server(
            lambda r, w: control(routes, r, w), "127.0.0.1", int(argv[1])))
    except OSError as e:
        print("partition_proxy: %s" % e, file=sys.stderr)
        return 3 if e.errno == errno.EADDRINUSE else 1
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
