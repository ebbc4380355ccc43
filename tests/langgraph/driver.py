#!/usr/bin/env python3
"""End-to-end test of tenantgate's LangGraph preset (langgraph.toml) against a real
`langgraph dev` server, driven with the official langgraph_sdk client.

usage: driver.py --proxy http://127.0.0.1:P --server http://127.0.0.1:S

--proxy  is tenantgate's listen address (every tenant call goes there)
--server is LangGraph itself, used only to read its own data and check it

Sections:
  1. alice and bob write the same namespaces and keys (more namespaces than one page);
     each gets, searches, lists and deletes only their own, exactly as written, and
     pages through their own with limit/offset as LangGraph pages without tenantgate.
  2. every attempt to reach the other's items (naming their label, empty prefixes,
     wildcards, the dotted query, look-alike parameters) is refused or finds nothing;
     LangGraph's own data, read directly, is unchanged.
  4. threads and runs: each user's threads are found, counted, paged, run (wait and
     SSE stream), read and copied by their maker only; every thread route with the
     other's thread id is 404; a proposed thread id someone else owns teaches nothing;
     LangGraph's own threads and runs, read directly, are unchanged.
  3. refusals: no X-Tenant-Id -> 400 tenant_required; prune, crons, stateless runs,
     assistants, mcp, a2a, docs -> 403 route_not_allowed; malformed prefixes and
     depths -> 400.

Every check prints one line ("PASS ..." or "FAIL ..."). The last line is
`langgraph e2e: N passed, M failed`; the exit code is 0 only if M == 0.
"""
import argparse
import sys
import traceback

import httpx
from langgraph_sdk import get_sync_client

PASSED = 0
FAILED = []


def check(name, cond, detail=""):
    """Record one check; a check that raises is a failed check and the run goes on."""
    global PASSED
    try:
        ok = cond() if callable(cond) else cond
        err = ""
    except Exception as e:  # noqa: BLE001
        ok, err = False, f"{type(e).__name__}: {str(e)[:300]}"
    if ok:
        PASSED += 1
        print(f"PASS {name}", flush=True)
    else:
        FAILED.append(name)
        print(f"FAIL {name} {detail} {err}".rstrip(), flush=True)


def code(response):
    try:
        return response.json()["error"]["code"]
    except Exception:  # noqa: BLE001
        return None


NAMESPACES = [("memories",), ("memories", "prefs"), ("notes", "2026")] + [
    ("proj", f"p{i}") for i in range(5)
]
KEYS = ["k1", "k2"]


def written(user):
    return {(ns, k): {"owner": user, "ns": list(ns), "k": k} for ns in NAMESPACES for k in KEYS}


def as_tuples(namespaces):
    return sorted(tuple(n) for n in namespaces)


def pages(fetch, page):
    """Every entry fetch(limit, offset) lists, page by page, until a short page: a page
    cut short by a filter after the backend's limit ends it early, and entries come up
    missing."""
    seen, offset = [], 0
    while True:
        got = fetch(page, offset)
        seen.extend(got)
        if len(got) < page:
            return seen
        offset += page
        if offset > 1000:
            raise RuntimeError("the listing never ended")


def all_items(store, prefix, page):
    return pages(lambda limit, offset: store.search_items(prefix, limit=limit, offset=offset)["items"], page)


def all_namespaces(store, page, **kw):
    return pages(lambda limit, offset: store.list_namespaces(limit=limit, offset=offset, **kw)["namespaces"], page)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--server", required=True)
    args = parser.parse_args()

    users = {u: get_sync_client(url=args.proxy, headers={"X-Tenant-Id": u}) for u in ("alice", "bob")}
    server = get_sync_client(url=args.server)
    direct, direct_threads, direct_runs = server.store, server.threads, server.runs
    raw = httpx.Client(base_url=args.proxy, timeout=30)
    alice, bob = users["alice"].store, users["bob"].store

    # --- 1. the same namespaces and keys, each user's own ---------------------------------
    for user, client in users.items():
        for (ns, key), value in written(user).items():
            client.store.put_item(list(ns), key, value)
    for user, store in (("alice", alice), ("bob", bob)):
        mine = written(user)
        check(f"{user}: every get returns their own value, the namespace exactly as written",
              lambda: all(
                  (got := store.get_item(list(ns), key))["value"] == value
                  and got["namespace"] == list(ns) and got["key"] == key
                  for (ns, key), value in mine.items()))
        items = all_items(store, [], page=3)
        check(f"{user}: search with an empty prefix pages through exactly their own items",
              lambda: sorted((tuple(i["namespace"]), i["key"]) for i in items) == sorted(mine)
              and all(i["value"]["owner"] == user for i in items), f"{len(items)} items")
        under = store.search_items(["memories"], limit=100)["items"]
        check(f"{user}: search under ['memories'] finds both levels, as written",
              lambda: sorted((tuple(i["namespace"]), i["key"]) for i in under)
              == sorted(k for k in mine if k[0][0] == "memories"))
        listed = all_namespaces(store, page=3)
        check(f"{user}: list_namespaces pages (limit 3) through exactly their own namespaces",
              lambda: as_tuples(listed) == sorted(NAMESPACES), str(listed))
        check(f"{user}: a page of list_namespaces is full, as LangGraph pages it",
              lambda: len(store.list_namespaces(limit=3)["namespaces"]) == 3)
        check(f"{user}: max_depth counts the user's labels only",
              lambda: as_tuples(store.list_namespaces(max_depth=1)["namespaces"])
              == [("memories",), ("notes",), ("proj",)])
        check(f"{user}: a prefix and a suffix select among their own namespaces",
              lambda: len(store.list_namespaces(prefix=["proj"])["namespaces"]) == 5
              and store.list_namespaces(suffix=["prefs"])["namespaces"] == [["memories", "prefs"]])
        check(f"{user}: a '*' prefix label matches only within their own namespaces",
              lambda: as_tuples(store.list_namespaces(prefix=["*"], limit=100)["namespaces"])
              == sorted(NAMESPACES))

    # LangGraph's own data: each user's under their label, nothing outside.
    upstream = all_items(direct, [], page=50)
    check("langgraph itself: every item is under u_alice or u_bob, as many as were written",
          lambda: sorted({i["namespace"][0] for i in upstream}) == ["u_alice~", "u_bob~"]
          and len(upstream) == 2 * len(NAMESPACES) * len(KEYS), str(len(upstream)))
    check("langgraph itself: u_alice holds alice's values",
          lambda: all(i["value"]["owner"] == "alice"
                      for i in direct.search_items(["u_alice~"], limit=100)["items"]))

    alice.delete_item(["memories"], "k1")
    check("alice's delete removes her item",
          lambda: alice.get_item(["memories"], "k1") is None)
    check("bob's item of the same namespace and key stays (read directly)",
          lambda: direct.get_item(["u_bob~", "memories"], "k1")["value"]["owner"] == "bob")

    # --- 2. reaching the other's items --------------------------------------------------
    check("naming bob's label in a get finds nothing",
          lambda: alice.get_item(["u_bob~", "memories"], "k1") is None)
    check("searching under bob's label finds nothing",
          lambda: alice.search_items(["u_bob~"])["items"] == [])
    # LangGraph's in-memory store lists the namespace of a get that found nothing (the
    # get above): what alice lists under "u_bob~" is what LangGraph holds under
    # u_alice.u_bob, never bob's own namespaces.
    listed = alice.list_namespaces(prefix=["u_bob~"])["namespaces"]
    held = direct.list_namespaces(prefix=["u_alice~", "u_bob~"])["namespaces"]
    check("listing under bob's label lists only alice's own namespaces",
          lambda: held and listed == [n[1:] for n in held] and all(n[0] == "u_alice~" for n in held),
          f"{listed} {held}")
    # LangGraph's search reads "*" as a literal label, so this finds nothing at all.
    check("a '*' search prefix finds nothing",
          lambda: alice.search_items(["*"], limit=100)["items"] == [])
    alice.put_item(["u_bob~", "memories"], "k1", {"owner": "alice", "note": "u_bob__x"})
    check("a put naming bob's label lands under alice's (read directly)",
          lambda: direct.get_item(["u_alice~", "u_bob~", "memories"], "k1")["value"]["owner"] == "alice"
          and direct.get_item(["u_bob~", "memories"], "k1")["value"]["owner"] == "bob")
    check("alice's own text that reads like bob's namespace comes back as stored",
          lambda: (got := alice.get_item(["u_bob~", "memories"], "k1"))["namespace"] == ["u_bob~", "memories"]
          and got["value"]["note"] == "u_bob__x")
    r = raw.get("/store/items", params={"namespace": "u_bob~.memories", "key": "k1"},
                headers={"X-Tenant-Id": "alice"})
    check("the dotted query naming bob's namespace reads alice's own", lambda: r.status_code == 200
          and r.json()["value"]["owner"] == "alice" and r.json()["namespace"] == ["u_bob~", "memories"],
          r.text[:200])
    for query in ["namespace=memories&namespace=u_bob~.memories&key=k2",
                  "namespace%5B%5D=u_bob~.memories&key=k2", "Namespace=u_bob~.memories&key=k2",
                  "namespace=memories;namespace=u_bob&key=k2"]:
        r = raw.get(f"/store/items?{query}", headers={"X-Tenant-Id": "alice"})
        check(f"GET /store/items?{query} -> 400", lambda: r.status_code == 400
              and code(r) == "bad_request", f"{r.status_code} {r.text[:200]}")
    for body in [{"namespace_prefix": "u_bob~"}, {"namespace_prefix": None},
                 {"namespace_prefix": [], "Namespace_Prefix": ["u_bob~"]}]:
        r = raw.post("/store/items/search", json=body, headers={"X-Tenant-Id": "alice"})
        check(f"search {body} -> 400", lambda: r.status_code == 400, f"{r.status_code} {r.text[:200]}")
    for depth in [-1, 1.5, "2", True]:
        r = raw.post("/store/namespaces", json={"max_depth": depth}, headers={"X-Tenant-Id": "alice"})
        check(f"max_depth {depth!r} -> 400", lambda: r.status_code == 400, f"{r.status_code} {r.text[:200]}")
    check("bob still sees all his items", lambda: len(all_items(bob, [], page=7))
          == len(NAMESPACES) * len(KEYS))

    # --- 4. threads and runs: owned by their maker --------------------------------------
    threads = {u: c.threads for u, c in users.items()}
    mine = [threads["alice"].create(metadata={"topic": "trip", "tenantgate_owner": "bob"})]
    mine += [threads["alice"].create(metadata={"topic": "trip" if i % 2 else "work"}) for i in range(4)]
    theirs = threads["bob"].create(metadata={"topic": "trip"})
    first = mine[0]["thread_id"]
    check("a new thread records its maker as owner, whatever the client sent there",
          lambda: mine[0]["metadata"] == {"topic": "trip", "tenantgate_owner": "alice"}
          and direct_threads.get(first)["metadata"]["tenantgate_owner"] == "u_alice~")
    pages = [threads["alice"].search(limit=2, offset=offset) for offset in (0, 2, 4, 6)]
    check("thread search pages (limit 2) through exactly alice's threads, every page full",
          lambda: [len(p) for p in pages] == [2, 2, 1, 0]
          and sorted(t["thread_id"] for p in pages for t in p) == sorted(t["thread_id"] for t in mine),
          str([len(p) for p in pages]))
    check("a metadata filter searches among alice's threads only",
          lambda: len(threads["alice"].search(metadata={"topic": "trip"})) == 3
          and [t["thread_id"] for t in threads["bob"].search(metadata={"topic": "trip"})]
          == [theirs["thread_id"]])
    check("thread count is each user's own", lambda: threads["alice"].count() == 5
          and threads["bob"].count() == 1)
    waited = users["alice"].runs.wait(first, "agent", input={"x": 1})
    check("alice runs the graph on her thread; the graph sees her as its user",
          lambda: waited == {"x": 2, "user": "u_alice~"}, str(waited))
    events = list(users["alice"].runs.stream(first, "agent", input={"x": 5}, stream_mode="values"))
    check("alice streams a run on her thread (server-sent events through tenantgate)",
          lambda: any(e.event == "values" and e.data.get("x") == 6 for e in events), str(events)[:300])
    check("alice reads her thread's state and history",
          lambda: threads["alice"].get_state(first)["values"]["x"] == 6
          and len(threads["alice"].get_history(first)) >= 2)
    check("what the graph wrote under her id is in alice's store, not bob's",
          lambda: alice.get_item(["graph"], "last")["value"] == {"x": 6}
          and bob.get_item(["graph"], "last") is None)
    own = threads["bob"].create()["thread_id"]
    for body, what in [({"config": {"configurable": {"user_id": "u_alice~"}}}, "config.configurable.user_id"),
                       ({"context": {"user_id": "u_alice~"}}, "context.user_id")]:
        r = raw.post(f"/threads/{own}/runs/wait", json={"assistant_id": "agent", "input": {"x": 0}, **body},
                     headers={"X-Tenant-Id": "bob"})
        check(f"bob's run naming alice in {what} -> 400", lambda: r.status_code == 400, f"{r.status_code} {r.text[:200]}")
    r = raw.post(f"/threads/{own}/runs/wait", json={"assistant_id": "agent", "input": {"x": 0}},
                 headers={"X-Tenant-Id": "bob", "user_id": "u_alice~", "User-Id": "u_alice~"})
    check("bob's run with a user_id header of alice's: the graph sees bob",
          lambda: r.status_code == 200 and r.json()["user"] == "u_bob~", f"{r.status_code} {r.text[:200]}")
    check("alice's graph memory is untouched by bob's runs (read directly)",
          lambda: direct.get_item(["u_alice~", "graph"], "last")["value"] == {"x": 6})
    run_id = users["alice"].runs.list(first)[0]["run_id"]
    alice_h, bob_h = {"X-Tenant-Id": "alice"}, {"X-Tenant-Id": "bob"}
    run = {"assistant_id": "agent", "input": {"x": 100}}
    for method, path, body in [
        ("GET", f"/threads/{first}", None), ("PATCH", f"/threads/{first}", {"metadata": {"a": 1}}),
        ("DELETE", f"/threads/{first}", None), ("POST", f"/threads/{first}/copy", {}),
        ("GET", f"/threads/{first}/state", None), ("POST", f"/threads/{first}/state", {"values": {"x": 0}}),
        ("GET", f"/threads/{first}/history", None), ("POST", f"/threads/{first}/runs", run),
        ("POST", f"/threads/{first}/runs/wait", run), ("POST", f"/threads/{first}/runs/stream", run),
        ("GET", f"/threads/{first}/runs", None), ("GET", f"/threads/{first}/runs/{run_id}", None),
        ("GET", f"/threads/{first}/runs/{run_id}/join", None),
        ("POST", f"/threads/{first}/runs/{run_id}/cancel", {}), ("GET", f"/threads/{first}/stream", None),
    ]:
        r = raw.request(method, path, json=body, headers=bob_h)
        check(f"bob: {method} {path.replace(first, 'ALICES')} -> 404 not_found",
              lambda: r.status_code == 404 and code(r) == "not_found", f"{r.status_code} {r.text[:200]}")
    r = raw.post("/threads", json={"thread_id": first, "if_exists": "do_nothing"}, headers=bob_h)
    check("if_exists is refused (do_nothing would hand over a thread nobody owns here)",
          lambda: r.status_code == 400, f"{r.status_code} {r.text[:200]}")
    unowned = direct_threads.create(metadata={"secret": "carol's"})["thread_id"]
    r = raw.post("/threads", json={"thread_id": unowned}, headers=bob_h)
    check("bob proposing the id of a thread made directly in LangGraph gets 409, nothing of it",
          lambda: r.status_code == 409 and "carol" not in r.text
          and raw.get(f"/threads/{unowned}", headers=bob_h).status_code == 404, f"{r.status_code}")
    r = raw.post("/threads", json={"thread_id": first}, headers=bob_h)
    check("bob proposing alice's thread id (raise) is LangGraph's 409, nothing of hers in it",
          lambda: r.status_code == 409 and "topic" not in r.text, f"{r.status_code} {r.text[:200]}")
    check("after all that, alice's thread is as she left it (read directly)",
          lambda: direct_threads.get_state(first)["values"]["x"] == 6
          and len(direct_runs.list(first)) == 2
          and direct_threads.get(first)["metadata"]["tenantgate_owner"] == "u_alice~")
    threads["alice"].update(first, metadata={"tenantgate_owner": "bob", "b": 2})
    check("an update cannot hand the thread to someone else",
          lambda: direct_threads.get(first)["metadata"]["tenantgate_owner"] == "u_alice~")
    for body in [{"supersteps": [{"updates": [{"values": {"x": 9}}]}]}, {"metadata": "u_bob"}]:
        r = raw.post("/threads", json=body, headers=alice_h)
        check(f"create with {list(body)} -> 400", lambda: r.status_code == 400, f"{r.status_code}")
    r = raw.post(f"/threads/{first}/runs", json={**run, "webhook": "http://127.0.0.1:1/hook"}, headers=alice_h)
    check("a run's webhook is refused (LangGraph would call any URL)", lambda: r.status_code == 400,
          f"{r.status_code}")
    copy = threads["alice"].copy(first)
    check("alice's copy is hers, and bob's 404",
          lambda: threads["alice"].get(copy["thread_id"])["thread_id"] == copy["thread_id"]
          and raw.get(f"/threads/{copy['thread_id']}", headers=bob_h).status_code == 404)
    threads["alice"].delete(first)
    r = raw.get(f"/threads/{first}", headers=alice_h)
    check("a deleted thread is forgotten: 404 for its maker too",
          lambda: r.status_code == 404 and code(r) == "not_found", f"{r.status_code}")

    # --- 3. refusals --------------------------------------------------------------------
    for method, path, body in [("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}}),
                               ("GET", "/store/items?namespace=a&key=k", None),
                               ("DELETE", "/store/items", {"namespace": ["a"], "key": "k"}),
                               ("POST", "/store/items/search", {"namespace_prefix": []}),
                               ("POST", "/store/namespaces", {})]:
        r = raw.request(method, path, json=body)
        check(f"no tenant: {method} {path} -> 400 tenant_required",
              lambda: r.status_code == 400 and code(r) == "tenant_required", f"{r.status_code}")
    for method, path in [("POST", "/threads/prune"), ("POST", f"/threads/{first}/runs/crons"),
                         ("GET", f"/threads/{first}/storage"), ("POST", f"/threads/{first}/commands"),
                         ("PUT", "/threads"), ("POST", "/runs/wait"), ("POST", "/runs"), ("POST", "/runs/crons"), ("POST", "/assistants/search"),
                         ("GET", "/assistants/agent"), ("POST", "/mcp/"), ("POST", "/mcp"),
                         ("POST", "/a2a/agent"), ("GET", "/docs"), ("GET", "/openapi.json")]:
        r = raw.request(method, path, json={}, headers={"X-Tenant-Id": "alice"})
        check(f"{method} {path} -> 403 route_not_allowed",
              lambda: r.status_code == 403 and code(r) == "route_not_allowed", f"{r.status_code}")
    check("GET /ok is shared", lambda: raw.get("/ok").status_code == 200)

    print(f"langgraph e2e: {PASSED} passed, {len(FAILED)} failed")
    for name in FAILED:
        print(f"  failed: {name}")
    return 0 if not FAILED else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print(f"langgraph e2e: {PASSED} passed, {len(FAILED) + 1} failed")
        sys.exit(1)
