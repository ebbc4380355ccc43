#!/usr/bin/env python3
"""tenantgate against nginx on the same backend, interleaved in one run (issue 17).

Run it through scripts/bench.sh, which builds the release binary and installs the
tools. Starts, on 127.0.0.1 ports of its own:

  backend  nginx, one worker, answering every request with a fixed 88-byte JSON that
           names alice's namespaced session (what a memory backend would send back);
  nginx    nginx `proxy_pass`, one worker, a keep-alive upstream pool and a buffered
           JSON access log, as a production nginx in front of the backend would run;
  tenantgate  the release binary, one worker thread (TOKIO_WORKER_THREADS=1), with
           two routes: `full`, with every stage on (header identity, path `prefix`,
           JSON `bind`, keep-free leak guard and unwrap of the answer, a plan's rate
           limit and daily quota, metering, the audit line to a file), and `pass`, a
           `shared` route that forwards untouched (metered and audited still).

The two cores: the proxy under test (nginx's worker, or tenantgate's every thread)
runs on CPU 0; the backend and the load generator share CPU 1. The direct figure is
the backend on CPU 1 with the load generator beside it.

Measures, rotating the order of targets every round:
  wrk -t1 -c64 keep-alive POSTs: req/s, p50, p99;
  hey at a fixed 2,000 req/s (20 connections at 100/s each): p50, p99;
  h2load -t1 -c16 -m10 HTTP/2 (h2c prior knowledge): req/s, mean latency.
and the CPU time each proxy spent per request (its utime+stime over the requests).

Each run must see only 2xx answers and, on tenantgate's full route, the unwrapped
answer and one audit line per request; otherwise the script fails: a refusal is
cheaper than a forward and would flatter the figures. Only processes it started are
ended, by pid.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# scripts/bench.sh builds these; BENCH_BUILD=debug (its --short mode) measures the
# debug build, whose figures only prove that the harness works.
BUILD = os.environ.get("BENCH_BUILD", "release")
FLOOR = os.path.join(ROOT, "scripts", "floor", "target", BUILD, "hyper-floor")
BINARY = os.environ.get("TENANTGATE_BIN", os.path.join(ROOT, "target", BUILD, "tenantgate"))
ANSWER = '{"id":"m_1","session_id":"u_alice__trip","user_id":"u_alice","memory":"likes green tea"}'
UNWRAPPED = {"id": "m_1", "session_id": "trip", "user_id": "alice", "memory": "likes green tea"}
REQUEST = '{"memory":"likes green tea","metadata":{"topic":"drinks"}}'
FULL_PATH = "/v1/sessions/trip/memories"
PASS_PATH = "/v1/pass"
FIXED_RATE = 2000
PROXY_CPU = "0"
SIDE_CPU = "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, process, what, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port} within {seconds} s")


def cpu_seconds(pid):
    """utime + stime of a process and all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Rig:
    def __init__(self, work):
        self.work = work
        self.processes = []
        self.ports = {k: free_port() for k in ("backend", "backend_h2", "nginx", "nginx_h2", "tg", "tg_admin", "floor")}
        # What the backend answers every request with (scripts/tenants.py names no tenant).
        self.answer = ANSWER
        # The plan's rate, per and burst: a bucket is forgotten once it is full again.
        self.plan = (100000000, "1s", 100000000)

    def start(self, argv, cpu, what, env=None, port=None):
        log = open(os.path.join(self.work, f"{what}.log"), "w")
        process = subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=log, stderr=log, env=env)
        self.processes.append(process)
        if port:
            wait_port(port, process, what)
        return process

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def nginx(self, name, server_block, cpu):
        conf = os.path.join(self.work, f"{name}.conf")
        with open(conf, "w") as f:
            f.write(f"""
worker_processes 1;
daemon off;
master_process on;
pid {self.work}/{name}.pid;
error_log {self.work}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  client_body_temp_path {self.work}/{name}-body;
  proxy_temp_path {self.work}/{name}-proxy;
  fastcgi_temp_path {self.work}/{name}-fcgi;
  uwsgi_temp_path {self.work}/{name}-uwsgi;
  scgi_temp_path {self.work}/{name}-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  http2_max_requests 10000000;
{server_block}
}}
""")
        process = self.start(["nginx", "-c", conf, "-p", self.work], cpu, name)
        return process

    def worker_pid(self, master):
        """nginx's single worker: the child of its master."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{master.pid}/task/{master.pid}/children") as f:
                children = f.read().split()
            if children:
                return int(children[0])
            time.sleep(0.05)
        sys.exit("nginx started no worker")

    def up(self):
        p = self.ports
        answer = self.answer.replace("'", "\\'")
        backend = self.nginx("backend", f"""
  access_log off;
  server {{
    listen 127.0.0.1:{p['backend']};
    listen 127.0.0.1:{p['backend_h2']} http2;
    location / {{ default_type application/json; return 200 '{answer}'; }}
  }}""", SIDE_CPU)
        wait_port(p["backend"], backend, "backend nginx")
        proxy = self.nginx("nginx", f"""
  log_format audit escape=json '{{"time":"$time_iso8601","request_id":"$request_id","method":"$request_method","uri":"$uri","status":$status,"upstream_status":"$upstream_status","latency":$request_time}}';
  access_log {self.work}/nginx-access.log audit buffer=64k flush=1s;
  upstream backend {{ server 127.0.0.1:{p['backend']}; keepalive 128; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{p['nginx']};
    listen 127.0.0.1:{p['nginx_h2']} http2;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}""", PROXY_CPU)
        wait_port(p["nginx"], proxy, "proxy nginx")
        self.nginx_worker = self.worker_pid(proxy)

        config = os.path.join(self.work, "tenantgate.toml")
        self.audit = os.path.join(self.work, "audit.jsonl")
        with open(config, "w") as f:
            f.write(f"""
[listen]
addr = "127.0.0.1:{p['tg']}"
max_connections = 10000
[upstream]
url = "http://127.0.0.1:{p['backend']}"
[identity]
mode = "header"
header = "X-Tenant-Id"
[tenant]
namespace = "u_{{tenant}}"
separator = "__"
[limits]
default_plan = "bench"
[limits.plans.bench]
rate = {self.plan[0]}
per = "{self.plan[1]}"
burst = {self.plan[2]}
daily_units = 1000000000000
[limits.project]
daily_units = 1000000000000
[admin]
addr = "127.0.0.1:{p['tg_admin']}"
[log]
level = "warn"
audit_file = "{self.audit}"
[store]
path = "{self.work}/store"
[reload]
watch = false
poll = "0s"

[[route]]
name = "full"
match = "POST /v1/sessions/{{session_id}}/memories"
scope = "tenant"
[route.rewrite]
path = {{ session_id = "prefix" }}
json = {{ "/user_id" = "bind" }}

[[route]]
name = "pass"
match = "POST {PASS_PATH}"
scope = "shared"
""")
        env = dict(os.environ, TOKIO_WORKER_THREADS="1")
        self.tenantgate = self.start([BINARY, "run", "--config", config], PROXY_CPU, "tenantgate", env, p["tg"])
        self.floor = self.start([FLOOR, f"127.0.0.1:{p['floor']}", f"http://127.0.0.1:{p['backend']}"],
                                PROXY_CPU, "hyper-floor", env, p["floor"])

    def urls(self):
        p = self.ports
        return {
            "direct": (f"http://127.0.0.1:{p['backend']}{FULL_PATH}", f"http://127.0.0.1:{p['backend_h2']}{FULL_PATH}", None),
            "nginx": (f"http://127.0.0.1:{p['nginx']}{FULL_PATH}", f"http://127.0.0.1:{p['nginx_h2']}{FULL_PATH}", self.nginx_worker),
            "hyper floor": (f"http://127.0.0.1:{p['floor']}{FULL_PATH}", None, self.floor.pid),
            "tenantgate pass": (f"http://127.0.0.1:{p['tg']}{PASS_PATH}", f"http://127.0.0.1:{p['tg']}{PASS_PATH}", self.tenantgate.pid),
            "tenantgate full": (f"http://127.0.0.1:{p['tg']}{FULL_PATH}", f"http://127.0.0.1:{p['tg']}{FULL_PATH}", self.tenantgate.pid),
        }

    def sanity(self):
        """Every target answers; tenantgate's full route really enforces."""
        for name, (url, _, _) in self.urls().items():
            request = urllib.request.Request(url, data=REQUEST.encode(), method="POST",
                                             headers={"Content-Type": "application/json", "X-Tenant-Id": "alice"})
            with urllib.request.urlopen(request, timeout=5) as r:
                body = json.loads(r.read())
                if name == "tenantgate full":
                    if body != UNWRAPPED or r.headers.get("X-Tenant-Namespace") != "u_alice":
                        sys.exit(f"the full route did not unwrap: {body} {dict(r.headers)}")
                elif body != json.loads(ANSWER):
                    sys.exit(f"{name} answered {body}")
        # Without the identity header the full route refuses: enforcement is on.
        request = urllib.request.Request(self.urls()["tenantgate full"][0], data=REQUEST.encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=5)
            sys.exit("the full route forwarded a request without a tenant")
        except urllib.error.HTTPError as e:
            if e.code != 400:
                sys.exit(f"the full route answered {e.code}, not 400 tenant_required, to a request without a tenant")


def audit_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def parse_duration(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(url, seconds, work):
    script = os.path.join(work, "post.lua")
    with open(script, "w") as f:
        f.write(f"""wrk.method = "POST"
wrk.body = '{REQUEST}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tenant-Id"] = "alice"
""")
    out = subprocess.run(["taskset", "-c", SIDE_CPU, "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk saw errors on {url}:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": parse_duration(latency["50"]),
        "p99": parse_duration(latency["99"]),
        "requests": requests,
    }


def run_hey(url, seconds):
    connections = 20
    out = subprocess.run(["taskset", "-c", SIDE_CPU, "hey", "-z", f"{seconds}s", "-c", str(connections),
                          "-q", str(FIXED_RATE // connections), "-m", "POST", "-T", "application/json",
                          "-H", "X-Tenant-Id: alice", "-d", REQUEST, url],
                         capture_output=True, text=True, check=True).stdout
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    if not codes or any(code != "200" for code, _ in codes) or "Error distribution" in out:
        sys.exit(f"hey saw errors on {url}:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%+ in ([\d.]+) secs", out, re.M))
    return {
        "p50": float(latency["50"]) * 1e3,
        "p99": float(latency["99"]) * 1e3,
        "requests": sum(int(n) for _, n in codes),
    }


def run_h2load(url, seconds, work):
    body = os.path.join(work, "request.json")
    with open(body, "w") as f:
        f.write(REQUEST)
    out = subprocess.run(["taskset", "-c", SIDE_CPU, "h2load", "-t1", "-c16", "-m10", "-D", str(seconds),
                          "-d", body, "-H", "Content-Type: application/json", "-H", "X-Tenant-Id: alice", url],
                         capture_output=True, text=True, check=True).stdout
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not status or int(status.group(1)) == 0 or sum(map(int, status.groups()[1:])) or int(done.group(3)) or int(done.group(4)):
        sys.exit(f"h2load saw errors on {url}:\n{out}")
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out).group(1)
    return {
        "rps": float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1)),
        "mean": parse_duration(mean),
        "requests": int(status.group(1)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", action="store_true", help="1 round of 2 s per target (CI)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.short else 5)
    seconds = args.seconds or (2 if args.short else 10)
    if not os.access(BINARY, os.X_OK):
        sys.exit(f"{BINARY} is missing: run scripts/bench.sh, which builds it")

    # A SIGTERM still runs the cleanup below: every started process is ended.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    work = tempfile.mkdtemp(prefix="tenantgate-bench-")
    rig = Rig(work)
    results = {}
    try:
        rig.up()
        rig.sanity()
        targets = list(rig.urls().items())
        for round_ in range(rounds):
            order = targets[round_ % len(targets):] + targets[:round_ % len(targets)]
            for name, (url, h2url, pid) in order:
                before_audit = audit_lines(rig.audit)
                cpu_before = cpu_seconds(pid) if pid else 0.0
                wrk = run_wrk(url, seconds, work)
                cpu = (cpu_seconds(pid) - cpu_before) if pid else None
                hey = run_hey(url, seconds)
                h2 = run_h2load(h2url, seconds, work) if h2url else None
                if name.startswith("tenantgate"):
                    time.sleep(0.2)
                    lines = audit_lines(rig.audit) - before_audit
                    expected = wrk["requests"] + hey["requests"] + (h2["requests"] if h2 else 0)
                    if lines < expected:
                        sys.exit(f"{name}: {lines} audit lines for {expected} requests")
                entry = results.setdefault(name, {"wrk": [], "hey": [], "h2": [], "cpu_us": []})
                entry["wrk"].append(wrk)
                entry["hey"].append(hey)
                if h2:
                    entry["h2"].append(h2)
                if cpu is not None:
                    entry["cpu_us"].append(cpu / wrk["requests"] * 1e6)
                print(f"round {round_ + 1}/{rounds} {name:16} wrk {wrk['rps']:9.0f} req/s p50 {wrk['p50']:.2f} ms "
                      f"p99 {wrk['p99']:.2f} ms | hey p50 {hey['p50']:.3f} p99 {hey['p99']:.3f} ms | "
                      + (f"h2 {h2['rps']:9.0f} req/s" if h2 else "h2 -"), flush=True)
        rss = rss_kib(rig.tenantgate.pid)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{rig.ports['tg_admin']}/metrics", timeout=5).read()
        if b"\ntenantgate_audit_lines_dropped_total 0\n" not in metrics:
            sys.exit("tenantgate dropped audit lines during the run")
    finally:
        rig.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, rounds, seconds, rss)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def report(results, rounds, seconds, rss):
    med = statistics.median
    nginx = results["nginx"]
    nginx_rps = med(r["rps"] for r in nginx["wrk"])
    nginx_h2 = med(r["rps"] for r in nginx["h2"])
    direct_p50 = med(r["p50"] for r in results["direct"]["hey"])
    print(f"\n{BUILD} build; medians of {rounds} interleaved rounds, {seconds} s per run; proxy on CPU {PROXY_CPU}, "
          f"backend and load generator on CPU {SIDE_CPU}; {time.strftime('%Y-%m-%d')}")
    print("| target | wrk req/s | x nginx | p50 ms | p99 ms | CPU µs/req | added p50 at 2k/s ms | p99 at 2k/s ms | h2 req/s | x nginx |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, entry in results.items():
        rps = med(r["rps"] for r in entry["wrk"])
        h2 = med(r["rps"] for r in entry["h2"]) if entry["h2"] else None
        cpu = f"{med(entry['cpu_us']):.1f}" if entry["cpu_us"] else "-"
        added = med(r["p50"] for r in entry["hey"]) - direct_p50
        print(f"| {name} | {rps:.0f} | {rps / nginx_rps:.2f} | {med(r['p50'] for r in entry['wrk']):.2f} | "
              f"{med(r['p99'] for r in entry['wrk']):.2f} | {cpu} | {added:+.3f} | "
              f"{med(r['p99'] for r in entry['hey']):.3f} | " + (f"{h2:.0f} | {h2 / nginx_h2:.2f} |" if h2 else "- | - |"))
    print(f"\ntenantgate RSS after the runs: {rss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
