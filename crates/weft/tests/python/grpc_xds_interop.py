#!/usr/bin/env python3
"""A proxyless gRPC client and its backends, for Weft's xDS interop test
(crates/weft/tests/grpc_xds.rs). Only `grpcio` is needed: no generated stubs, the
method `/weft.test.Echo/Who` carries raw bytes both ways.

    serve NAME=IP [NAME=IP ...]
        One gRPC server per NAME=IP, all on one port that is free on every IP
        (different loopback addresses, so that every instance of the service listens
        on the service's port, as Workload resources describe them). Prints
        {"port": PORT} and serves until standard input closes. A call answers
        "NAME@IP".

    client
        Reads commands on standard input and answers each with one JSON line. Channels
        are kept per target for the life of the process (GRPC_XDS_BOOTSTRAP names the
        xDS server):
          calls TARGET N
              N calls; {"counts": {reply: n}, "errors": n, "first_error": str|null}.
              The first call on a new channel waits for it to be ready.
          follow TARGET PREFIX BATCH TIMEOUT_S
              Batches of BATCH calls until one batch is answered only by replies that
              start with PREFIX, or TIMEOUT_S pass; {"followed": bool, "batches": n,
              "seconds": s, "last": {reply: n}, "errors": n, "first_error": ...}.
          quit
"""

import json
import sys
import time
from concurrent import futures

try:
    import grpc
except ImportError:
    sys.stderr.write(
        "grpc_xds_interop.py: the Python package grpcio is missing "
        "(python3 -m pip install grpcio; scripts/test.sh installs it)\n"
    )
    sys.exit(3)

SERVICE = "weft.test.Echo"
METHOD = "/weft.test.Echo/Who"
CALL_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 20.0


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def bind(server, address):
    """add_insecure_port: the port, or 0 when the address is taken (older grpcio
    returns 0, newer raises)."""
    try:
        return server.add_insecure_port(address)
    except RuntimeError:
        return 0


def serve(specs):
    backends = []
    for spec in specs:
        name, _, ip = spec.partition("=")
        if not name or not ip:
            sys.exit("serve: expected NAME=IP, got %r" % spec)
        backends.append((name, ip))
    for _attempt in range(50):
        servers = []
        port = 0
        ok = True
        for name, ip in backends:
            reply = ("%s@%s" % (name, ip)).encode()

            def who(_request, _context, reply=reply):
                return reply

            handler = grpc.method_handlers_generic_handler(
                SERVICE, {"Who": grpc.unary_unary_rpc_method_handler(who)}
            )
            server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=4),
                options=[("grpc.so_reuseport", 0)],
            )
            server.add_generic_rpc_handlers((handler,))
            got = bind(server, "%s:%d" % (ip, port))
            if got == 0 or (port and got != port):
                ok = False
                break
            port = got
            servers.append(server)
        if ok:
            break
        # The port chosen on the first address was taken on another one: try again.
        for s in servers:
            s.stop(None)
    else:
        sys.exit("serve: no port is free on every address")
    for s in servers:
        s.start()
    emit({"port": port})
    # Serve until the test closes our standard input (or dies).
    sys.stdin.read()
    for s in servers:
        s.stop(0.5)


class Client:
    def __init__(self):
        self.channels = {}

    def stub(self, target):
        """The target's one channel and method, made (and waited for) on first use."""
        if target not in self.channels:
            channel = grpc.insecure_channel(target)
            grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT_S)
            self.channels[target] = (channel, channel.unary_unary(METHOD))
        return self.channels[target][1]

    def batch(self, target, n):
        who = self.stub(target)
        counts = {}
        errors = 0
        first_error = None
        for _ in range(n):
            try:
                reply = who(b"", timeout=CALL_TIMEOUT_S).decode()
                counts[reply] = counts.get(reply, 0) + 1
            except grpc.RpcError as e:
                errors += 1
                if first_error is None:
                    first_error = "%s: %s" % (e.code(), e.details())
        return counts, errors, first_error

    def calls(self, target, n):
        counts, errors, first_error = self.batch(target, int(n))
        emit({"counts": counts, "errors": errors, "first_error": first_error})

    def follow(self, target, prefix, batch, timeout_s):
        start = time.monotonic()
        batches = 0
        errors = 0
        first_error = None
        last = {}
        followed = False
        while time.monotonic() - start < float(timeout_s):
            last, e, fe = self.batch(target, int(batch))
            batches += 1
            errors += e
            first_error = first_error or fe
            if last and all(k.startswith(prefix) for k in last):
                followed = True
                break
            time.sleep(0.05)
        emit(
            {
                "followed": followed,
                "batches": batches,
                "seconds": round(time.monotonic() - start, 3),
                "last": last,
                "errors": errors,
                "first_error": first_error,
            }
        )


def client():
    c = Client()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, args = words[0], words[1:]
        try:
            if command == "calls":
                c.calls(*args)
            elif command == "follow":
                c.follow(*args)
            elif command == "quit":
                break
            else:
                emit({"error": "unknown command %r" % command})
        except Exception as e:  # noqa: BLE001 - report anything to the test
            emit({"error": "%s: %s" % (type(e).__name__, e)})
    for channel, _ in c.channels.values():
        channel.close()


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        serve(sys.argv[2:])
    elif len(sys.argv) == 2 and sys.argv[1] == "client":
        client()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
