#!/usr/bin/env python3
"""Two or more tenantgate binaries side by side, for a change's before and after.

    python3 scripts/bench_ab.py ROUNDS NAME=BINARY NAME=BINARY ...

Starts scripts/bench.py's rig (nginx backend on CPU 1) and one process per binary on
CPU 0, each with bench.py's config on ports of its own, then runs wrk -c64 for 5 s
on the pass-through and the full route of each, rotating through them ROUNDS times.
Prints median req/s, CPU µs per request (the process's utime+stime over the
requests) and p99. Only the processes it started are ended, by pid.
"""
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench
bins = dict(a.split("=",1) for a in sys.argv[2:])
rounds = int(sys.argv[1])
work = tempfile.mkdtemp(prefix="tg-ab-")
rig = bench.Rig(work)
try:
    rig.up(); rig.sanity()
    conf = open(os.path.join(work, "tenantgate.toml")).read()
    procs = {}
    for i, (name, path) in enumerate(bins.items()):
        port, admin = bench.free_port(), bench.free_port()
        c = conf.replace(f"127.0.0.1:{rig.ports['tg']}", f"127.0.0.1:{port}").replace(f"127.0.0.1:{rig.ports['tg_admin']}", f"127.0.0.1:{admin}").replace("audit.jsonl", f"audit-{i}.jsonl").replace("/store", f"/store{i}")
        cp = os.path.join(work, f"tg{i}.toml"); open(cp, "w").write(c)
        env = dict(os.environ, TOKIO_WORKER_THREADS="1")
        p = rig.start([path, "run", "--config", cp], bench.PROXY_CPU, f"tg{i}", env, port)
        procs[name] = (port, p.pid)
    res = {}
    for r in range(rounds):
        for name, (port, pid) in procs.items():
            for route, path in (("pass", bench.PASS_PATH), ("full", bench.FULL_PATH)):
                c0 = bench.cpu_seconds(pid)
                w = bench.run_wrk(f"http://127.0.0.1:{port}{path}", 5, work)
                cpu = (bench.cpu_seconds(pid) - c0) / w["requests"] * 1e6
                res.setdefault((name, route), []).append((w["rps"], cpu, w["p99"]))
    for (name, route), v in res.items():
        print(f"{name:10} {route}: rps {statistics.median(x[0] for x in v):7.0f}  cpu/req {statistics.median(x[1] for x in v):6.1f} us  p99 {statistics.median(x[2] for x in v):.2f} ms")
finally:
    rig.stop()
    shutil.rmtree(work, ignore_errors=True)
