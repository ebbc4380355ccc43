"""The /chat handler of Tex's FastAPI recipe (recall, answer, remember), written the way
an app behind tenantgate should be.

The recipe builds `sid = f"u_{x_user_id}-{body.session_id}"` by hand and passes the user
inside every id, so one forgotten prefix (or a user id that contains "-") reads another
user's memory. Here the app names its user once, in the header tenantgate reads, and
uses the session id the client chose: tenantgate makes it that user's upstream, strips
the namespace from the answer, and refuses any call without a user.

Run beside `tenantgate dev` (or the sidecar):
    MEMORY_URL=http://127.0.0.1:8080 uvicorn app:app --port 8000
"""

import logging
import os
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

MEMORY_URL = os.environ.get("MEMORY_URL", "http://127.0.0.1:8080")
# The header tenantgate's [identity] header names; the app sets it from its own
# authenticated user, never from anything the client sent as "the user".
TENANT_HEADER = os.environ.get("TENANT_HEADER", "X-Tenant-Id")
RECALL_TOP_K = 5
log = logging.getLogger("chat")


@asynccontextmanager
async def lifespan(app: FastAPI):
    # One client per process: every request shares its connection pool to the sidecar.
    app.state.memory = httpx.AsyncClient(base_url=MEMORY_URL, timeout=10)
    yield
    await app.state.memory.aclose()


app = FastAPI(lifespan=lifespan)


class ChatBody(BaseModel):
    text: str
    session_id: str


def fake_llm(text: str, memory: list[str]) -> str:
    """A stand-in for the model call: deterministic, and it shows what it was given."""
    if not memory:
        return f"Nice to meet you. You said: {text}"
    return f"You said: {text}. I remember: " + " | ".join(memory)


async def recall(memory: httpx.AsyncClient, user: str, session: str) -> list[str]:
    """The session's latest memories; nothing (an answer without memory) when the
    memory service is over its limits or down, as the recipe degrades on Tex's 429."""
    try:
        r = await memory.get(
            f"/v1/sessions/{quote(session, safe='')}/memories",
            headers={TENANT_HEADER: user},
        )
    except httpx.TransportError:
        return []
    if r.status_code == 429 or r.status_code >= 500:
        return []
    if r.status_code != 200:
        # 400 or 403 from tenantgate is a bug in this app or a refused user: say so.
        raise HTTPException(status_code=r.status_code, detail=r.json())
    return [m["text"] for m in r.json()["memories"]][-RECALL_TOP_K:]


async def remember(memory: httpx.AsyncClient, user: str, session: str, text: str) -> None:
    """Best effort, as the recipe's writes: over the limits or down, the turn is not
    remembered and the user still gets the answer; a refusal (400, 403) is a bug here."""
    try:
        r = await memory.post(
            f"/v1/sessions/{quote(session, safe='')}/memories",
            headers={TENANT_HEADER: user},
            json={"text": text},
        )
    except httpx.TransportError as e:
        log.warning("memory unreachable, turn not remembered: %s", e)
        return
    if r.status_code == 429 or r.status_code >= 500:
        log.warning("memory answered %s, turn not remembered", r.status_code)
        return
    if r.status_code != 201:
        raise HTTPException(status_code=r.status_code, detail=r.json())


@app.post("/chat")
async def chat(body: ChatBody, x_user_id: str = Header(...)):
    # X-User-Id stands for the app's own authentication (a session cookie, a verified
    # token): in a real app the user comes from there, never from the request body.
    memory = app.state.memory
    remembered = await recall(memory, x_user_id, body.session_id)
    answer = fake_llm(body.text, remembered)
    await remember(memory, x_user_id, body.session_id, f"user: {body.text}")
    await remember(memory, x_user_id, body.session_id, f"assistant: {answer}")
    return {"answer": answer, "memory": remembered}
