"""The board runtime: bundle verification, architecture checks, inference, input errors, profile."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgeskip_runtime import Bundle, BundleError, CompiledModel, InputError
from edgeskip_runtime.arch import arch_family
from edgeskip_runtime.atomic import replace_dir
from edgeskip_runtime.manifest import Manifest
from edgeskip_runtime.profile import profile_bundle


@pytest.fixture
def host_copy(bundles, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(bundles("host").path, dst)
    return dst


def _rehash(bundle: Path, name: str) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_runtime_imports_without_torch_or_compiler() -> None:
    code = ("import sys; import edgeskip_runtime, edgeskip_runtime.server, edgeskip_runtime.profile; "
            "bad = [m for m in ('torch', 'iree.compiler', 'onnx', 'click', 'edgeskip') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_batch_and_single_inference(host_copy: Path) -> None:
    model = CompiledModel(Bundle.open(host_copy))
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    cfg = [1, 0, 1, 1, 0, 1]
    batch = model.infer(x, cfg)
    singles = np.concatenate([model.infer(x[i], cfg) for i in range(3)])
    assert batch.shape == (3, 10)
    np.testing.assert_array_equal(batch, singles)
    assert not np.array_equal(model.infer(x, [1] * 6), model.infer(x, [0] * 6))


def test_results_outlive_the_model(host_copy: Path) -> None:
    # With IREE's caching allocator, a result viewing device memory crashed the process once the
    # model (and its device) was gone; results must be copies the caller owns.
    code = ("import gc, sys, numpy as np; from edgeskip_runtime import Bundle, CompiledModel; "
            "m = CompiledModel(Bundle.open(sys.argv[1])); x = np.ones((2, 1, 32, 32), np.float32); "
            "outs = [m.infer(x, [1] * 6), m.infer_raw(x[:1], m.check_cfg([0] * 6))]; "
            "del m; gc.collect(); print(float(sum(o.sum() for o in outs)))")
    out = subprocess.run([sys.executable, "-c", code, str(host_copy)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-1500:]}"
    assert np.isfinite(float(out.stdout.strip()))


def test_unknown_allocator_is_refused(host_copy: Path) -> None:
    with pytest.raises(ValueError, match="unknown allocator 'arena'"):
        CompiledModel(Bundle.open(host_copy), allocator="arena")


@pytest.mark.parametrize(
    ("image", "cfg", "message"),
    [
        (np.zeros((1, 3, 32, 32), np.float32), [1] * 6, r"image must have shape"),
        (np.zeros((1, 1, 32, 32), np.int64), [1] * 6, "floating point"),
        (np.full((1, 1, 32, 32), np.nan, np.float32), [1] * 6, "NaN or Inf"),
        (np.zeros((1, 1, 32, 32), np.float32), [1] * 5, r"shape \(6,\)"),
        (np.zeros((1, 1, 32, 32), np.float32), [1, 1, 1, 2, 1, 1], "0 \\(skip\\) or 1"),
        (np.zeros((1, 1, 32, 32), np.float32), [0.5] * 6, "integers or bools"),
    ],
)
def test_bad_inputs_are_refused_clearly(host_copy: Path, image, cfg, message: str) -> None:
    model = CompiledModel(Bundle.open(host_copy))
    with pytest.raises(InputError, match=message):
        model.infer(image, cfg)


def test_bundle_for_another_architecture_is_refused(bundles) -> None:
    with pytest.raises(BundleError, match=r"built for target 'odroid-xu4' \(armv7\), but this machine is x86_64"):
        Bundle.open(bundles("odroid-xu4").path)


def test_tampered_file_fails_the_checksum(host_copy: Path) -> None:
    pareto = json.loads((host_copy / "pareto.json").read_text())
    pareto["configs"][0]["val_accuracy"] = 1.0
    (host_copy / "pareto.json").write_text(json.dumps(pareto))
    with pytest.raises(BundleError, match="checksum mismatch for pareto.json"):
        Bundle.open(host_copy)


def test_truncated_vmfb(host_copy: Path) -> None:
    vmfb = host_copy / "model.vmfb"
    vmfb.write_bytes(vmfb.read_bytes()[: vmfb.stat().st_size // 2])
    with pytest.raises(BundleError, match="checksum mismatch for model.vmfb"):
        Bundle.open(host_copy)
    _rehash(host_copy, "model.vmfb")  # even with a matching checksum, IREE's refusal is reported clearly
    with pytest.raises(BundleError, match="truncated or corrupt module"):
        CompiledModel(Bundle.open(host_copy))


def test_missing_manifest_and_files(host_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Bundle.open(tmp_path)
    (host_copy / "pareto.json").unlink()
    with pytest.raises(BundleError, match="pareto.json is missing"):
        Bundle.open(host_copy)


def test_manifest_round_trips_and_is_what_compile_wrote(host_copy: Path) -> None:
    raw = json.loads((host_copy / "manifest.json").read_text())
    manifest = Manifest.read(host_copy)
    assert manifest.to_dict() == raw  # the writer and every reader share this one definition
    assert manifest.input("cfg").shape == (6,) and manifest.serving_cores == raw["target"]["serving_cores"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("inputs"), "lacks 'inputs'"),
    (lambda d: d.update(files={"model.vmfb": {"sha256": "ab"}}), "files must map each file name to its sha256"),
    (lambda d: d.update(schema="edgeskip.bundle/0"), "is not an edgeskip.bundle/1 manifest"),
    (lambda d: d.update(target={"name": "x"}), "target must name the board"),
    (lambda d: d.update(skippable_blocks="six"), "malformed"),
])
def test_malformed_manifests_are_refused_by_name(host_copy: Path, change, message: str) -> None:
    doc = json.loads((host_copy / "manifest.json").read_text())
    change(doc)
    (host_copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=message):
        Bundle.open(host_copy)


def test_replace_dir_keeps_the_old_folder_whole_until_the_new_one_is_in_place(tmp_path: Path) -> None:
    dest, new = tmp_path / "bundle", tmp_path / ".bundle.new"
    dest.mkdir()
    (dest / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    replace_dir(new, dest)
    assert (dest / "a").read_text() == "new" and not new.exists()
    assert not (tmp_path / "bundle.previous").exists()
    (tmp_path / "bundle.previous").mkdir()  # a crash's leftover is cleared by the next swap
    new.mkdir()
    (new / "a").write_text("newer")
    replace_dir(new, dest)
    assert (dest / "a").read_text() == "newer" and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


@pytest.mark.parametrize(("name", "family"), [("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "aarch64"),
                                              ("arm64", "aarch64"), ("armv7l", "armv7"), ("armv8l", "armv7"),
                                              ("armv7a-pc-linux-gnueabihf", "armv7")])
def test_arch_families(name: str, family: str) -> None:
    assert arch_family(name) == family


def test_profile_measures_rewrites_and_stays_verifiable(host_copy: Path) -> None:
    before = json.loads((host_copy / "pareto.json").read_text())
    doc = profile_bundle(host_copy, repeats=5, warmup=1, pin=False)
    assert doc["profiled"]["configs_before"] == len(before["configs"])
    assert doc["configs"][0]["n_skipped"] == 0
    for c in doc["configs"]:
        assert c["latency_source"].startswith("iree local-sync") and c["latency_p99_ms"] >= c["latency_ms"] > 0
    for a in doc["configs"][1:]:  # the re-filtered front: no kept point is dominated
        for b in doc["configs"]:
            assert not (b["val_accuracy"] > a["val_accuracy"] and b["latency_ms"] < a["latency_ms"])
    Bundle.open(host_copy)  # the manifest checksum follows the rewritten pareto.json
    assert not (host_copy.parent / "bundle.previous").exists()


@pytest.mark.parametrize(("family", "requested", "expected", "says"),
                         [("armv7", "local-task", "local-sync", "does not build for 32-bit ARM"),
                          ("armv7", None, "local-sync", None), ("armv7", "local-sync", "local-sync", None),
                          ("aarch64", "local-task", "local-task", None), ("x86_64", None, "local-sync", None)])
def test_driver_choice_knows_local_task_is_missing_on_32_bit_arm(family: str, requested: str | None,
                                                                 expected: str, says: str | None) -> None:
    from edgeskip_runtime.arch import choose_driver, drivers_for

    driver, why = choose_driver(requested, family)
    assert driver == expected and (why is None if says is None else says in why)
    assert driver in drivers_for(family)
    assert ("local-task" in drivers_for(family)) is (family != "armv7")
