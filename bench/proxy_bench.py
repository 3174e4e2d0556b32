#!/usr/bin/env python3
"""Weft proxy benchmark: direct, weft, nginx and HAProxy in one run, interleaved.

Measures, per target and round (see ../../shared/BENCHMARKING.md for why so):
  * throughput: wrk closed loop (1 thread, 50 connections), proxy pinned to one core,
    wrk and the upstream on the other; req/s and req/s per proxy core (CPU from /proc);
  * latency: oha at fixed rates with coordinated-omission correction, proxy and client
    on one core; p50/p90/p99 and the latency each proxy adds over direct;
  * memory: proxy RSS idle and peak (VmRSS/VmHWM summed over the process tree);
  * upstream connection reuse: connections the upstream accepted during a run.
Prints Markdown tables to stdout; raw numbers go to bench/last-run.json.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

UPSTREAM_PORT = 18080
UPSTREAM_STATUS_PORT = 18090
PORTS = {"direct": UPSTREAM_PORT, "weft": 18083, "nginx": 18081, "haproxy": 18082}
BODY = "x" * 1024
PROXY_CPU = "1"
OTHER_CPU = "0"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def nginx_conf(workdir, name, body):
    return f"""
worker_processes 1;
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {workdir}/{name}-body;
    proxy_temp_path {workdir}/{name}-proxy;
    fastcgi_temp_path {workdir}/{name}-fastcgi;
    uwsgi_temp_path {workdir}/{name}-uwsgi;
    scgi_temp_path {workdir}/{name}-scgi;
{body}
}}
"""


def upstream_conf(workdir):
    return nginx_conf(workdir, "upstream", f"""
    server {{
        listen 127.0.0.1:{UPSTREAM_PORT} reuseport backlog=4096;
        location / {{ default_type text/plain; return 200 "{BODY}"; }}
    }}
    server {{
        listen 127.0.0.1:{UPSTREAM_STATUS_PORT};
        location / {{ stub_status; }}
    }}""")


def nginx_proxy_conf(workdir):
    return nginx_conf(workdir, "nginx-proxy", f"""
    upstream backend {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 128; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{PORTS['nginx']} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}""")


def haproxy_conf():
    return f"""
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
    option http-keep-alive
frontend fe
    bind 127.0.0.1:{PORTS['haproxy']}
    default_backend be
backend be
    server up 127.0.0.1:{UPSTREAM_PORT}
"""


def weft_conf():
    return f"""
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 18093 }} }}
static_resources:
  listeners:
  - name: bench
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {PORTS['weft']} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:
          - name: envoy.filters.http.router
  clusters:
  - name: upstream
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {UPSTREAM_PORT} }} }} }}
"""


def start(cmd, cpu):
    return subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def tree(pid):
    """pid and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def memory_kib(pid, key):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def upstream_accepts():
    text = urllib.request.urlopen(f"http://127.0.0.1:{UPSTREAM_STATUS_PORT}/", timeout=2).read().decode()
    return int(text.splitlines()[2].split()[0])


def run_wrk(port, seconds):
    out = subprocess.run(["taskset", "-c", OTHER_CPU, "wrk", "-t1", "-c50", f"-d{seconds}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return float(m.group(1)), int(errors.group(1)) if errors else 0


def run_oha(port, rate, seconds, cpu):
    out = subprocess.run(["taskset", "-c", cpu, "oha", "--no-tui", "--output-format", "json", "-q", str(rate),
                          "--latency-correction", "-c", "16", "-z", f"{seconds}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    pct = data["latencyPercentiles"]
    ok = data["summary"]["successRate"]
    return {"p50": pct["p50"] * 1e6, "p90": pct["p90"] * 1e6, "p99": pct["p99"] * 1e6, "success": ok}


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return (max(xs) - min(xs)) / 2 if len(xs) > 1 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 10)))
    ap.add_argument("--rates", default=os.environ.get("RATES", "1000,5000,10000"))
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    work = tempfile.mkdtemp(prefix="weft-bench-")
    procs = {}
    try:
        write(f"{work}/upstream.conf", upstream_conf(work))
        write(f"{work}/nginx-proxy.conf", nginx_proxy_conf(work))
        write(f"{work}/haproxy.cfg", haproxy_conf())
        write(f"{work}/weft.yaml", weft_conf())
        for d in ["upstream-body", "nginx-proxy-body"]:
            os.makedirs(f"{work}/{d}", exist_ok=True)
        procs["upstream"] = start(["nginx", "-c", f"{work}/upstream.conf"], OTHER_CPU)
        wait_port(UPSTREAM_PORT)
        procs["weft"] = start([args.weft, "proxy", "--concurrency", "1", "--config", f"{work}/weft.yaml"], PROXY_CPU)
        procs["nginx"] = start(["nginx", "-c", f"{work}/nginx-proxy.conf"], PROXY_CPU)
        procs["haproxy"] = start(["haproxy", "-db", "-f", f"{work}/haproxy.cfg"], PROXY_CPU)
        for name in ["weft", "nginx", "haproxy"]:
            wait_port(PORTS[name])
        time.sleep(1)
        idle = {name: memory_kib(procs[name].pid, "VmRSS") for name in ["weft", "nginx", "haproxy"]}
        # Peak under load: sampled during the runs, since VmHWM also holds start-up peaks
        # (weft decodes Envoy's descriptors to read its file, then frees them).
        under_load = {name: 0 for name in idle}
        stop = threading.Event()

        def sample():
            while not stop.wait(0.1):
                for name in under_load:
                    under_load[name] = max(under_load[name], memory_kib(procs[name].pid, "VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        targets = ["direct", "weft", "nginx", "haproxy"]
        tput = {t: [] for t in targets}
        per_core = {t: [] for t in targets}
        reuse = {t: [] for t in targets}
        errors = {t: 0 for t in targets}
        lat = {(t, r): [] for t in targets for r in rates}
        for rnd in range(args.rounds):
            for t in targets:
                pid = procs[t].pid if t != "direct" else None
                accepts0 = upstream_accepts()
                cpu0, wall0 = (cpu_seconds(pid) if pid else 0), time.time()
                rps, errs = run_wrk(PORTS[t], args.duration)
                cpu1, wall1 = (cpu_seconds(pid) if pid else 0), time.time()
                tput[t].append(rps)
                errors[t] += errs
                reuse[t].append(upstream_accepts() - accepts0 - 1)
                if pid:
                    share = (cpu1 - cpu0) / (wall1 - wall0)
                    per_core[t].append(rps / share if share > 0 else float("nan"))
                print(f"round {rnd + 1} {t:8} {rps:10.0f} req/s", file=sys.stderr)
            for rate in rates:
                for t in targets:
                    cpu = PROXY_CPU
                    lat[(t, rate)].append(run_oha(PORTS[t], rate, args.duration, cpu))
                    r = lat[(t, rate)][-1]
                    print(f"round {rnd + 1} {t:8} @{rate}: p50 {r['p50']:.0f}us p99 {r['p99']:.0f}us", file=sys.stderr)
        stop.set()
        sampler.join()
        hwm = {name: memory_kib(procs[name].pid, "VmHWM") for name in ["weft", "nginx", "haproxy"]}

        report(args, targets, rates, tput, per_core, reuse, errors, lat, idle, under_load, hwm)
        with open(os.path.join(os.path.dirname(__file__), "last-run.json"), "w") as f:
            json.dump({"throughput": tput, "per_core": per_core, "reuse": reuse, "errors": errors,
                       "latency": {f"{t}@{r}": v for (t, r), v in lat.items()}, "rss_idle_kib": idle,
                       "rss_under_load_kib": under_load, "vm_hwm_kib": hwm}, f, indent=1)
    finally:
        for p in procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except Exception:
                pass
        shutil.rmtree(work, ignore_errors=True)


def report(args, targets, rates, tput, per_core, reuse, errors, lat, idle, under_load, hwm):
    print(f"## Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"{args.rounds} rounds interleaved, {args.duration} s per measurement, medians ± half the spread.\n")
    print("### Throughput at one proxy worker (wrk -t1 -c50, 1 KiB responses)\n")
    print("| target | req/s | req/s per proxy core | vs nginx (per core) | upstream connections opened | non-2xx |")
    print("|---|---|---|---|---|---|")
    ngx = median(per_core["nginx"])
    for t in targets:
        pc = median(per_core[t]) if per_core[t] else None
        ratio = f"{pc / ngx:.2f}x" if pc else "-"
        pcs = f"{pc:,.0f} ± {spread(per_core[t]):,.0f}" if pc else "-"
        print(f"| {t} | {median(tput[t]):,.0f} ± {spread(tput[t]):,.0f} | {pcs} | {ratio} | {max(reuse[t])} | {errors[t]} |")
    print()
    for rate in rates:
        print(f"### Latency at {rate:,} req/s (oha, 16 connections, coordinated-omission corrected), µs\n")
        print("| target | p50 | p90 | p99 | added p50 | added p90 | added p99 | success |")
        print("|---|---|---|---|---|---|---|---|")
        d = {k: median([r[k] for r in lat[("direct", rate)]]) for k in ["p50", "p90", "p99"]}
        for t in targets:
            m = {k: median([r[k] for r in lat[(t, rate)]]) for k in ["p50", "p90", "p99"]}
            s = min(r["success"] for r in lat[(t, rate)])
            added = "| - | - | - " if t == "direct" else "".join(f"| {m[k] - d[k]:.0f} " for k in ["p50", "p90", "p99"])
            print(f"| {t} | {m['p50']:.0f} | {m['p90']:.0f} | {m['p99']:.0f} {added}| {s:.4f} |")
        print()
    print("### Memory (RSS summed over the process tree), MiB\n")
    print("| proxy | idle | max under load (sampled every 100 ms) | VmHWM (includes start-up) |")
    print("|---|---|---|---|")
    for t in ["weft", "nginx", "haproxy"]:
        print(f"| {t} | {idle[t] / 1024:.1f} | {under_load[t] / 1024:.1f} | {hwm[t] / 1024:.1f} |")


if __name__ == "__main__":
    main()
