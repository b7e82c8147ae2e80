"""The torch-mlir front end: torch.cond through torch-mlir's FX importer (extended by edgeskip), compiled by IREE
with the same passes and targets as the ONNX path, and numerically the same module."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from edgeskip_runtime.bundle import Bundle
from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.module import CompiledModel, load_function, to_numpy
from torch import nn

from edgeskip.compile.bundle import build_bundle
from edgeskip.compile.elf import ARCH_MACHINE
from edgeskip.compile.errors import CompileError
from edgeskip.compile.export import export_checkpoint
from edgeskip.compile.iree import iree_compile
from edgeskip.compiler_passes import PassError
from edgeskip.gating import GatedModel
from edgeskip.targets import get_target
from edgeskip.training.checkpoint import load_checkpoint
from tests.conftest import make_skipnet_checkpoint

pytest.importorskip("torch_mlir", reason="the torch-mlir front end needs `pip install --no-deps torch-mlir`")


class TwoResults(nn.Module):
    """A cond whose branches use parameters and return two tensors (the importer must handle both)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
        def on(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.conv(t).relu(), t * 2

        def off(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return t.clone(), t - 1

        a, b = torch.cond(flag[0] != 0, on, off, (x,))
        return a + b


def _import(module: nn.Module, *args: torch.Tensor, cls: type | None) -> str:
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.extras.fx_importer import FxImporter
    from torch_mlir.fx import export_and_import

    context = ir.Context()
    torch_d.register_dialect(context)
    importer = FxImporter(context=context, **({"graph_node_importer_cls": cls} if cls else {}))
    return str(export_and_import(module, *args, fx_importer=importer))


def test_the_stock_importer_refuses_cond_and_the_extension_imports_it_as_a_branch(tmp_path: Path) -> None:
    from edgeskip.compile.fx_cond_import import CondNodeImporter

    torch.manual_seed(0)
    model = TwoResults().eval()
    x, on = torch.randn(1, 2, 5, 5), torch.ones(1, dtype=torch.int64)
    with pytest.raises(NotImplementedError, match="'cond' not implemented"):
        _import(model, x, on, cls=None)
    text = _import(model, x, on, cls=CondNodeImporter)
    assert text.count("torch.prim.If ") == 1 and text.count("func.func private") == 2
    src = tmp_path / "m.mlir"
    src.write_text(text)
    iree_compile([*get_target("host").iree_flags(), "--iree-input-type=torch", str(src),
                  "-o", str(tmp_path / "m.vmfb")])
    _, fn = load_function(tmp_path / "m.vmfb", "main")
    for flag in (0, 1):
        cfg = torch.tensor([flag])
        np.testing.assert_allclose(to_numpy(fn(x.numpy(), cfg.numpy())), model(x, cfg).detach().numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def torch_mlir_model(synthetic_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_checkpoint(synthetic_checkpoint, tmp_path_factory.mktemp("tm") / "model.mlir",
                             frontend="torch-mlir").path


def test_the_export_records_what_compile_needs(torch_mlir_model: Path) -> None:
    first = torch_mlir_model.read_text().splitlines()[0]
    header = json.loads(first.removeprefix("// edgeskip.metadata "))
    assert header["format"] == "edgeskip.torch-mlir/1" and len(header["block_names"]) == 6
    assert header["inputs"][1] == {"name": "cfg", "shape": [6], "dtype": "int64"}
    assert header["passes_at_export"] == ["channels-last-gate-boundaries", "channels-last-branch-weights"]
    assert torch_mlir_model.read_text().count("torch.prim.If ") == 6


def test_the_torch_mlir_bundle_equals_the_onnx_bundle(torch_mlir_model: Path, bundles, pareto_file: Path,
                                                      synthetic_checkpoint: Path, tmp_path: Path) -> None:
    bundle = build_bundle(torch_mlir_model, "host", pareto_file, tmp_path / "bundle")
    log = (bundle.path / "compile.log").read_text()
    assert "[pass] verify-gates-mlir" in log and "'scf_if': 6" in log and "[pass] specialize-configs" in log
    # The ONNX-level rewrites ran in their torch form at export; the log says so rather than hiding them.
    assert "[pass] channels-last-gate-boundaries (0.00 s) {'stage': 'torch'" in log
    assert "[pass] channels-last-branch-weights (0.00 s) {'stage': 'torch'" in log
    ours, theirs = CompiledModel(Bundle.open(bundle.path)), CompiledModel(bundles("host"))
    eager = GatedModel(load_checkpoint(synthetic_checkpoint).build_model()).eval()
    rng = np.random.default_rng(0)
    masks = [list(c.mask) for c in ours.bundle.pareto.configs] + [list(rng.integers(0, 2, 6)) for _ in range(6)]
    for mask in masks:  # the front's specialized copies and configurations through the gates
        x = rng.standard_normal((1, 1, 32, 32)).astype(np.float32)
        got = np.asarray(ours.infer_raw(x, ours.check_cfg(mask)))
        np.testing.assert_allclose(got, np.asarray(theirs.infer_raw(x, theirs.check_cfg(mask))), atol=1e-5,
                                   err_msg=f"configuration {mask}")
        want = eager(torch.from_numpy(x), torch.tensor(mask)).detach().numpy()
        np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-4, err_msg=f"configuration {mask}")


@pytest.mark.parametrize("target", ["odroid-xu4", "rpi4"])
def test_the_torch_mlir_path_compiles_for_the_boards(torch_mlir_model: Path, pareto_file: Path, target: str,
                                                     bundles, tmp_path: Path) -> None:
    bundle = build_bundle(torch_mlir_model, target, pareto_file, tmp_path / target)
    assert bundle.manifest.target["name"] == target
    want = ARCH_MACHINE[get_target(target).arch]  # build_bundle refuses code for another machine; say it here too
    assert bundle.manifest.executables and all(e["machine"] == want for e in bundle.manifest.executables)
    if target == "odroid-xu4":  # and a real armv7 IREE runtime runs it (stock, under qemu-arm)
        from tests.test_compile import run_armhf

        host = CompiledModel(bundles("host"))
        x = np.random.default_rng(5).standard_normal((1, 1, 32, 32)).astype(np.float32)
        for mask in ([1] * 6, [1, 0, 0, 1, 1, 0]):  # on the front, and through the gates
            cfg = np.array(mask, np.int64)
            got = run_armhf(bundle.path / "model.vmfb", x, cfg, tmp_path)
            np.testing.assert_allclose(got, np.asarray(host.infer_raw(x, host.check_cfg(mask))).reshape(got.shape),
                                       atol=1e-4, err_msg=f"configuration {mask}")


def _with_header(model: Path, out: Path, change: Callable[[dict], object]) -> Path:
    """A copy of the torch-mlir export ``model`` whose header JSON ``change`` has edited."""
    first, rest = model.read_text().split("\n", 1)
    header = json.loads(first.removeprefix("// edgeskip.metadata "))
    change(header)
    out.write_text("// edgeskip.metadata " + json.dumps(header) + "\n" + rest)
    return out


def test_its_gates_are_checked_even_when_the_check_is_not_asked_for(torch_mlir_model: Path, tmp_path: Path) -> None:
    bad = _with_header(torch_mlir_model, tmp_path / "bad.mlir",  # claims a seventh gate the module lacks
                       lambda h: h["block_names"].append("layer9.9"))
    from tests.conftest import write_pareto

    with pytest.raises(PassError, match="expected 7 scf.if"):
        build_bundle(bad, "host", write_pareto(tmp_path / "p.json", 7), tmp_path / "b", passes=())


def test_bad_inputs_get_clear_errors(synthetic_checkpoint: Path, standard_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"name the output \*\.mlir"):
        export_checkpoint(synthetic_checkpoint, tmp_path / "model.onnx", frontend="torch-mlir")
    skipnet = make_skipnet_checkpoint(standard_checkpoint, tmp_path / "skipnet.pt")
    with pytest.raises(UsageError, match="exports through ONNX only"):
        export_checkpoint(skipnet, tmp_path / "s.mlir", frontend="torch-mlir")
    plain = tmp_path / "plain.mlir"
    plain.write_text("module {}\n")
    with pytest.raises(CompileError, match="no edgeskip.torch-mlir/1 header"):
        build_bundle(plain, "host", None, tmp_path / "b")
    with pytest.raises(CompileError, match="does not exist"):
        build_bundle(tmp_path / "missing.mlir", "host", None, tmp_path / "b")
    with pytest.raises(Exception, match="front end"):
        export_checkpoint(synthetic_checkpoint, tmp_path / "x.mlir", frontend="tvm")


UPSTREAM = Path(__file__).resolve().parents[1] / "docs" / "upstream" / "torch-mlir"


def _filecheck(output: str, checks_from: Path) -> int:
    """A small FileCheck: CHECK and CHECK-LABEL lines matched in order, one line each, with ``[[V:re]]``
    definitions, ``[[V]]`` uses and ``{{re}}`` regexes. Returns how many checks matched."""
    import re

    lines, at, bound, n = output.splitlines(), 0, {}, 0
    for raw in checks_from.read_text().splitlines():
        m = re.match(r"# CHECK(?:-LABEL)?: (.*)$", raw)
        if not m:
            continue
        pattern, pos = "", 0
        for tok in re.finditer(r"\[\[(\w+):(.*?)\]\]|\[\[(\w+)\]\]|\{\{(.*?)\}\}", m.group(1)):
            pattern += re.escape(m.group(1)[pos:tok.start()])
            if tok.group(1):
                pattern += f"(?P<{tok.group(1)}>{tok.group(2)})"
            elif tok.group(3):
                pattern += re.escape(bound[tok.group(3)])
            else:
                pattern += tok.group(4)
            pos = tok.end()
        pattern += re.escape(m.group(1)[pos:])
        while at < len(lines) and not (hit := re.search(pattern, lines[at])):
            at += 1
        assert at < len(lines), f"no match for {m.group(1)!r}"
        bound.update({k: v for k, v in hit.groupdict().items() if v is not None})
        at, n = at + 1, n + 1
    return n


def test_the_upstream_patch_applies_to_torch_mlir_and_its_lit_test_passes(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    import torch_mlir

    installed = Path(torch_mlir.__path__[0])
    # A copy of the package that differs only in the patched importer (everything else is a symlink).
    root = tmp_path / "python" / "torch_mlir"
    root.mkdir(parents=True)
    for entry in installed.iterdir():
        if entry.name not in ("extras", "__pycache__"):
            (root / entry.name).symlink_to(entry)
    (root / "extras").mkdir()
    for entry in (installed / "extras").iterdir():
        if entry.name != "__pycache__":
            (root / "extras" / entry.name).symlink_to(entry)
    (root / "extras" / "fx_importer.py").unlink()
    shutil.copy(installed / "extras" / "fx_importer.py", root / "extras" / "fx_importer.py")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "apply", str(UPSTREAM / "0001-fx_importer-import-cond.patch")],
                   check=True)
    test = UPSTREAM / "cond_test.py"
    stock = subprocess.run([sys.executable, str(test)], capture_output=True, text=True)
    assert stock.returncode != 0 and "'cond' not implemented" in stock.stderr  # what the patch fixes
    patched = subprocess.run([sys.executable, str(test)], capture_output=True, text=True,
                             env={**__import__("os").environ, "PYTHONPATH": str(tmp_path / "python")})
    assert patched.returncode == 0, patched.stderr[-2000:]
    checks = sum(line.startswith("# CHECK") for line in test.read_text().splitlines())
    assert checks > 15 and _filecheck(patched.stdout, test) == checks  # every check matched, in order


def test_the_cli_offers_exactly_the_registered_front_ends() -> None:
    from click.testing import CliRunner

    from edgeskip.cli import main
    from edgeskip.compile.export import FRONTENDS

    option = next(p for p in main.commands["export"].params if p.name == "frontend")
    assert sorted(option.type.choices) == sorted(FRONTENDS.names()) == ["onnx", "torch-mlir"]
    listed = CliRunner().invoke(main, ["list"])
    assert listed.exit_code == 0 and "front ends: onnx, torch-mlir" in listed.output


@pytest.mark.parametrize("recipe", ["plain", "gated-depth"])
def test_batch_norms_are_folded_for_export_and_skip_aware_ones_keep_both_sets(recipe: str) -> None:
    from edgeskip.compile.torch_mlir_export import fold_batch_norms
    from edgeskip.models import create_model
    from edgeskip.models.gated_depth import SkipAwareBatchNorm2d, to_gated_depth
    from tests.conftest import randomize_batchnorm

    torch.manual_seed(0)
    model = create_model("resnet20", in_channels=1)
    model = randomize_batchnorm(to_gated_depth(model) if recipe == "gated-depth" else model)
    gated = GatedModel(model).eval()
    x, cfgs = torch.randn(2, 1, 32, 32), [torch.tensor(c) for c in ([1] * gated.num_gates, [0] * gated.num_gates)]
    before = [gated(x, c) for c in cfgs]
    folded = fold_batch_norms(gated)
    followers = sum(isinstance(m, SkipAwareBatchNorm2d) for m in gated.modules())
    assert folded == 19 - (12 if recipe == "gated-depth" else 0)  # 19 batch norms in a ResNet-20
    assert followers == (12 if recipe == "gated-depth" else 0)
    assert not any(type(m) is nn.BatchNorm2d for m in gated.modules() if not any(
        m is f.on or m is f.off for f in gated.modules() if isinstance(f, SkipAwareBatchNorm2d)))
    for c, want in zip(cfgs, before, strict=True):
        torch.testing.assert_close(gated(x, c), want, atol=1e-5, rtol=1e-5)


def test_onnx_rewrites_not_applied_at_export_are_skipped_with_their_flags(torch_mlir_model: Path, pareto_file: Path,
                                                                          tmp_path: Path) -> None:
    from edgeskip.compiler_passes.channels_last_branch_weights import CHANNELS_LAST_PIPELINE

    src = _with_header(torch_mlir_model, tmp_path / "bare.mlir",  # as if exported without the torch forms
                       lambda h: h.__setitem__("passes_at_export", []))
    bundle = build_bundle(src, "host", pareto_file, tmp_path / "b")
    log = (bundle.path / "compile.log").read_text()
    assert "[skip] channels-last-gate-boundaries" in log and "[skip] channels-last-branch-weights" in log
    # Their IREE flag (channels-last convolutions) would make the untransposed branch weights a per-call cost.
    assert CHANNELS_LAST_PIPELINE not in bundle.manifest.compiler["flags"]
