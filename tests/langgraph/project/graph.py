"""A small graph as memory apps write them: it learns the caller from
config["configurable"]["user_id"] (the header tenantgate sets, which langgraph.json
lets into the configurable) and writes the store under that id as the first label."""
from typing import TypedDict

from langgraph.config import get_config, get_store
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    x: int
    user: str


def step(state: State) -> State:
    user = get_config()["configurable"].get("user_id") or "nobody"
    x = state.get("x", 0) + 1
    get_store().put((user, "graph"), "last", {"x": x})
    return {"x": x, "user": user}


builder = StateGraph(State)
builder.add_node("step", step)
builder.add_edge(START, "step")
builder.add_edge("step", END)
graph = builder.compile()
