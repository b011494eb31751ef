"""The library's import graph has no new cycle: every import statement in src/ (module level or inside a function)
points to a module that does not import back, directly or through others."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
KNOWN_CYCLES: list[list[str]] = []  # none


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules its import statements name (a package's own submodules excluded)."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod and not mod.startswith(name + "."):
                    graph[mod].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_library():
    found = [c for c in cycles(import_graph()) if c not in KNOWN_CYCLES]
    assert found == []


def test_every_registry_reference_imports():
    from modrwkv.modalities import MODALITIES, Ref

    refs = [v for s in MODALITIES.values() for v in (s.codec, s.metrics, s.scorer) if v is not None]
    refs += [v for s in MODALITIES.values() if s.offline for v in vars(s.offline).values() if isinstance(v, Ref)]
    assert len(refs) == 3 * 3 + 2 * 3 + 1
    for ref in refs:
        assert ref.get() is not None, ref.path
