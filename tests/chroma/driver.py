#!/usr/bin/env python3
"""End-to-end test of tenantgate's Chroma preset (chroma.toml) against a real Chroma 1.5.x server.

usage: driver.py --proxy http://127.0.0.1:P --chroma http://127.0.0.1:C

--proxy  is tenantgate's listen address (every tenant call goes there)
--chroma is the Chroma server itself, used only to read Chroma's own data and check it

Sections:
  1.  alice and bob (X-Tenant-Id, default tenant/database, no setup step) make a collection of the
      same name and use every collection and record call; each sees only its own; carol (fresh),
      look-alike ids (ALICE, alice_, u_alice, ...) see nothing; dave's collections made directly in
      Chroma become his once get-by-name or list shows them.
  1b. Chroma's own data, read directly: u_alice / u_bob provisioned, nothing in default_tenant.
  2.  bob names alice's collection UUID on every UUID route under several tenant/database prefixes
      (and other spellings of the UUID): 404 not_found each time; alice's data is unchanged in Chroma.
  3.  refusals: no X-Tenant-Id -> 400 tenant_required; reset, tenant admin, /api/v1, CRN,
      search/fork/indexing_status/functions -> 403 route_not_allowed.
  4.  the user's own text that looks like a namespace (documents, metadata, collection names)
      comes back exactly as stored and is not withheld.
  5.  the kept-alive connection survives refused requests that carry a body.

Every check prints one line ("PASS ..." or "FAIL ..."). The last line is
`chroma e2e: N passed, M failed`; the exit code is 0 only if M == 0.
No embedding model is ever loaded: every collection is created with embedding_function=None
and every call passes embeddings= / query_embeddings= explicitly.
"""
import argparse
import json
import os
import sys
import traceback
from urllib.parse import urlsplit

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import chromadb  # noqa: E402
import httpx  # noqa: E402

PASSED = 0
FAILED = []


def check(name, cond, detail=""):
    """Record one check. cond is a bool (or a callable returning a bool / raising)."""
    global PASSED
    try:
        ok = cond() if callable(cond) else cond
        err = ""
    except Exception as e:  # a raising check is a failed check, the run goes on
        ok, err = False, f"{type(e).__module__}.{type(e).__name__}: {str(e)[:300]}"
        if isinstance(e, httpx.RemoteProtocolError):
            err += (" [tenantgate closed the kept-alive connection without answering; see the"
                    " keep-alive checks in section 5]")
    if ok:
        PASSED += 1
        print(f"PASS {name}", flush=True)
    else:
        FAILED.append(name)
        msg = f"FAIL {name}"
        if detail:
            msg += f" -- {detail() if callable(detail) else detail}"
        if err:
            msg += f" -- raised {err}"
        print(msg, flush=True)
    return ok


def raises(exc_types, fn):
    """True if fn() raises one of exc_types."""
    try:
        fn()
    except exc_types:
        return True
    return False


def hostport(url):
    u = urlsplit(url)
    return u.hostname, u.port


# ----------------------------------------------------------------------------- data

DIM = 3
def vec(i, who):
    # distinct, deterministic 3-d vectors per tenant
    base = 1.0 if who == "alice" else -1.0
    return [base * (i + 1), 0.5 * i, 0.25]


def docs_of(res):
    return sorted(d for d in (res.get("documents") or []) if d is not None)


def flat(lst):
    return [x for inner in (lst or []) for x in inner]


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--chroma", required=True)
    args = ap.parse_args()
    PH, PP = hostport(args.proxy)
    CH, CP = hostport(args.chroma)

    raw = httpx.Client(base_url=args.proxy.rstrip("/"), timeout=30)

    directs = {}

    def direct(tenant="u_alice", database="default_database"):
        """A client straight to Chroma (no proxy), to read what Chroma really holds."""
        if (tenant, database) not in directs:
            directs[(tenant, database)] = chromadb.HttpClient(host=CH, port=CP, tenant=tenant, database=database)
        return directs[(tenant, database)]

    # ------------------------------------------------------------------ 1. two tenants, same names
    print("# 1. alice and bob through the proxy, default tenant/database, no setup step", flush=True)
    users = ("alice", "bob")
    other = {"alice": "bob", "bob": "alice"}
    C, COL, IDS = {}, {}, {}
    for u in users:
        ok = check(f"[{u}] HttpClient(headers X-Tenant-Id={u}) connects (tenant provisioned on first request)",
                   lambda: C.__setitem__(u, chromadb.HttpClient(host=PH, port=PP, headers={"X-Tenant-Id": u})) or True)
        if not ok:
            print("cannot continue without a client", flush=True)
            return finish()
    for u in users:
        check(f"[{u}] create_collection('notes', embedding_function=None)",
              lambda: COL.__setitem__(u, C[u].create_collection(
                  "notes", embedding_function=None, metadata={"owner": u})) or COL[u].name == "notes")
    if len(COL) != 2:
        return finish()
    check("alice and bob got different collection UUIDs for the same name",
          COL["alice"].id != COL["bob"].id, lambda: f"{COL['alice'].id} vs {COL['bob'].id}")

    for u in users:
        IDS[u] = [f"{u}-1", f"{u}-2", f"{u}-3"]
        check(f"[{u}] add 3 records",
              lambda: COL[u].add(ids=IDS[u], embeddings=[vec(i, u) for i in range(3)],
                                 documents=[f"{u} secret doc {i + 1}" for i in range(3)],
                                 metadatas=[{"owner": u, "n": i + 1} for i in range(3)]) or True)

    for u in users:
        col, o = COL[u], other[u]
        want_docs = sorted(f"{u} secret doc {i + 1}" for i in range(3))
        g = {}
        check(f"[{u}] get() returns exactly its own 3 records",
              lambda: (g.update(col.get()) or True) and sorted(g["ids"]) == sorted(IDS[u])
              and docs_of(g) == want_docs, lambda: g)
        q = {}
        check(f"[{u}] query(query_embeddings) returns only its own records",
              lambda: (q.update(col.query(query_embeddings=[vec(0, o)], n_results=3)) or True)
              and sorted(flat(q["ids"])) == sorted(IDS[u])
              and all(d.startswith(u + " ") for d in flat(q["documents"])), lambda: q)
        check(f"[{u}] query nearest neighbour of its own vector is its own record",
              lambda: col.query(query_embeddings=[vec(1, u)], n_results=1)["ids"] == [[f"{u}-2"]])
        check(f"[{u}] count() == 3", lambda: col.count() == 3)
        p = {}
        check(f"[{u}] peek() returns only its own records (with embeddings)",
              lambda: (p.update(col.peek(10)) or True) and sorted(p["ids"]) == sorted(IDS[u])
              and len(p["embeddings"]) == 3 and all(d.startswith(u + " ") for d in p["documents"]), lambda: p)
        check(f"[{u}] get(where={{'n': 2}}) filters inside its own collection",
              lambda: col.get(where={"n": 2})["ids"] == [f"{u}-2"])

    for u in users:
        col = COL[u]
        check(f"[{u}] upsert (1 existing, 1 new)",
              lambda: col.upsert(ids=[f"{u}-2", f"{u}-4"], embeddings=[vec(1, u), vec(3, u)],
                                 documents=[f"{u} secret doc 2 v2", f"{u} secret doc 4"],
                                 metadatas=[{"owner": u, "n": 2}, {"owner": u, "n": 4}]) or True)
        check(f"[{u}] after upsert: count 4 and doc 2 replaced",
              lambda: col.count() == 4 and col.get(ids=[f"{u}-2"])["documents"] == [f"{u} secret doc 2 v2"])
        check(f"[{u}] update metadata of {u}-1",
              lambda: col.update(ids=[f"{u}-1"], metadatas=[{"owner": u, "n": 1, "updated": True}]) or True)
        check(f"[{u}] after update: metadata changed",
              lambda: col.get(ids=[f"{u}-1"])["metadatas"] == [{"owner": u, "n": 1, "updated": True}])
        check(f"[{u}] delete(ids=[{u}-3])", lambda: col.delete(ids=[f"{u}-3"]) or True)
        check(f"[{u}] after delete: count 3, ids 1,2,4",
              lambda: col.count() == 3 and sorted(col.get()["ids"]) == [f"{u}-1", f"{u}-2", f"{u}-4"])

    # the other tenant's writes did not show up
    for u in users:
        check(f"[{u}] still sees none of {other[u]}'s documents",
              lambda: all(d.startswith(u + " ") for d in COL[u].get()["documents"]))

    # collections: lists, counts, by name, get_or_create, rename, delete
    for u in users:
        check(f"[{u}] create_collection('{u}-only')",
              lambda: C[u].create_collection(f"{u}-only", embedding_function=None) is not None)
    for u in users:
        names = []
        check(f"[{u}] list_collections() == {{notes, {u}-only}}",
              lambda: (names.extend(c.name for c in C[u].list_collections()) or True)
              and sorted(names) == sorted(["notes", f"{u}-only"]), lambda: names)
        check(f"[{u}] list_collections() ids are its own",
              lambda: COL[u].id in [c.id for c in C[u].list_collections()]
              and COL[other[u]].id not in [c.id for c in C[u].list_collections()])
        check(f"[{u}] count_collections() == 2", lambda: C[u].count_collections() == 2)
        check(f"[{u}] get_collection('notes') is its own UUID",
              lambda: C[u].get_collection("notes").id == COL[u].id)
        check(f"[{u}] get_collection('{other[u]}-only') -> NotFoundError",
              lambda: raises(chromadb.errors.NotFoundError, lambda: C[u].get_collection(f"{other[u]}-only")))
        check(f"[{u}] get_or_create_collection('notes') returns the existing own collection",
              lambda: C[u].get_or_create_collection("notes", embedding_function=None).id == COL[u].id)
    GOC = {}
    for u in users:
        check(f"[{u}] get_or_create_collection('scratch') creates one",
              lambda: GOC.__setitem__(u, C[u].get_or_create_collection("scratch", embedding_function=None)) or True)
    check("alice and bob 'scratch' collections have different UUIDs",
          lambda: GOC["alice"].id != GOC["bob"].id)
    check("[alice] delete_collection('scratch')", lambda: C["alice"].delete_collection("scratch") or True)
    check("[alice] 'scratch' is gone for alice",
          lambda: raises(chromadb.errors.NotFoundError, lambda: C["alice"].get_collection("scratch")))
    check("[bob] 'scratch' still exists for bob after alice deleted hers",
          lambda: C["bob"].get_collection("scratch").id == GOC["bob"].id)
    check("[bob] delete_collection('scratch')", lambda: C["bob"].delete_collection("scratch") or True)

    check("[alice] modify(name='notes-alice', metadata=...) (rename)",
          lambda: COL["alice"].modify(name="notes-alice", metadata={"owner": "alice", "renamed": True}) or True)
    check("[alice] get_collection('notes-alice') is the renamed collection",
          lambda: C["alice"].get_collection("notes-alice").id == COL["alice"].id
          and C["alice"].get_collection("notes-alice").metadata == {"owner": "alice", "renamed": True})
    check("[alice] get_collection('notes') -> NotFoundError after the rename",
          lambda: raises(chromadb.errors.NotFoundError, lambda: C["alice"].get_collection("notes")))
    check("[bob] get_collection('notes') unaffected by alice's rename",
          lambda: C["bob"].get_collection("notes").id == COL["bob"].id
          and C["bob"].get_collection("notes").metadata == {"owner": "bob"})
    check("[bob] modify(name='notes-bob') (rename)", lambda: COL["bob"].modify(name="notes-bob") or True)
    for u in users:
        names = []
        check(f"[{u}] final list_collections() == {{notes-{u}, {u}-only}}",
              lambda: (names.extend(c.name for c in C[u].list_collections()) or True)
              and sorted(names) == sorted([f"notes-{u}", f"{u}-only"]), lambda: names)
    check("[alice] get_collection by UUID (get_collection_by_id route via raw by-id) works for the owner",
          lambda: raw.get(f"/api/v2/tenants/default_tenant/databases/default_database/collections/by-id/{COL['alice'].id}",
                          headers={"X-Tenant-Id": "alice"}).json()["name"] == "notes-alice")

    check("[alice] create_collection('scratch') again after deleting it: new UUID, usable",
          lambda: (lambda col: col.id != GOC["alice"].id and (col.add(ids=["s"], embeddings=[vec(0, "alice")])
                                                              or True) and col.count() == 1
                   and (C["alice"].delete_collection("scratch") or True))(
              C["alice"].create_collection("scratch", embedding_function=None)))

    # a third user who never did anything: provisioned on first request, sees nothing
    check("[carol] fresh user: list_collections() == [] and count_collections() == 0",
          lambda: (lambda c: c.list_collections() == [] and c.count_collections() == 0)(
              chromadb.HttpClient(host=PH, port=PP, headers={"X-Tenant-Id": "carol"})))

    # ids that look like alice's must not land in her tenant
    for look in ("ALICE", "Alice", "alice_", "u_alice", "alice__x"):
        check(f"[{look!r}] look-alike user id sees no collections and not alice's UUID",
              lambda: (lambda c: c.list_collections() == [] and c.count_collections() == 0)(
                  chromadb.HttpClient(host=PH, port=PP, headers={"X-Tenant-Id": look}))
              and raw.get(f"/api/v2/tenants/default_tenant/databases/default_database/collections/"
                          f"{COL['alice'].id}/count", headers={"X-Tenant-Id": look}).status_code == 404)

    # collections that exist in the user's Chroma tenant but were not made through the proxy:
    # ownership is learned from get-by-name and from list answers
    D = {}
    check("[dave] connects; a collection is made for him directly in Chroma (u_dave)",
          lambda: D.__setitem__("c", chromadb.HttpClient(host=PH, port=PP, headers={"X-Tenant-Id": "dave"}))
          or (direct("u_dave").create_collection("legacy-a", embedding_function=None)
              .add(ids=["d1", "d2"], embeddings=[vec(0, "bob"), vec(1, "bob")], documents=["dave 1", "dave 2"])
              or True))
    check("[dave] before any lookup, the UUID of legacy-a is not his (404 not_found)",
          lambda: raw.get(f"/api/v2/tenants/default_tenant/databases/default_database/collections/"
                          f"{direct('u_dave').get_collection('legacy-a').id}/count",
                          headers={"X-Tenant-Id": "dave"}).json()["error"]["code"] == "not_found")
    check("[dave] get_collection('legacy-a') teaches ownership: count() == 2",
          lambda: D["c"].get_collection("legacy-a").count() == 2)
    check("[dave] list_collections() teaches ownership of a collection made directly: count() == 1",
          lambda: (direct("u_dave").create_collection("legacy-b", embedding_function=None)
                   .add(ids=["d3"], embeddings=[vec(2, "bob")], documents=["dave 3"]) or True)
          and [c for c in D["c"].list_collections() if c.name == "legacy-b"][0].count() == 1)

    # ------------------------------------------------------------------ Chroma's own view
    print("# 1b. Chroma's own data (direct client, not through the proxy)", flush=True)
    for u in users:
        check(f"[direct] tenant u_{u} with default_database exists (provisioned)",
              lambda: direct(f"u_{u}").get_collection(f"notes-{u}").id == COL[u].id)
        check(f"[direct] u_{u} holds exactly {{notes-{u}, {u}-only}}",
              lambda: sorted(c.name for c in direct(f"u_{u}").list_collections())
              == sorted([f"notes-{u}", f"{u}-only"]))
        check(f"[direct] u_{u}/notes-{u} holds only {u}'s documents",
              lambda: docs_of(direct(f"u_{u}").get_collection(f"notes-{u}").get())
              == sorted([f"{u} secret doc 1", f"{u} secret doc 2 v2", f"{u} secret doc 4"]))
    check("[direct] nothing landed in default_tenant/default_database",
          lambda: direct("default_tenant").list_collections() == [])

    # ------------------------------------------------------------------ 2. cross-tenant UUID attack
    print("# 2. bob uses alice's collection UUID", flush=True)
    A = str(COL["alice"].id)

    def snapshot():
        d = direct("u_alice")
        c = d.get_collection("notes-alice")
        g = c.get(include=["documents", "metadatas", "embeddings"])
        recs = sorted(zip(g["ids"], g["documents"], [json.dumps(m, sort_keys=True) for m in g["metadatas"]],
                          [[round(float(x), 5) for x in e] for e in g["embeddings"]]))
        return {"id": str(c.id), "name": c.name, "metadata": c.metadata, "count": c.count(), "records": recs,
                "collections": sorted(x.name for x in d.list_collections())}

    before = None
    try:
        before = snapshot()
    except Exception as e:
        check("[direct] snapshot alice's collection before the attack", False, f"{type(e).__name__}: {e}")

    rec_body = {"ids": ["evil"], "embeddings": [[9.0, 9.0, 9.0]], "metadatas": [{"by": "bob"}],
                "documents": ["written by bob"], "uris": None}
    attacks = [
        ("GET", "/by-id", None),
        ("PUT", "", {"new_name": "pwned-by-bob", "new_metadata": {"by": "bob"}, "new_configuration": None}),
        ("POST", "/add", rec_body),
        ("POST", "/upsert", dict(rec_body, ids=["alice-1"], documents=["overwritten by bob"])),
        ("POST", "/update", {"ids": ["alice-1"], "embeddings": None, "metadatas": [{"by": "bob"}],
                             "documents": ["updated by bob"], "uris": None}),
        ("POST", "/delete", {"ids": ["alice-1", "alice-2", "alice-4"], "where": None, "where_document": None}),
        ("POST", "/get", {"ids": None, "where": None, "limit": None, "offset": None, "where_document": None,
                          "include": ["metadatas", "documents"]}),
        ("POST", "/query", {"ids": None, "query_embeddings": [vec(0, "alice")], "n_results": 3, "where": None,
                            "where_document": None, "include": ["metadatas", "documents", "distances"]}),
        ("GET", "/count", None),
    ]
    prefixes = [("default_tenant", "default_database"), ("u_alice", "default_database"),
                ("u_bob", "default_database"), ("alice", "default_database"),
                ("nosuch_tenant", "nosuch_db"), ("default_tenant", "nosuch_db")]
    uuid_forms = [(A, "uuid")]
    # Chroma parses other spellings of the same UUID too; the proxy must not let them through either
    uuid_forms_extra = [(A.upper(), "UPPERCASE uuid"), (A.replace("-", ""), "uuid without hyphens")]

    def attack(method, suffix, body, t, d, uid):
        base = f"/api/v2/tenants/{t}/databases/{d}/collections"
        if suffix == "/by-id":
            path = f"{base}/by-id/{uid}"
        else:
            path = f"{base}/{uid}{suffix}"
        params = {"read_level": "index_and_wal"} if suffix == "/count" else None
        headers = {"X-Tenant-Id": "bob"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        r = raw.request(method, path, headers=headers, params=params,
                        content=None if body is None else json.dumps(body))
        return path, r

    def is_not_found(r):
        try:
            return r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        except Exception:
            return False

    for t, d in prefixes:
        for uid, form in uuid_forms + (uuid_forms_extra if (t, d) == prefixes[0] else []):
            for method, suffix, body in attacks:
                label = f"{method} {t}/{d}/collections{'/by-id/' if suffix == '/by-id' else '/'}{{{form}}}" \
                        f"{'' if suffix in ('', '/by-id') else suffix}"
                res = {}
                check(f"[bob->alice] {label} -> 404 not_found",
                      lambda: (res.update(zip(("path", "r"), attack(method, suffix, body, t, d, uid))) or True)
                      and is_not_found(res["r"]),
                      lambda: f"{res['r'].status_code} {res['r'].text[:300]}" if "r" in res else "no response")

    # bob may still use his own routes under a forged prefix: they go to bob's own tenant
    check("[bob] own UUID under the u_alice/ prefix still reaches bob's own collection (tenant is set)",
          lambda: raw.get(f"/api/v2/tenants/u_alice/databases/default_database/collections/{COL['bob'].id}/count",
                          headers={"X-Tenant-Id": "bob"}).json() == 3)
    check("[bob] by-name DELETE of alice's UUID in his own scope deletes nothing of alice's",
          lambda: raw.delete(f"/api/v2/tenants/u_alice/databases/default_database/collections/{A}",
                             headers={"X-Tenant-Id": "bob"}).status_code == 404)
    check("[bob] by-name GET 'notes-alice' under the u_alice/ prefix -> 404 (names are scoped to bob)",
          lambda: raw.get("/api/v2/tenants/u_alice/databases/default_database/collections/notes-alice",
                          headers={"X-Tenant-Id": "bob"}).status_code == 404)

    after = {}
    check("[direct] alice's collection after the attack: same name, metadata, count, records, collections",
          lambda: before is not None and (after.update(snapshot()) or True) and after == before,
          lambda: f"before={before} after={after}")
    check("[direct] alice's collection after the attack: count 3, original documents",
          lambda: after.get("count") == 3 and sorted(r[1] for r in after["records"])
          == sorted(["alice secret doc 1", "alice secret doc 2 v2", "alice secret doc 4"])
          and after.get("name") == "notes-alice")
    check("[alice] through the proxy alice still reads her 3 records",
          lambda: docs_of(COL["alice"].get())
          == sorted(["alice secret doc 1", "alice secret doc 2 v2", "alice secret doc 4"]))

    # ------------------------------------------------------------------ 3. refusals
    print("# 3. unscoped, reset, v1, CRN, search/fork", flush=True)

    def refused(method, path, status, code, headers=None, body=None):
        res = {}
        h = dict(headers or {})
        kw = {}
        if body is not None:
            h["Content-Type"] = "application/json"
            kw["content"] = json.dumps(body)

        def go():
            r = raw.request(method, path, headers=h, **kw)
            res["r"] = r
            return r.status_code == status and r.json()["error"]["code"] == code
        hdr = "no X-Tenant-Id" if "X-Tenant-Id" not in h else f"X-Tenant-Id={h['X-Tenant-Id']}"
        check(f"{method} {path} ({hdr}) -> {status} {code}", go,
              lambda: f"{res['r'].status_code} {res['r'].text[:300]}" if "r" in res else "no response")

    base = "/api/v2/tenants/default_tenant/databases/default_database"
    for m, p in (("GET", f"{base}/collections"), ("POST", f"{base}/collections"),
                 ("GET", "/api/v2/tenants/default_tenant"), ("GET", f"{base}/collections_count"),
                 ("GET", f"{base}/collections/{A}/count"), ("POST", f"{base}/collections/{A}/get")):
        refused(m, p, 400, "tenant_required",
                body={"name": "unscoped"} if p.endswith("/collections") and m == "POST" else ({} if m == "POST" else None))
    ALICE = {"X-Tenant-Id": "alice"}
    refused("POST", "/api/v2/reset", 403, "route_not_allowed", ALICE)
    refused("POST", "/api/v2/reset", 403, "route_not_allowed")
    refused("POST", "/api/v2/tenants", 403, "route_not_allowed", ALICE, {"name": "sneaky"})
    refused("PATCH", "/api/v2/tenants/default_tenant", 403, "route_not_allowed", ALICE, {"resource_name": "x"})
    refused("GET", "/api/v1/heartbeat", 403, "route_not_allowed", ALICE)
    refused("GET", "/api/v1/collections", 403, "route_not_allowed", ALICE)
    refused("POST", "/api/v1/collections", 403, "route_not_allowed", ALICE, {"name": "v1"})
    refused("GET", "/api/v2/collections/x:y:z", 403, "route_not_allowed", ALICE)
    refused("GET", "/api/v2/collections/u_alice:default_database:notes-alice", 403, "route_not_allowed", ALICE)
    cb = f"{base}/collections/{A}"
    refused("POST", f"{cb}/search", 403, "route_not_allowed", ALICE,
            {"searches": [{"filter": None, "rank": {"$knn": {"query": vec(0, "alice"), "key": "#embedding", "limit": 16}},
                           "group_by": {}, "limit": {"offset": 0, "limit": 2}, "select": {"keys": ["#score", "#document"]}}],
             "read_level": "index_and_wal"})
    refused("POST", f"{cb}/fork", 403, "route_not_allowed", ALICE, {"new_name": "forked"})
    refused("GET", f"{cb}/fork_count", 403, "route_not_allowed", ALICE)
    refused("GET", f"{cb}/indexing_status", 403, "route_not_allowed", ALICE)
    refused("POST", f"{cb}/functions/attach", 403, "route_not_allowed", ALICE,
            {"name": "f", "function_id": "x", "output_collection": "o", "params": None})
    refused("GET", "/api/v2/no-such-route", 403, "route_not_allowed", ALICE)
    def client_refused(fn):
        try:
            fn()
        except Exception as e:
            return "route_not_allowed" in str(e)
        return False
    check("[alice] client search() on her own collection is refused (route_not_allowed)",
          lambda: client_refused(lambda: COL["alice"].search(_search_obj())))
    check("[alice] client fork() on her own collection is refused (route_not_allowed)",
          lambda: client_refused(lambda: COL["alice"].fork("forked")))
    check("[direct] no fork/extra collection appeared in u_alice",
          lambda: sorted(c.name for c in direct("u_alice").list_collections()) == ["alice-only", "notes-alice"])

    # ------------------------------------------------------------------ 4. user text that looks like ids
    # Documents, metadata and collection names are the user's own text. Text that happens to look like
    # a tenant namespace (the user's own "u_erin", "u_erin__x", or another user's "u_bob") must come
    # back exactly as stored, and must not make the proxy withhold the answer.
    print("# 4. the user's own text that looks like a namespace round-trips unchanged", flush=True)
    E = {}
    look = ["u_erin", "u_erin__draft", "see u_erin__draft", "u_bob", "u_zed__hello", "plain text"]
    meta = [{"v": t, "i": i} for i, t in enumerate(look)]
    ids = [f"e{i}" for i in range(len(look))]
    check("[erin] connects, creates 'content', adds records whose text looks like namespaces",
          lambda: E.__setitem__("c", chromadb.HttpClient(host=PH, port=PP, headers={"X-Tenant-Id": "erin"}))
          or E.__setitem__("col", E["c"].create_collection("content", embedding_function=None))
          or (E["col"].add(ids=ids, embeddings=[vec(i, "alice") for i in range(len(look))],
                           documents=look, metadatas=meta) or True))
    got = {}
    check("[erin] get(): documents and metadatas exactly as stored",
          lambda: (got.update(E["col"].get(ids=ids)) or True)
          and dict(zip(got["ids"], zip(got["documents"], got["metadatas"]))) == dict(zip(ids, zip(look, meta))),
          lambda: got)
    qq = {}
    check("[erin] query(): documents exactly as stored",
          lambda: (qq.update(E["col"].query(query_embeddings=[vec(0, "alice")], n_results=len(look))) or True)
          and sorted(flat(qq["documents"])) == sorted(look), lambda: qq)
    for name, md in (("u_erin", {"ref": "u_erin__doc7"}), ("u_bob", {"peer": "u_bob"})):
        made = {}
        check(f"[erin] collection named {name!r} with metadata {md}: create/get return it as stored",
              lambda: (made.__setitem__("c", E["c"].create_collection(name, embedding_function=None, metadata=md))
                       or True) and made["c"].name == name and made["c"].metadata == md
              and E["c"].get_collection(name).name == name and E["c"].get_collection(name).metadata == md,
              lambda: f"created {made['c'].name!r} {made['c'].metadata}" if "c" in made else "")
    names = []
    check("[erin] list_collections() still answers, with every name as stored",
          lambda: (names.extend(c.name for c in E["c"].list_collections()) or True)
          and sorted(names) == sorted(["content", "u_erin", "u_bob"]), lambda: names)

    # ------------------------------------------------------------------ 5. keep-alive after refusals
    # The Chroma client keeps its HTTP/1.1 connection alive. A refused call that carried a body
    # (an add to a collection that is not the caller's, an unscoped add, a search) must not break
    # the caller's next call on the same connection.
    print("# 5. the kept-alive connection survives refused requests that carry a body", flush=True)
    n_batch = 2000
    batch = json.dumps({"ids": [f"k{i}" for i in range(n_batch)],
                        "embeddings": [vec(i % 7, "bob") for i in range(n_batch)],
                        "metadatas": None, "documents": [f"bulk document {i} " + "x" * 80 for i in range(n_batch)],
                        "uris": None})
    BOB, own_count = {"X-Tenant-Id": "bob"}, f"{base}/collections/{COL['bob'].id}/count"
    for label, path, headers in (
            ("404 not_found (bob adds to alice's UUID)", f"{base}/collections/{A}/add", BOB),
            ("403 route_not_allowed (bob searches his own collection)", f"{base}/collections/{COL['bob'].id}/search", BOB),
            ("400 tenant_required (add without X-Tenant-Id)", f"{base}/collections/{COL['bob'].id}/add", {})):
        kc = httpx.Client(base_url=args.proxy.rstrip("/"), timeout=30)
        stats = {"drops": 0, "bad": 0, "first": ""}
        rounds = 100

        def go():
            for _ in range(rounds):
                for method, p, h, body, want in (("POST", path, dict(headers, **{"Content-Type": "application/json"}),
                                                  batch, None),
                                                 ("GET", own_count, BOB, None, 200)):
                    try:
                        r = kc.request(method, p, headers=h, content=body)
                        if (want and r.status_code != want) or (not want and r.status_code < 400):
                            stats["bad"] += 1
                    except httpx.TransportError as e:
                        stats["drops"] += 1
                        stats["first"] = stats["first"] or f"{method} {p}: {type(e).__name__}: {e}"
            return stats["drops"] == 0 and stats["bad"] == 0
        check(f"keep-alive: {rounds} x (refused {len(batch) // 1024} KB POST -> {label}, then bob's own count)"
              " on one connection: no request dropped", go,
              lambda: f"{stats['drops']} of {2 * rounds} requests got no answer (connection closed by the proxy"
                      f" without 'Connection: close'), {stats['bad']} wrong statuses; first: {stats['first']}")
        kc.close()
    return finish()


def _search_obj():
    from chromadb import Search, Knn, K
    return Search().rank(Knn(query=vec(0, "alice"))).limit(2).select(K.DOCUMENT, K.SCORE)


def finish():
    n, m = PASSED, len(FAILED)
    if m:
        print("failed checks:", flush=True)
        for f in FAILED:
            print(f"  - {f}", flush=True)
    print(f"chroma e2e: {n} passed, {m} failed", flush=True)
    return 0 if m == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        FAILED.append("driver crashed")
        sys.exit(finish() or 1)
