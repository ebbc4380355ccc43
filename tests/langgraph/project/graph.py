"""The smallest graph `langgraph dev` will serve: the tests use its store API only."""
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    x: int


def step(state: State) -> State:
    return {"x": state.get("x", 0) + 1}


builder = StateGraph(State)
builder.add_node("step", step)
builder.add_edge(START, "step")
builder.add_edge("step", END)
graph = builder.compile()
