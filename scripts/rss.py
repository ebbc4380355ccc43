#!/usr/bin/env python3
"""Peak memory of the release proxy under N concurrent large requests (issue 12).

Starts an upstream on 127.0.0.1 that answers every POST with a JSON body of
RESPONSE_MIB MiB, and target/release/tenantgate in front of it on a route that
rewrites every item of the request and buffers the answer. Sends N concurrent
POSTs of REQUEST_MIB MiB each, ROUNDS times, sampling the proxy's VmRSS every 20 ms;
prints the statuses and the peak (VmHWM). Only the processes it started are ended.

    cargo build --release && python3 scripts/rss.py [N] [REQUEST_MIB] [RESPONSE_MIB] [MAX_BUFFERED]
"""

import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
REQUEST_MIB = int(sys.argv[2]) if len(sys.argv) > 2 else 8
RESPONSE_MIB = int(sys.argv[3]) if len(sys.argv) > 3 else 16
BUDGET = sys.argv[4] if len(sys.argv) > 4 else "256MiB"
ROUNDS = 3
BINARY = os.path.join(os.path.dirname(__file__), "..", "target", "release", "tenantgate")


def items(mib, prefix):
    """{"ids": [...]} of about `mib` MiB; every item is rewritten or scanned."""
    count = mib * 1024 * 1024 // 12 - 1
    ids = [f"{prefix}{i:08}" for i in range(count)]
    return json.dumps({"ids": ids}, separators=(",", ":")).encode()


ANSWER = items(RESPONSE_MIB, "r")


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        while length > 0:
            length -= len(self.rfile.read(min(length, 1 << 20)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    return 0


def post(port, body, statuses, tenant):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(
            "POST",
            "/items",
            body=body,
            headers={"Content-Type": "application/json", "X-Tenant-Id": tenant},
        )
        response = connection.getresponse()
        response.read()
        statuses[response.status] += 1
    except OSError as error:
        # The proxy may answer (and close) before the whole body is sent: a refusal.
        try:
            response = connection.getresponse()
            statuses[response.status] += 1
        except Exception:
            statuses[type(error).__name__] += 1
    finally:
        connection.close()


def main():
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, admin = free_port(), free_port()
    work = tempfile.mkdtemp(prefix="tenantgate-rss-")
    config = os.path.join(work, "tenantgate.toml")
    with open(config, "w") as f:
        f.write(f"""
[listen]
addr = "127.0.0.1:{port}"
[admin]
addr = "127.0.0.1:{admin}"
[upstream]
url = "http://127.0.0.1:{upstream.server_address[1]}"
timeout = "120s"
[limits]
max_body = "{REQUEST_MIB + 1}MiB"
max_response_body = "{RESPONSE_MIB + 1}MiB"
max_buffered = "{BUDGET}"
[log]
level = "warn"
[[route]]
match = "POST /items"
scope = "tenant"
rewrite.json = {{ "/ids" = "prefix" }}
""")
    proxy = subprocess.Popen(
        [os.path.abspath(BINARY), "run", "--config", config],
        cwd=work,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        idle = vm(proxy.pid, "VmRSS")
        body = items(REQUEST_MIB, "i")
        statuses, peak = Counter(), 0
        started = time.time()
        for _ in range(ROUNDS):
            threads = [
                threading.Thread(target=post, args=(port, body, statuses, f"t{i}"))
                for i in range(N)
            ]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                peak = max(peak, vm(proxy.pid, "VmRSS"))
                time.sleep(0.02)
        took = time.time() - started
        hwm = vm(proxy.pid, "VmHWM")
        after = vm(proxy.pid, "VmRSS")
        print(
            f"{ROUNDS} rounds of {N} concurrent {REQUEST_MIB} MiB requests, "
            f"{RESPONSE_MIB} MiB answers, max_buffered {BUDGET}, {took:.1f} s: "
            f"statuses {dict(statuses)}"
        )
        print(
            f"RSS idle {idle} MiB, peak sampled {peak} MiB, VmHWM {hwm} MiB, "
            f"after {after} MiB"
        )
        alive = proxy.poll() is None
        print("proxy alive afterwards:", alive)
        return 0 if alive else 1
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
        upstream.shutdown()


if __name__ == "__main__":
    sys.exit(main())
