"""The state machine graph laid out from the definition, with a run's path and each state's status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NODE_WIDTH = 176
NODE_HEIGHT = 44
GAP_X = 28
GAP_Y = 46
INNER_HEIGHT = 36
MAP_PADDING = 12


@dataclass
class Node:
    name: str
    kind: str  # the ASL Type
    level: int
    x: float = 0.0
    y: float = 0.0
    width: float = NODE_WIDTH
    height: float = NODE_HEIGHT
    status: str = "not-run"  # not-run, running, succeeded, failed, caught
    seconds: float | None = None
    note: str = ""
    handler: bool = False  # reached only through a Catch: it runs when the state it guards fails
    inner: list[Node] = field(default_factory=list)


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # next, choice, default, catch; loop for a way back to an earlier state
    taken: bool = False


@dataclass
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
            for inner in node.inner:
                if inner.name == name:
                    return inner
        raise KeyError(name)

    def path(self) -> list[str]:
        return [e.source + ">" + e.target for e in self.edges if e.taken]


def transitions(state: dict[str, Any]) -> list[tuple[str, str]]:
    """(target, kind) of every way out of a state: Next, Choices, Default, Catch."""
    out: list[tuple[str, str]] = []
    if "Next" in state:
        out.append((state["Next"], "next"))
    out += [(choice["Next"], "choice") for choice in state.get("Choices", []) if "Next" in choice]
    if "Default" in state:
        out.append((state["Default"], "default"))
    out += [(catch["Next"], "catch") for catch in state.get("Catch", []) if "Next" in catch]
    return out


def back_edges(states: dict[str, Any], start: str) -> set[tuple[str, str]]:
    """The ways back to a state on the path that led here (a loop, such as the reconciliation sweep
    resuming from its cursor): drawn as loops, and left out of the levels."""
    found: set[tuple[str, str]] = set()
    on_path: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        seen.add(name)
        on_path.append(name)
        for target, _kind in transitions(states.get(name, {})):
            if target in on_path:
                found.add((name, target))
            elif target in states and target not in seen:
                visit(target)
        on_path.pop()

    visit(start)
    return found


def _levels(states: dict[str, Any], start: str) -> dict[str, int]:
    """Longest distance from the start, loops left out, so every other edge points down."""
    loops = back_edges(states, start)
    levels = {start: 0}
    for _ in range(len(states) + 1):
        changed = False
        for name in list(levels):
            for target, _kind in transitions(states.get(name, {})):
                if (name, target) in loops:
                    continue
                if target in states and levels.get(target, -1) < levels[name] + 1:
                    levels[target] = levels[name] + 1
                    changed = True
        if not changed:
            break
    for name in states:  # a state nothing reaches still gets drawn, at the bottom
        levels.setdefault(name, max(levels.values()) + 1)
    return levels


def layout(definition: dict[str, Any]) -> Graph:
    states: dict[str, Any] = definition["States"]
    levels = _levels(states, definition["StartAt"])
    nodes = {name: Node(name, state["Type"], levels[name]) for name, state in states.items()}
    for name, state in states.items():
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            inner_levels = _levels(processor["States"], processor["StartAt"])
            handlers = {t for s in processor["States"].values() for t, kind in transitions(s) if kind == "catch"}
            node = nodes[name]
            node.inner = [Node(n, s["Type"], inner_levels[n], width=NODE_WIDTH - 2 * MAP_PADDING,
                               height=INNER_HEIGHT, handler=n in handlers) for n, s in processor["States"].items()]
            node.width = max(NODE_WIDTH, len(node.inner) * (NODE_WIDTH - 2 * MAP_PADDING + GAP_X / 2)
                             + 2 * MAP_PADDING)
            node.height = NODE_HEIGHT + INNER_HEIGHT + 2 * MAP_PADDING
    rows: dict[int, list[Node]] = {}
    for node in nodes.values():
        rows.setdefault(node.level, []).append(node)
    # Order each row by where its parents sit (definition order breaks ties): fewer crossing edges.
    parents: dict[str, list[str]] = {}
    for name, state in states.items():
        for target, _kind in transitions(state):
            parents.setdefault(target, []).append(name)
    position: dict[str, float] = {}
    for level in sorted(rows):
        row = rows[level]
        for index, node in enumerate(row):
            placed = [position[p] for p in parents.get(node.name, []) if p in position]
            node_key = sum(placed) / len(placed) if placed else float(index)
            position[node.name] = node_key
        row.sort(key=lambda n: position[n.name])
        for index, node in enumerate(row):
            position[node.name] = index - (len(row) - 1) / 2
    width = max(sum(n.width for n in row) + GAP_X * (len(row) - 1) for row in rows.values()) + 2 * GAP_X
    y = GAP_Y / 2
    for level in sorted(rows):
        row = rows[level]
        row_width = sum(n.width for n in row) + GAP_X * (len(row) - 1)
        x = (width - row_width) / 2
        for node in row:
            node.x, node.y = x, y
            x += node.width + GAP_X
            for index, inner in enumerate(node.inner):
                inner.x = node.x + MAP_PADDING + index * (inner.width + GAP_X / 2)
                inner.y = node.y + NODE_HEIGHT - 6 + MAP_PADDING
        y += max(n.height for n in row) + GAP_Y
    loops = back_edges(states, definition["StartAt"])
    edges = [Edge(name, target, "loop" if (name, target) in loops else kind)
             for name, state in states.items() for target, kind in transitions(state) if target in states]
    return Graph(list(nodes.values()), edges, width, y - GAP_Y / 2)


def overlay(graph: Graph, timeline: list[dict[str, Any]], run_status: str,
            map_runs: list[dict[str, Any]], failures: list[dict[str, Any]]) -> Graph:
    """Mark the path a run took and each state's status and duration, from its history."""
    top = {n.name: n for n in graph.nodes}
    entered = [step for step in timeline if step["state"] in top]
    for step in entered:
        node = top[step["state"]]
        node.status = "succeeded" if step["status"] == "done" else "running"
        if step.get("seconds") is not None:
            node.seconds = round((node.seconds or 0.0) + float(step["seconds"]), 2)
    if run_status in ("FAILED", "TIMED_OUT", "ABORTED") and entered and top[entered[-1]["state"]].status == "running":
        top[entered[-1]["state"]].status = "failed"
    order = [step["state"] for step in entered]
    taken = set(zip(order, order[1:], strict=False))
    marked: set[tuple[str, str]] = set()
    for edge in graph.edges:
        # A state whose Next and Catch lead to the same state (Classify -> ReconcileBatches) took one of
        # them: the first listed, its Next, unless the timeline says more.
        pair = (edge.source, edge.target)
        edge.taken = pair in taken and pair not in marked
        if edge.taken:
            marked.add(pair)
    # Inside the Map: the children are separate executions; their counts come from the Map Run.
    for node in graph.nodes:
        if not node.inner or node.status == "not-run":
            continue
        items: dict[str, Any] = {}
        for map_run in map_runs:
            for key, value in map_run.get("items", {}).items():
                items[key] = items.get(key, 0) + int(value or 0)
        for inner in node.inner:
            if inner.kind != "Task" or inner.handler:
                continue
            inner.status = "running" if items.get("running") or items.get("pending") else "succeeded"
            inner.note = f"{items.get('succeeded', 0)}/{items.get('total', 0)} batches"
        batch_failures = sum(1 for f in failures if f.get("stage") == "batch")
        for inner in node.inner:
            if inner.handler:
                inner.status = "caught" if batch_failures else "not-run"
                inner.note = f"{batch_failures} items" if batch_failures else ""
    return graph

