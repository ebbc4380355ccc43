#!/usr/bin/env python3
"""Allocator calls per proxied request of a built tenantgate, counted by the kernel.

    python3 scripts/allocs.py [REQUESTS]      (root; perf with uprobes; hey)

Starts the bench rig (scripts/bench.py), puts uprobes on jemalloc's entry points in
the binary (`_rjem_malloc`, `_rjem_realloc` and kin), and counts their calls in the
tenantgate process with `perf stat` while hey sends REQUESTS keep-alive POSTs to each
route, after a warm-up. Unlike `cargo bench --bench allocations` it counts the release
binary itself (fat LTO, as shipped) and every thread of it, background tasks included,
so it reads a little higher. A count, not a time: it repeats on a busy machine.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ENTRY_POINTS = ("malloc", "mallocx", "calloc", "realloc", "rallocx")
GROUP = "tg_allocs"


def hey(url, n):
    """Sends n requests; every answer must be a 2xx (hey exits 0 on any status, and a
    refusal allocates less than a forward, which would flatter the count)."""
    done = subprocess.run(["hey", "-n", str(n), "-c", "8", "-m", "POST", "-T", "application/json",
                           "-H", "X-Tenant-Id: alice", "-d", bench.REQUEST, url],
                          check=True, capture_output=True, text=True)
    statuses = re.findall(r"^\s*\[(\d{3})\]\s+(\d+) responses", done.stdout, re.MULTILINE)
    answered = sum(int(count) for status, count in statuses if status.startswith("2"))
    if answered != n or len(statuses) != 1:
        sys.exit(f"{url}: not every answer was a 2xx ({statuses}):\n{done.stdout}")


def perf_probe(*args):
    done = subprocess.run(["perf", "probe", "-q", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"perf probe {' '.join(args)} failed:\n{done.stderr}")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    if os.geteuid() != 0:
        sys.exit("uprobes need root")
    binary = os.path.realpath(bench.BINARY)
    # Probes left by a run that was killed would make --add fail.
    subprocess.run(["perf", "probe", "-q", "--del", f"{GROUP}:*"], capture_output=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    work = tempfile.mkdtemp(prefix="tg-allocs-")
    rig = bench.Rig(work)
    perf = None
    try:
        for name in ENTRY_POINTS:
            perf_probe("-x", binary, "--add", f"{GROUP}:{name}=_rjem_{name}")
        rig.up()
        pid = rig.tenantgate.pid
        print(f"{binary}, {n} requests a route, hey -c 8:")
        for route, path in (("full", bench.FULL_PATH), ("pass", bench.PASS_PATH)):
            url = f"http://127.0.0.1:{rig.ports['tg']}{path}"
            hey(url, 2000)
            events = ",".join(f"{GROUP}:{name}" for name in ENTRY_POINTS)
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", events, "-p", str(pid)],
                                    stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
            hey(url, n)
            perf.send_signal(signal.SIGINT)
            _, report = perf.communicate(timeout=30)
            perf = None
            counts = {}
            for line in report.splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[0].isdigit():
                    counts[fields[2].split(":")[-1]] = int(fields[0])
            if len(counts) != len(ENTRY_POINTS):
                sys.exit(f"perf stat counted {counts}:\n{report}")
            detail = ", ".join(f"{name} {count / n:.1f}" for name, count in counts.items() if count)
            print(f"  {route}: {sum(counts.values()) / n:.1f} allocator calls per request ({detail})")
    finally:
        # perf stat holds the probes' events open: it must end before they can go.
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=30)
        rig.stop()
        shutil.rmtree(work, ignore_errors=True)
        perf_probe("--del", f"{GROUP}:*")


if __name__ == "__main__":
    main()
