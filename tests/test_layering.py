"""The house's rules, checked from the source: no import circles, small functions and files, and no lower
layer importing an application."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnkit"

# Deprecated aliases (old import paths) are the one place a lower layer may name an application.
ALIASES = {"lm", "classify", "translation", "tagging", "spelling", "synthetic", "export", "data.tasks",
           "models", "models.language_model", "models.classifier", "models.seq2seq", "models.tagger",
           "models.speller", "models.sequence_model", "training.tasks", "training.trainer",
           "diagnostics.commands"}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top, inside functions (lazy) or for type checking: a circle
    through any of them is a circle. Only a module ``__getattr__`` (an old name's deprecated alias) is
    left out."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    shims = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
             for n in ast.walk(f)}  # fmt: skip
    out = set()
    for node in ast.walk(tree):
        if id(node) in shims:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = (base + "." + node.module if node.module else base) if node.level else node.module
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import x` may name a module
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    # a module's own packages run first whatever it imports: an edge back to them is no circle
    return {m: {i for i in imports(p) if i in files and not (m + ".").startswith(i + ".")}
            for m, p in files.items()}  # fmt: skip


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    found = cycles(graph())
    assert not found, f"import circles: {found}"


def test_the_checker_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_layers_never_import_an_application():
    for module, imports in graph().items():
        rel = module.removeprefix("rnnkit.")
        top = rel.startswith(("apps", "commands", "cli", "serve"))  # serve: the explorer, over every app
        if top or rel in ALIASES or module == "rnnkit.__main__":
            continue
        apps = sorted(i for i in imports if i.startswith(("rnnkit.apps", "rnnkit.commands")))
        assert not apps, f"{module} (a lower layer) imports {apps}"


def test_small_files_and_functions():
    long_files, long_functions = [], []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > 600:
            long_files.append(rel)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 120:
                    long_functions.append(f"{rel}:{node.name} ({length} lines)")
    assert not long_files, f"files over 600 lines: {long_files}"
    assert not long_functions, f"functions over 120 lines: {long_functions}"
