"""`edgeskip compile`: bundles for host, rpi4 (run under qemu) and odroid-xu4 (armv7 ELF), and clear refusals."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_pareto
from edgeskip_runtime.module import load_function, to_numpy

from edgeskip.cli import main
from edgeskip.compile.elf import embedded_elfs
from edgeskip.compiler_passes import DEFAULT_PIPELINE
from edgeskip.gating import GatedModel
from edgeskip.targets import get_target
from edgeskip.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
# Eight configurations, all-on and all-off included (B_s = 6 for resnet20).
MASKS = [[1] * 6, [0] * 6, [1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1],
         [0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]


def _image(shape: list[int], seed: int = 0) -> np.ndarray:
    return torch.randn(1, *shape, generator=torch.Generator().manual_seed(seed)).numpy()


def _iree_function(vmfb: Path, driver: str, allocator: str = "caching"):
    _, fn = load_function(vmfb, "main_graph", driver=driver, allocator=allocator)
    return lambda *args: to_numpy(fn(*args))


def test_bundle_layout_and_manifest(bundles, synthetic_checkpoint: Path) -> None:
    bundle = bundles("host")
    m = json.loads((bundle.path / "manifest.json").read_text())
    assert m["schema"] == "edgeskip.bundle/1"
    assert {"model.vmfb", "pareto.json", "compile.log"} <= set(m["files"])
    for name, digest in m["files"].items():
        assert hashlib.sha256((bundle.path / name).read_bytes()).hexdigest() == digest, name
    ck = load_checkpoint(synthetic_checkpoint)
    assert (m["model"], m["dataset"], m["normalization"]) == (ck.model, ck.dataset, ck.normalization.to_dict())
    assert m["entry_function"] == "main_graph"
    assert m["inputs"] == [{"name": "image", "shape": [1, *ck.input_shape], "dtype": "float32"},
                           {"name": "cfg", "shape": [6], "dtype": "int64"}]
    assert m["outputs"][0]["shape"] == [1, ck.model_args.get("num_classes", 10)]
    for key in ("name", "triple", "cpu", "features", "float_abi", "arch", "serving_cores", "big_cores",
                "little_cores", "power"):
        assert key in m["target"], key
    assert m["compiler"]["iree_version"] == importlib.metadata.version("iree-base-compiler")
    assert m["compiler"]["passes"] == list(DEFAULT_PIPELINE)  # every pass of the default pipeline ran, in order
    specialized = next(s for s in m["compile_log"] if s["name"] == "specialize-configs")
    assert specialized["configs"] == m["pareto_configs"] == 3  # every operating point of the front
    uniform = next(s for s in m["compile_log"] if s["name"] == "uniform-config-transients")
    assert uniform["copies"] == 3 and uniform["stage"] == "stream"
    assert any(f.startswith("--iree-llvmcpu-target-cpu=") for f in m["compiler"]["flags"])
    log = (bundle.path / "compile.log").read_text()
    assert all(p in log for p in m["compiler"]["passes"])
    assert not [p for p in bundle.path.parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_bundle_opens_in_the_board_runtime(bundles) -> None:
    from edgeskip_runtime.bundle import Bundle

    b = Bundle.open(bundles("host").path)
    assert b.function == "main_graph" and b.input("cfg").shape == (6,)


@pytest.mark.parametrize(("driver", "allocator"),
                         [("local-sync", "caching"), ("local-task", "caching"), ("local-sync", "default")])
def test_compiled_model_equals_eager_pytorch(bundles, synthetic_checkpoint: Path, driver: str,
                                             allocator: str) -> None:
    ck = load_checkpoint(synthetic_checkpoint)
    gated = GatedModel(ck.build_model()).eval()
    fn = _iree_function(bundles("host").path / "model.vmfb", driver, allocator)
    x = _image(ck.input_shape)
    front = [c["mask"] for c in json.loads((bundles("host").path / "pareto.json").read_text())["configs"]]
    # Both paths of the executable: front configurations run a specialized copy, the others the gates.
    assert any(m in front for m in MASKS) and any(m not in front for m in MASKS)
    outputs = set()
    for mask in MASKS:
        cfg = np.array(mask, dtype=np.int64)
        with torch.no_grad():
            expected = gated(torch.from_numpy(x), torch.from_numpy(cfg)).numpy()
        got = np.asarray(fn(x, cfg))
        assert np.abs(got - expected).max() <= 1e-4, f"{driver} cfg {mask}: max diff {np.abs(got - expected).max()}"
        outputs.add(got.tobytes())
    assert len(outputs) == len(MASKS), "different configurations gave identical outputs"


def _aarch64_runner() -> tuple[str, Path]:
    qemu = shutil.which("qemu-aarch64-static")
    tool = Path(os.environ.get("EDGESKIP_AARCH64_DIR", ROOT / ".cache/iree-aarch64")) / "bin/iree-run-module"
    if not qemu or not Path("/usr/aarch64-linux-gnu/lib").is_dir() or not tool.is_file():
        subprocess.run(["sh", str(ROOT / "tests/tools/install_aarch64_runtime.sh"), sys.executable],
                       cwd=ROOT, capture_output=True, text=True)
        qemu = shutil.which("qemu-aarch64-static")
    if not qemu or not Path("/usr/aarch64-linux-gnu/lib").is_dir() or not tool.is_file():
        pytest.skip("aarch64 emulation unavailable and could not be installed (needs root for apt-get "
                    "qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross, and PyPI for the aarch64 "
                    "iree-base-runtime wheel): run `make aarch64-runtime` or tests/tools/install_aarch64_runtime.sh")
    return qemu, tool


def test_rpi4_bundle_runs_under_qemu_and_matches_host(bundles, synthetic_checkpoint: Path, tmp_path: Path) -> None:
    qemu, tool = _aarch64_runner()
    rpi4, host = bundles("rpi4"), bundles("host")
    assert rpi4.manifest.target["arch"] == "aarch64"
    host_fn = _iree_function(host.path / "model.vmfb", "local-sync")
    x = _image(load_checkpoint(synthetic_checkpoint).input_shape, seed=3)
    np.save(tmp_path / "x.npy", x)
    for mask in ([1] * 6, [0] * 6, [1, 0, 0, 1, 1, 0]):  # emulation is ~30x slower: a few configs
        cfg = np.array(mask, dtype=np.int64)
        np.save(tmp_path / "cfg.npy", cfg)
        proc = subprocess.run([qemu, "-L", "/usr/aarch64-linux-gnu", str(tool), "--device=local-sync",
                               f"--module={rpi4.path / 'model.vmfb'}", "--function=main_graph",
                               f"--input=@{tmp_path / 'x.npy'}", f"--input=@{tmp_path / 'cfg.npy'}",
                               f"--output=@{tmp_path / 'out.npy'}"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got, expected = np.load(tmp_path / "out.npy"), np.asarray(host_fn(x, cfg))
        assert np.abs(got - expected).max() <= 1e-4, f"cfg {mask}"


def _armhf_runner() -> tuple[str, Path]:
    qemu = shutil.which("qemu-arm-static")
    tool = Path(os.environ.get("EDGESKIP_ARMHF_DIR", ROOT / ".cache/iree-armhf")) / "bin/iree-run-module"
    if not qemu or not tool.is_file():
        subprocess.run(["sh", str(ROOT / "tests/tools/build_armhf_runtime.sh"), sys.executable],
                       cwd=ROOT, capture_output=True, text=True)
        qemu = shutil.which("qemu-arm-static")
    if not qemu or not tool.is_file() or not Path("/usr/arm-linux-gnueabihf/lib").is_dir():
        pytest.skip("armv7 emulation unavailable: needs qemu-user-static, Debian's armhf cross toolchain "
                    "(gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf libc6-dev-armhf-cross, root to install) and "
                    "the vendored IREE source in ../shared/vendor: run `make armhf-runtime`")
    return qemu, tool


def run_armhf(vmfb: Path, x: np.ndarray, cfg: np.ndarray, tmp: Path) -> np.ndarray:
    """One call of ``vmfb`` by the stock armhf ``iree-run-module`` under qemu-arm."""
    qemu, tool = _armhf_runner()
    np.save(tmp / "x.npy", x)
    np.save(tmp / "cfg.npy", cfg)
    proc = subprocess.run([qemu, "-L", "/usr/arm-linux-gnueabihf", str(tool), "--device=local-sync",
                           f"--module={vmfb}", "--function=main_graph", f"--input=@{tmp / 'x.npy'}",
                           f"--input=@{tmp / 'cfg.npy'}", f"--output=@{tmp / 'out.npy'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(tmp / "out.npy")


# On the Pareto front of conftest's pareto file, and off it (the gated path).
ARMV7_MASKS = [[1] * 6, [1, 1, 1, 1, 1, 0], [0] * 6, [1, 0, 0, 1, 1, 0], [0, 1, 0, 1, 0, 1]]


def test_odroid_bundle_runs_on_a_stock_armhf_runtime_and_matches_host(bundles, synthetic_checkpoint: Path,
                                                                      tmp_path: Path) -> None:
    """The XU4 bundle on IREE's own runtime, built for armhf from the vendored source with no change."""
    _armhf_runner()
    xu4, host = bundles("odroid-xu4"), bundles("host")
    host_fn = _iree_function(host.path / "model.vmfb", "local-sync")
    x = _image(load_checkpoint(synthetic_checkpoint).input_shape, seed=4)
    outputs = set()
    for mask in ARMV7_MASKS:
        cfg = np.array(mask, dtype=np.int64)
        got, expected = run_armhf(xu4.path / "model.vmfb", x, cfg, tmp_path), np.asarray(host_fn(x, cfg))
        assert np.abs(got - expected).max() <= 1e-4, f"cfg {mask}: {np.abs(got - expected).max()}"
        outputs.add(np.round(got, 4).tobytes())
    assert len(outputs) == len(ARMV7_MASKS), "cfg did not change the armv7 module's output"


@pytest.mark.parametrize("target", ["host", "odroid-xu4", "rpi4"])
def test_no_executable_imports_a_symbol_and_the_manifest_says_so(bundles, target: str) -> None:
    bundle = bundles(target)
    assert all(e["undefined_symbols"] == [] for e in bundle.manifest.executables)
    assert all(e["undefined_symbols"] == [] for e in embedded_elfs((bundle.path / "model.vmfb").read_bytes()))


def test_compile_refuses_an_armv7_bundle_that_would_import_the_unwind_personality(gated_onnx: Path,
                                                                                   pareto_file: Path,
                                                                                   tmp_path: Path) -> None:
    """Without the target's link_bitcode, IREE 3.13's armv7 code imports __aeabi_unwind_cpp_pr0: refused,
    and nothing is written."""
    import dataclasses

    from edgeskip.compile.bundle import build_bundle
    from edgeskip.compile.errors import CompileError

    bare = dataclasses.replace(get_target("odroid-xu4"), name="xu4-without-personality", link_bitcode=())
    with pytest.raises(CompileError, match=r"imports \['__aeabi_unwind_cpp_pr0'\].*stock runtime would refuse"):
        build_bundle(gated_onnx, bare, pareto_file, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists() and not list(tmp_path.glob(".bundle.*"))


def test_odroid_bundle_is_armv7_hard_float_neon(bundles) -> None:
    bundle = bundles("odroid-xu4")
    elfs = embedded_elfs((bundle.path / "model.vmfb").read_bytes())  # parsed from the vmfb itself
    assert elfs, "no embedded executable found in the vmfb"
    for elf in elfs:
        assert (elf["class"], elf["machine"], elf["eabi_version"]) == ("ELF32", "ARM", 5)
        assert elf["float_abi"] == "hard" and elf["vfp_args"] == "VFP registers (hard-float)"
        assert elf["cpu_name"] == "cortex-a15" and elf["cpu_arch"] == "v7"
        assert elf["fp_arch"] == "VFPv4" and elf["simd_arch"].startswith("NEON")
    assert bundle.manifest.executables[0]["machine"] == "ARM"


@pytest.mark.parametrize("target", ["host", "odroid-xu4", "rpi4"])
def test_kernels_start_on_cache_lines(bundles, target: str) -> None:
    """Kernel code aligned to the board's L1 line, so latency does not depend on incidental names."""
    elfs = embedded_elfs((bundles(target).path / "model.vmfb").read_bytes())
    assert elfs and all(e["text_alignment"] >= get_target(target).cache_line_bytes for e in elfs), \
        [e["text_alignment"] for e in elfs]

def test_elf_parser_agrees_with_readelf(bundles, tmp_path: Path) -> None:
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("binutils' readelf is not installed (the pure-Python parser is tested above)")
    data = (bundles("odroid-xu4").path / "model.vmfb").read_bytes()
    elf = tmp_path / "exe.so"
    elf.write_bytes(data[data.find(b"\x7fELF"):])
    attrs = subprocess.run([readelf, "-A", "-h", str(elf)], capture_output=True, text=True).stdout
    assert "ELF32" in attrs and "hard-float ABI" in attrs
    assert '"cortex-a15"' in attrs and "VFPv4" in attrs and "NEON" in attrs
    dynsyms = subprocess.run([readelf, "--dyn-syms", "-W", str(elf)], capture_output=True, text=True).stdout
    undefined = sorted(line.split()[-1] for line in dynsyms.splitlines()
                       if line.split()[-2:-1] == ["UND"] and len(line.split()) == 8)
    assert undefined == embedded_elfs(data)[0]["undefined_symbols"] == []


def _compile(*args: str):
    return CliRunner().invoke(main, ["compile", *args])


def test_unknown_target_is_refused_clearly(gated_onnx: Path, pareto_file: Path, tmp_path: Path) -> None:
    result = _compile(str(gated_onnx), "--target", "jetson", "--pareto", str(pareto_file), "--out", str(tmp_path / "b"))
    assert result.exit_code == 1
    assert "unknown target 'jetson'; known: host, odroid-xu4, rpi4, rpi5" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "b").exists()


def test_mismatched_pareto_is_refused_clearly(gated_onnx: Path, tmp_path: Path) -> None:
    pareto = write_pareto(tmp_path / "pareto.json", 5)
    result = _compile(str(gated_onnx), "--target", "host", "--pareto", str(pareto), "--out", str(tmp_path / "b"))
    assert result.exit_code == 1
    assert "5 skippable blocks" in result.output and "cfg input has 6 entries" in result.output
    assert not (tmp_path / "b").exists()


def test_truncated_onnx_is_refused_clearly(gated_onnx: Path, pareto_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(gated_onnx.read_bytes()[: gated_onnx.stat().st_size // 3])
    result = _compile(str(broken), "--target", "host", "--pareto", str(pareto_file), "--out", str(tmp_path / "b"))
    assert result.exit_code == 1
    assert "is not a readable ONNX model (corrupt or truncated?)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "b").exists()
