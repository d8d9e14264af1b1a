"""The layout DESIGN §5 asks for, checked from the source: no import cycle inside `curate` (lazy
imports inside functions count), no job importing another job, the layers importing downward
only, and files short enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "curate"
MAX_LINES = 420

# Who may not import whom (prefixes of module names): the dependency direction of DESIGN §5,
# cli, recipe -> jobs -> steps -> engine -> executors, pipeline -> stages, io -> native -> leaves.
FORBIDDEN = {
    "curate.engine": ("curate.jobs", "curate.steps", "curate.cli", "curate.recipe"),
    "curate.steps": ("curate.jobs", "curate.cli", "curate.recipe"),
    "curate.jobs": ("curate.cli", "curate.recipe"),
    "curate.stages": ("curate.engine", "curate.jobs", "curate.steps", "curate.cli", "curate.recipe"),
    "curate.io": (
        "curate.stages",
        "curate.engine",
        "curate.jobs",
        "curate.steps",
        "curate.cli",
        "curate.pipeline",
    ),
    "curate.native": ("curate.io", "curate.stages", "curate.engine", "curate.jobs", "curate.cli"),
    "curate.pipeline": ("curate.engine", "curate.jobs", "curate.steps", "curate.cli"),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every `curate` module a file imports, at any depth of the file (functions included)."""
    tree = ast.parse(path.read_text())
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("curate"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("curate"):
                found.add(target)
                for a in node.names:  # `from curate.cli import render` imports a module
                    found.add(f"{target}.{a.name}")
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in imports_of(p) if m in files and m != name} for name, p in files.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_see_cycles_and_lazy_imports() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    # a lazy import inside a function is an edge too
    assert "curate.jobs.select" in graph()["curate.cli.select"]


def _job(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["curate", "jobs"] else None


def test_no_job_imports_another_job() -> None:
    for name, deps in graph().items():
        job = _job(name)
        if job is None:
            continue
        others = sorted(d for d in deps if _job(d) not in (None, job))
        assert not others, (
            f"job {name} imports another job: {others}; share a phase (curate.steps) or a stage"
        )


def test_layers_import_downward_only() -> None:
    for name, deps in graph().items():
        for layer, banned in FORBIDDEN.items():
            if name == layer or name.startswith(layer + "."):
                bad = sorted(d for d in deps if d.startswith(banned))
                assert not bad, f"{name} ({layer}) imports {bad}"


def test_files_are_short() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"
