"""How edgeskip is packaged: two top-level names, no import cycles between packages, a torch-free
runtime, and command-line start-up without torch for the commands that never need it."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
# Import name prefix -> source folder (pyproject's package-dir puts two top-level folders inside edgeskip).
SOURCES = {"edgeskip": ROOT / "edgeskip", "edgeskip.compiler_passes": ROOT / "compiler_passes",
           "edgeskip.targets": ROOT / "targets", "edgeskip_runtime": ROOT / "runtime" / "edgeskip_runtime"}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for prefix, root in SOURCES.items():
        for f in sorted(root.rglob("*.py")):
            parts = [p for p in f.relative_to(root).with_suffix("").parts if p != "__init__"]
            out.append((".".join([prefix, *parts]), f))
    return out


def _unit(module: str) -> str:
    """The package an import belongs to: ``edgeskip.design.sensitivity`` -> ``edgeskip.design``."""
    return ".".join(module.split(".")[:2])


def _imports(module: str, path: Path) -> set[str]:
    """Every edgeskip module ``path`` imports, at any depth (function-level imports count too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found |= {base, *(f"{base}.{a.name}" for a in node.names)}
    return {n for n in found if n.split(".")[0] in ("edgeskip", "edgeskip_runtime")}


def package_graph() -> dict[str, set[str]]:
    modules = _modules()
    units = {_unit(m) for m, _ in modules}
    graph: dict[str, set[str]] = {u: set() for u in units}
    for module, path in modules:
        graph[_unit(module)] |= {_unit(n) for n in _imports(module, path) if _unit(n) in units} - {_unit(module)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    assert "edgeskip.accuracy" in graph["edgeskip.training"]  # the graph sees imports (and function-level ones)
    assert cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_runtime_and_the_lower_layers_never_import_the_toolchain_above_them() -> None:
    graph = package_graph()
    for unit, deps in graph.items():
        if unit.startswith("edgeskip_runtime") or unit in ("edgeskip.targets", "edgeskip.compiler_passes"):
            above = {d for d in deps if d.startswith("edgeskip.") and d not in ("edgeskip.targets",
                                                                                 "edgeskip.compiler_passes")}
            assert not above, f"{unit} imports {above}"
    assert not {d for d in graph["edgeskip.targets"] if d == "edgeskip.compiler_passes"}


def test_pyproject_lists_every_package_folder() -> None:
    """setuptools installs only the listed packages: a new folder missing here would vanish from the wheel."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {m for m, f in _modules() if f.name == "__init__.py" and not m.startswith("edgeskip_runtime")}
    assert listed == on_disk


@pytest.mark.parametrize(("project", "top_level"), [(".", {"edgeskip"}), ("runtime", {"edgeskip_runtime"})])
def test_wheel_installs_only_its_own_top_level_name(tmp_path: Path, project: str, top_level: set[str]) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT / project)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == top_level
    if project == ".":  # the folders outside edgeskip/ land inside it, with their data
        assert "edgeskip/targets/odroid_xu4.py" in names
        assert "edgeskip/compiler_passes/specialize_configs.py" in names
        assert "edgeskip/targets/bitcode/arm_eabi_unwind_personality.bc" in names
        assert any(n.startswith("edgeskip/assets/") and n.endswith(".pt") for n in names)
        assert "edgeskip/deploy/sh/transaction.sh" in names and "edgeskip/deploy/sh/launch.sh" in names


TORCH_FREE = [["targets"], ["deploy", "--help"], ["board-check", "--help"], ["rollback", "--help"],
              ["serve", "--help"], ["--help"]]


@pytest.mark.parametrize("argv", TORCH_FREE, ids=" ".join)
def test_torch_free_commands_do_not_import_torch(argv: list[str]) -> None:
    code = ("import sys\nfrom edgeskip.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()  # the command did say something
