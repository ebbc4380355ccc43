#!/usr/bin/env python3
"""The whole process's memory with N tenants tracked at once (issue 17's goal: a million
under 200 MiB).

Starts scripts/bench.py's rig (an nginx backend on CPU 1, tenantgate with its bench
config on CPU 0: a plan's rate limit and daily quota, metering, the audit line), then
drives the full route with wrk, every request from a tenant not seen before, until N
distinct tenants have been answered. Every answer must be a 2xx, and the audit file
must name N distinct tenants. Each tenant then holds a limiter bucket, today's usage
row, a known-tenant entry and, once flushed, a row in the store.

Prints the idle RSS, the RSS after the N tenants, and the bytes per tenant. Only the
processes it started are ended, by pid.

    cargo build --release && python3 scripts/tenants.py [N] [uuid]   # N defaults to 1000000
"""

import json
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

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
# `t<k>` (2 to 8 bytes), or with `uuid` a 37-byte id shaped like the UUIDs real apps
# send.
UUID = len(sys.argv) > 2 and sys.argv[2] == "uuid"
# At this machine's rate (about 4k req/s at that scale) a million tenants take four
# minutes; the bound keeps a slow machine from running away.
MAX_SECONDS = 900
NEUTRAL = '{"id":"m_1","memory":"likes green tea"}'


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def metric(admin, name):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def drive(url, work, admin):
    """wrk with one thread: tenant `t<k>` for k = 1, 2, ..., each once (wrk's Lua
    counter is per thread, so one thread keeps them distinct), ended by SIGINT once N
    tenants have usage today (wrk's own stop would idle out its whole duration)."""
    script = os.path.join(work, "tenants.lua")
    with open(script, "w") as f:
        f.write(f"""
local n = 0
wrk.method = "POST"
wrk.body = '{bench.REQUEST}'
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  wrk.headers["X-Tenant-Id"] = {'string.format("t%08x-0000-4000-8000-%012x", n, n)' if UUID else '"t" .. n'}
  return wrk.format()
end
""")
    started = time.monotonic()
    wrk = subprocess.Popen(["taskset", "-c", bench.SIDE_CPU, "wrk", "-t1", "-c16", f"-d{MAX_SECONDS}s",
                            "-s", script, url], stdout=subprocess.PIPE, text=True)
    try:
        while metric(admin, "tenantgate_tenants_active") < N:
            if wrk.poll() is not None:
                sys.exit(f"wrk ended before {N} tenants were tracked")
            time.sleep(1)
    finally:
        wrk.send_signal(signal.SIGINT)
        out = wrk.communicate(timeout=30)[0]
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk saw errors:\n{out}")
    return time.monotonic() - started


def main():
    # A SIGTERM still runs the cleanup below: every started process is ended.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    work = tempfile.mkdtemp(prefix="tg-tenants-")
    rig = bench.Rig(work)
    try:
        # alice's answer would be a leak to every other tenant: one that names nobody.
        rig.answer = NEUTRAL
        # A bucket full again is forgotten (its state equals a fresh one); a slow plan
        # keeps every tenant's for the whole run, the worst case.
        rig.plan = (1, "1h", 1)
        rig.up()
        pid = rig.tenantgate.pid
        time.sleep(1)
        idle = rss_kib(pid)
        url = f"http://127.0.0.1:{rig.ports['tg']}{bench.FULL_PATH}"
        seconds = drive(url, work, rig.ports["tg_admin"])
        # The store flushes today's rows on its own interval; the figure includes them.
        time.sleep(3)
        after = rss_kib(pid)
        tenants = set()
        with open(rig.audit) as f:
            for line in f:
                tenant = json.loads(line).get("tenant")
                if tenant and tenant.startswith("t"):
                    tenants.add(tenant)
        if len(tenants) < N:
            sys.exit(f"only {len(tenants)} distinct tenants were answered, not {N}")
        count = len(tenants)
        per = (after - idle) * 1024 / count
        print(f"tenants: {count} distinct, answered in {seconds:.0f} s ({count / seconds:.0f} req/s)")
        print(f"RSS idle {idle / 1024:.1f} MiB, with {count} tenants {after / 1024:.1f} MiB: {per:.0f} bytes per tenant")
        for name in ("tenantgate_limiter_keys", "tenantgate_tenants_active"):
            print(f"{name} {metric(rig.ports['tg_admin'], name):.0f}")
    finally:
        rig.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
