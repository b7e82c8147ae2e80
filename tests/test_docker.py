"""The Docker recipes in docker/ (docker/README.md) agree with the packages: same pins, and every COPY source exists.

No Docker engine is needed: this reads the recipes as text (building them needs one, see docker/README.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
RECIPES = sorted(DOCKER.glob("*.Dockerfile"))
PINNED = ("torch", "iree-base-compiler", "iree-base-runtime")


def project_pins() -> dict[str, str]:
    """``name==version`` requirements of both pyproject files (a regex: tomllib is not in Python 3.10)."""
    pins: dict[str, str] = {}
    for pyproject in (ROOT / "pyproject.toml", ROOT / "runtime" / "pyproject.toml"):
        for name, version in re.findall(r'"([A-Za-z0-9_.-]+)==([^";\s]+)"', pyproject.read_text()):
            pins[name.lower()] = version
    return pins


def logical_lines(text: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        current += raw.rstrip("\\").rstrip() + " " if raw.rstrip().endswith("\\") else raw
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                lines.append(current.strip())
            current = ""
    return lines


def test_the_three_recipes_exist() -> None:
    assert {p.name for p in RECIPES} >= {"toolchain.Dockerfile", "runtime-arm64.Dockerfile",
                                         "runtime-armhf.Dockerfile"}
    assert (DOCKER / "README.md").is_file()


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_pins_match_pyproject(recipe: Path) -> None:
    pins, text = project_pins(), recipe.read_text()
    assert {"torch", "iree-base-compiler", "iree-base-runtime"} <= set(pins)
    found = {name: re.findall(rf"(?<![\w-]){re.escape(name)}==([\w.]+)", text) for name in PINNED}
    assert any(found.values()) or "iree_base_runtime-" in text, f"{recipe.name} pins nothing"
    for name, versions in found.items():
        for version in versions:
            assert version == pins[name], f"{recipe.name}: {name}=={version}, pyproject says {pins[name]}"
    # The armhf recipe builds IREE from source: the tag and the recorded version follow the same pin.
    for version in re.findall(r"IREE_REF=v([\w.]+)", text) + re.findall(r"iree_base_runtime-([\d.]+)\.dist", text):
        assert version == pins["iree-base-runtime"], f"{recipe.name}: IREE {version}"


def test_toolchain_installs_pinned_cpu_torch_first() -> None:
    lines = logical_lines((DOCKER / "toolchain.Dockerfile").read_text())
    assert lines[0].startswith("FROM python:3.11-slim")
    installs = [ln for ln in lines if ln.startswith("RUN") and "pip install" in ln]
    assert "torch==" in installs[0] and "download.pytorch.org/whl/cpu" in installs[0]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_copied_file_exists(recipe: Path) -> None:
    copies = [ln.split()[1:] for ln in logical_lines(recipe.read_text()) if ln.split()[0].upper() in ("COPY", "ADD")]
    assert copies, f"{recipe.name} copies nothing from the repository"
    for args in copies:
        if any(a.startswith("--from=") for a in args):
            continue  # from another build stage, not from the repository
        sources = [a for a in args if not a.startswith("--")][:-1]
        for src in sources:
            assert (ROOT / src).exists(), f"{recipe.name}: COPY {src} does not exist in the repository"


def _cmake_options(text: str) -> set[str]:
    return set(re.findall(r"-D(IREE_[A-Z_]+=[A-Z]+)", text))


def test_armhf_recipe_builds_what_the_tests_prove() -> None:
    """The XU4 image's IREE build uses every option of the armhf runtime that make test builds and runs."""
    recipe = (DOCKER / "runtime-armhf.Dockerfile").read_text()
    # The image adds the Python bindings (the server needs them); everything else is the tested build.
    proven = _cmake_options((ROOT / "tests/tools/build_armhf_runtime.sh").read_text()) - {
        "IREE_BUILD_PYTHON_BINDINGS=OFF"}
    assert "IREE_HAL_DRIVER_LOCAL_TASK=OFF" in proven and "IREE_HAL_DRIVER_LOCAL_SYNC=ON" in proven
    assert proven <= _cmake_options(recipe), sorted(proven - _cmake_options(recipe))
    assert "IREE_HAL_DRIVER_LOCAL_TASK=ON" not in recipe
    assert "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard" in recipe
    vendored = re.findall(r"iree-runtime-src-(\w+)\.tar\.gz", recipe)
    assert vendored and all(v == "b48a5955" for v in vendored)
    # the same 32-bit patch and the same ml_dtypes as the board Python the tests run
    build = (ROOT / "tests/tools/build_armhf_runtime.sh").read_text()
    assert "iree-python-bindings-32bit-dlpack.patch" in recipe and "iree-python-bindings-32bit-dlpack.patch" in build
    ml_dtypes = re.search(r"ML_DTYPES=([\d.]+)", build)
    assert ml_dtypes and f"ml_dtypes=={ml_dtypes.group(1)}" in recipe
