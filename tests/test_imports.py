"""Imports point one way: no cycle anywhere in the package, counting the imports inside functions
too. A lazy import only hides a cycle from the interpreter, not from a reader: fidelity and its
page, or the study and its page, each needed the other (issue 20). A package's __init__ loading
its own submodules on demand (backends.make picking local or ray, report.render_html loading
report.html) is containment, not a second idea depending on the first, and is left out."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in (ROOT / "evo_nas").rglob("*.py")}


def imported(module: str, path: Path) -> set[str]:
    """The evo_nas modules `module` imports anywhere in its code (absolute imports: the package uses no others)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{module}: a relative import"
            names |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
    own = path.name == "__init__.py"
    return {n for n in names if n in MODULES and n != module and not (own and n.startswith(module + "."))}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path back to its start, or None (depth-first search)."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return (path + [node])[(path + [node]).index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = "done"
        return None

    return next((found for node in sorted(graph) if node not in state and (found := visit(node, []))), None)


def test_the_package_has_no_import_cycle():
    graph = {m: imported(m, p) for m, p in MODULES.items()}
    assert graph["evo_nas.fidelity"] and graph["evo_nas.report.html"]  # the walk finds imports at all
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_a_cycle_is_found_where_there_is_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports():
    """The fast loop (make test-fast) touches every module: each imports (torch, plotly and pandas
    are installed where the tests run)."""
    import importlib

    for module in sorted(MODULES):
        if module != "evo_nas.__main__":  # `python -m evo_nas`: it runs the command line
            importlib.import_module(module)
