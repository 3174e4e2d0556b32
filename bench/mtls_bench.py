#!/usr/bin/env python3
"""What mTLS between two Weft sidecars costs: the same pair of proxies (a client-side
proxy calling a server-side proxy in front of the upstream) with plaintext and with
mTLS between them (TLS 1.3, X25519MLKEM768, SPIFFE IDs checked, as sidecars run it),
in one run, interleaved.

Measures (see ../../shared/BENCHMARKING.md):
  * latency at a fixed rate (oha, coordinated-omission corrected) through the pair,
    pooled connections between the sidecars: what mTLS adds per request once
    connections are open, and what the pair adds over a direct call;
  * handshake rate: every request on a new connection between the sidecars
    (max_requests_per_connection 1), wrk closed loop; new connections per second per
    core of the two proxies together, plaintext vs mTLS, the server's handshake
    counter checked against the requests.
Prints Markdown to stdout; raw numbers go to bench/mtls-last-run.json.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from proxy_bench import (OTHER_CPU, PROXY_CPU, UPSTREAM_PORT, cpu_seconds, median, run_oha,  # noqa: E402
                         spread, start, upstream_conf, wait_port, write)

TD = "spiffe://cluster.local/ns/default/sa"
# Client-side proxy listeners: pooled or new connection per request, plain or mTLS.
CLIENT = {"plain": 18110, "mtls": 18111, "plain-new": 18112, "mtls-new": 18113}
SERVER = {"plain": 18120, "mtls": 18121}
ADMIN = {"client": 18114, "server": 18124}


def certificates(work):
    """A root and one leaf per side with its SPIFFE ID, ECDSA P-256, as Weft's CA makes."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=work)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "root.key", "-out", "root.pem", "-days", "2", "-subj", "/O=cluster.local/CN=bench root")
    for side in ["client", "server"]:
        write(f"{work}/{side}.ext", f"subjectAltName=URI:{TD}/{side}\nextendedKeyUsage=serverAuth,clientAuth\n"
              "keyUsage=digitalSignature\nbasicConstraints=CA:FALSE\n")
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{side}.key",
            "-out", f"{side}.csr", "-subj", "/")
        run("x509", "-req", "-in", f"{side}.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial",
            "-days", "1", "-extfile", f"{side}.ext", "-out", f"{side}.pem")


def tls_context(work, kind, side, peer_match):
    indent = "      " if kind == "Downstream" else "    "
    require = f"{indent}    require_client_certificate: true\n" if kind == "Downstream" else ""
    return f"""{indent}transport_socket:
{indent}  name: envoy.transport_sockets.tls
{indent}  typed_config:
{indent}    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.{kind}TlsContext
{require}{indent}    common_tls_context:
{indent}      tls_params: {{ tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }}
{indent}      alpn_protocols: ["http/1.1"]
{indent}      tls_certificates:
{indent}      - certificate_chain: {{ filename: {work}/{side}.pem }}
{indent}        private_key: {{ filename: {work}/{side}.key }}
{indent}      validation_context:
{indent}        trusted_ca: {{ filename: {work}/root.pem }}
{indent}        match_typed_subject_alt_names:
{indent}        - san_type: URI
{indent}          matcher: {peer_match}
"""


def listener(name, port, cluster, tls=""):
    return f"""  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: {cluster} }} }}]
          http_filters:
          - name: envoy.filters.http.router
{tls}"""


def cluster(name, port, tls="", new_connections=False):
    options = ""
    if new_connections:
        options = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: { max_requests_per_connection: 1 }
        explicit_http_config: { http_protocol_options: {} }
"""
    return f"""  - name: {name}
    connect_timeout: 1s
{options}{tls}    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"""


def client_conf(work):
    upstream_tls = tls_context(work, "Upstream", "client", f'{{ exact: "{TD}/server" }}')
    listeners = "".join(listener(f"to-{k}", p, f"server-{k}") for k, p in CLIENT.items())
    clusters = (cluster("server-plain", SERVER["plain"]) + cluster("server-mtls", SERVER["mtls"], upstream_tls)
                + cluster("server-plain-new", SERVER["plain"], new_connections=True)
                + cluster("server-mtls-new", SERVER["mtls"], upstream_tls, new_connections=True))
    return f"""admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ADMIN['client']} }} }}
static_resources:
  listeners:
{listeners}  clusters:
{clusters}"""


def server_conf(work):
    downstream_tls = tls_context(work, "Downstream", "server", '{ prefix: "spiffe://cluster.local/" }')
    return f"""admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ADMIN['server']} }} }}
static_resources:
  listeners:
{listener("inbound-plain", SERVER["plain"], "app")}{listener("inbound-mtls", SERVER["mtls"], "app", downstream_tls)}  clusters:
{cluster("app", UPSTREAM_PORT)}"""


def handshakes(admin_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=2).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("weft_tls_handshakes_total{") and 'side="downstream"' in line and 'result="success"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_wrk(port, seconds):
    out = subprocess.run(["taskset", "-c", OTHER_CPU, "wrk", "-t1", "-c50", f"-d{seconds}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, int(errors.group(1)) if errors else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 10)))
    ap.add_argument("--rate", type=int, default=int(os.environ.get("RATE", 1000)))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="weft-mtls-bench-")
    procs = {}
    try:
        certificates(work)
        write(f"{work}/upstream.conf", upstream_conf(work))
        os.makedirs(f"{work}/upstream-body", exist_ok=True)
        write(f"{work}/client.yaml", client_conf(work))
        write(f"{work}/server.yaml", server_conf(work))
        procs["upstream"] = start(["nginx", "-c", f"{work}/upstream.conf"], OTHER_CPU)
        wait_port(UPSTREAM_PORT)
        for side in ["server", "client"]:
            procs[side] = start([args.weft, "proxy", "--concurrency", "1", "--config", f"{work}/{side}.yaml"],
                                PROXY_CPU)
        for port in CLIENT.values():
            wait_port(port)
        time.sleep(1)

        lat = {t: [] for t in ["direct", "plain", "mtls"]}
        port_of = {"direct": UPSTREAM_PORT, "plain": CLIENT["plain"], "mtls": CLIENT["mtls"]}
        rate = {t: [] for t in ["plain-new", "mtls-new"]}
        checked = {t: [] for t in rate}
        for rnd in range(args.rounds):
            for t in lat:
                r = run_oha(port_of[t], args.rate, args.duration, PROXY_CPU)
                lat[t].append(r)
                print(f"round {rnd + 1} {t:10} @{args.rate}: p50 {r['p50']:.0f}us p99 {r['p99']:.0f}us",
                      file=sys.stderr)
            for t in rate:
                pids = [procs["client"].pid, procs["server"].pid]
                hs0, cpu0, wall0 = handshakes(ADMIN["server"]), sum(map(cpu_seconds, pids)), time.time()
                rps, total, errors = run_wrk(CLIENT[t], args.duration)
                hs1, cpu1, wall1 = handshakes(ADMIN["server"]), sum(map(cpu_seconds, pids)), time.time()
                cores = (cpu1 - cpu0) / (wall1 - wall0)
                rate[t].append({"rps": rps, "per_core": rps / cores if cores else float("nan"),
                                "errors": errors})
                checked[t].append({"requests": total, "handshakes": hs1 - hs0})
                print(f"round {rnd + 1} {t:10} {rps:8.0f} new connections/s, {rps / cores:8.0f} per core, "
                      f"{hs1 - hs0:.0f} handshakes for {total} requests", file=sys.stderr)
        report(args, lat, rate, checked)
        with open(os.path.join(os.path.dirname(__file__), "mtls-last-run.json"), "w") as f:
            json.dump({"latency": lat, "new_connections": rate, "handshakes": checked}, f, indent=1)
    finally:
        for p in procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except Exception:
                pass
        shutil.rmtree(work, ignore_errors=True)


def report(args, lat, rate, checked):
    print(f"## mTLS run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"{args.rounds} rounds interleaved, {args.duration} s per measurement, medians ± half the spread.\n")
    print(f"### Latency through two sidecars at {args.rate:,} req/s (oha, 16 connections, pooled between the"
          " sidecars), µs\n")
    print("| path | p50 | p90 | p99 | added p50 vs direct | added p99 vs direct | success |")
    print("|---|---|---|---|---|---|---|")
    d = {k: median([r[k] for r in lat["direct"]]) for k in ["p50", "p90", "p99"]}
    for t, label in [("direct", "direct"), ("plain", "two sidecars, plaintext"), ("mtls", "two sidecars, mTLS")]:
        m = {k: median([r[k] for r in lat[t]]) for k in ["p50", "p90", "p99"]}
        s = {k: spread([r[k] for r in lat[t]]) for k in ["p50", "p99"]}
        ok = min(r["success"] for r in lat[t])
        added = "- | -" if t == "direct" else f"{m['p50'] - d['p50']:.0f} | {m['p99'] - d['p99']:.0f}"
        print(f"| {label} | {m['p50']:.0f} ± {s['p50']:.0f} | {m['p90']:.0f} | {m['p99']:.0f} ± {s['p99']:.0f}"
              f" | {added} | {ok:.4f} |")
    mt = {k: median([r[k] for r in lat["mtls"]]) - median([r[k] for r in lat["plain"]]) for k in ["p50", "p99"]}
    print(f"\nmTLS over plaintext between the same sidecars: p50 {mt['p50']:+.0f} µs, p99 {mt['p99']:+.0f} µs.\n")
    print("### New connection per request between the sidecars (wrk -t1 -c50; both proxies' CPU)\n")
    print("| between the sidecars | new connections/s | per core of the two proxies | handshakes counted"
          " / requests | non-2xx |")
    print("|---|---|---|---|---|")
    for t, label in [("plain-new", "plaintext TCP"), ("mtls-new", "mTLS handshake (TLS 1.3, X25519MLKEM768)")]:
        rps = [r["rps"] for r in rate[t]]
        pc = [r["per_core"] for r in rate[t]]
        hs = sum(c["handshakes"] for c in checked[t])
        rq = sum(c["requests"] for c in checked[t])
        errs = sum(r["errors"] for r in rate[t])
        print(f"| {label} | {median(rps):,.0f} ± {spread(rps):,.0f} | {median(pc):,.0f} ± {spread(pc):,.0f}"
              f" | {hs:,.0f} / {rq:,} | {errs} |")
    print()


if __name__ == "__main__":
    main()
