"""The layout's one rule, read from the source: the live path (streamer/, engine's body, model and
live, configs/, the outputs in clients/ and the `run` subcommand) never imports engine.data,
engine.train, engine.evaluate, bench/ or tools/, not even lazily inside a function; and no two files
import each other, however indirectly."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "streamer", "clients", "configs", "bench", "tools")
FORBIDDEN = ("engine.data", "engine.train", "engine.evaluate", "bench", "tools")
# The command line's offline groups (data, train/eval, bench, their clip sets) and the parser that
# lists every group: off the live path, they import the offline code inside their handlers.
OFFLINE_CLI = ("clients.cli.main", "clients.cli.bench", "clients.cli.data", "clients.cli.train",
               "clients.cli.clip_sets", "clients.cli.__main__")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages (and tools/ scripts), by dotted name."""
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def on_live_path(name: str) -> bool:
    top = name.split(".")[0]
    if top in ("streamer", "configs"):
        return True
    if top == "clients":
        return name not in OFFLINE_CLI
    return name in ("engine", "engine.paths") or name.split(".")[:2] in (["engine", "body"], ["engine", "model"],
                                                                         ["engine", "live"])


def imports(source: str, name: str, modules: dict) -> list[tuple[int, str]]:
    """(line, module) for every project module `source` (the module `name`) imports, at the top or
    inside a function: `import a.b`, `from a import b` (b a module or a name in a), relative imports
    and importlib.import_module("a.b")."""
    package = name if modules.get(name, Path()).name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            targets = [node.args[0].value]
        found += [(node.lineno, t) for t in targets if t.split(".")[0] in PACKAGES]
    return found


def forbidden(target: str) -> bool:
    return any(target == f or target.startswith(f + ".") for f in FORBIDDEN)


def live_path_violations(modules: dict[str, Path]) -> list[str]:
    """Every import of the offline side by a live-path module, as 'file:line imports module'."""
    bad = []
    for name, path in modules.items():
        if not on_live_path(name):
            continue
        for line, target in imports(path.read_text(), name, modules):
            if forbidden(target) or (target in modules and not on_live_path(target)):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    return bad


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Groups of files that import each other, directly or through others (Tarjan's strongly
    connected components of the import graph, lazy imports included; a package's __init__ is not
    an edge: importing engine.body.rotations runs engine/body/__init__.py, which imports nothing)."""
    graph = {name: {t for _, t in imports(path.read_text(), name, modules)
                    if t in modules and t != name and modules[t].name != "__init__.py"}
             for name, path in modules.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_the_live_path_imports_no_data_training_evaluation_bench_or_tools():
    modules = project_modules()
    live = [n for n in modules if on_live_path(n)]
    assert {"engine.live.engine", "engine.model.denoiser", "engine.body.body_model", "streamer.ingest",
            "clients.live", "clients.ws", "clients.cli.run"} <= set(live)
    assert not live_path_violations(modules), "\n".join(live_path_violations(modules))


def test_no_two_files_import_each_other():
    cycles = import_cycles(project_modules())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checks_catch_a_lazy_import_and_a_cycle(tmp_path):
    """The rule test is only worth having if it fails: a lazy import of training code inside a
    live-path function, a relative one, and two files importing each other."""
    modules = project_modules()
    lazy = "def f():\n    from engine.train import train\n    from ..data import dataset\n"
    assert imports(lazy, "engine.live.engine", modules) == [(2, "engine.train"), (3, "engine.data.dataset")]
    assert forbidden("engine.train") and forbidden("engine.data.dataset") and not forbidden("engine.database")
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from engine.live import engine\n")
    b.write_text("def g():\n    import engine.live.filters\n")
    fake = {"engine.live.engine": a, "engine.live.filters": b}
    assert not import_cycles(fake)
    a.write_text("from engine.live import filters\n")
    b.write_text("def g():\n    import engine.live.engine\n")
    assert import_cycles(fake) == [["engine.live.engine", "engine.live.filters"]]


@pytest.mark.slow
def test_loading_every_live_path_module_and_the_cli_loads_no_offline_module():
    """What Python really loads: every live-path module and the `genmo-live` parser (which lists the
    offline groups too) in a fresh interpreter, and not one offline module among sys.modules."""
    names = sorted(n for n in project_modules() if on_live_path(n)) + ["clients.cli.main"]
    script = ("import importlib, json, sys\n"
              f"for name in {names!r}:\n    importlib.import_module(name)\n"
              "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert "engine.live.engine" in loaded and "clients.cli.main" in loaded
    assert [m for m in loaded if forbidden(m)] == []


def test_paths_named_from_a_module_s_own_place_point_where_they_did():
    """Modules one folder deeper than before find the repo and ../shared by counting parents: each
    constant must still name the same place."""
    from engine.data import dataset, mocap_io, rendered
    from engine.paths import ASSET_DIR
    from streamer.sources import SAMPLE_CLIP

    assert dataset.REPO_ROOT == REPO and dataset.SPLIT_FILE.is_file()
    assert mocap_io.MOCAP_ROOT == REPO.parent / "shared" / "data" / "mocap"
    assert rendered.VIDEO_ROOT == REPO.parent / "shared" / "data" / "video"
    assert ASSET_DIR == REPO / "assets" and SAMPLE_CLIP.is_file()
