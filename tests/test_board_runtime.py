"""The board runtime proven end to end under emulation: `edgeskip-runtime serve` with a board's own
Python, numpy and IREE runtime, run under qemu-user, answering a KServe v2 request from the host.

rpi4 (aarch64): Debian's arm64 python3.11 and PyPI's aarch64 wheels (tests/tools/install_aarch64_python.sh).
odroid-xu4 (armv7): not here yet: IREE's Python bindings for armhf would have to be built from source
(PyPI has no armv7 wheel of iree-base-runtime or of ml_dtypes, which it imports); the armv7 module itself
runs on IREE's stock runtime in test_compile.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from edgeskip_runtime import Bundle, CompiledModel
from edgeskip_runtime.server.oip import Normalization

from edgeskip.evaluation.client import OIPClient, parse_metrics
from edgeskip.evaluation.local_server import LocalServer

ROOT = Path(__file__).resolve().parent.parent


def aarch64_python() -> tuple[list[str], dict[str, str]]:
    qemu = shutil.which("qemu-aarch64-static")
    base = Path(os.environ.get("EDGESKIP_AARCH64_PY_DIR", ROOT / ".cache/aarch64-python"))
    python = base / "sysroot/usr/bin/python3.11"
    if not qemu or not python.is_file() or not (base / "site/iree/runtime").is_dir():
        pytest.skip("no aarch64 Python under emulation: run `make aarch64-runtime` (root once: qemu-user-static, "
                    "dpkg --add-architecture arm64 and Debian's arm64 python3.11; PyPI's aarch64 wheels)")
    return [qemu, "-L", str(base / "sysroot"), str(python)], {"PYTHONPATH": f"{base / 'site'}:{ROOT / 'runtime'}"}


def test_rpi4_server_under_qemu_answers_a_kserve_v2_request(bundles) -> None:
    python, env = aarch64_python()
    rpi4, host = bundles("rpi4"), bundles("host")
    with LocalServer(rpi4.path, "--no-pin", python=python, env=env) as server:
        client = OIPClient(server.url, timeout_s=120)
        assert client.get_json(f"/v2/models/{server.model}/ready")["ready"] is True
        meta = client.metadata(server.model)
        assert meta["parameters"]["target"] == "rpi4"
        pixels = np.random.default_rng(5).integers(0, 256, (1, 32, 32)).astype(np.uint8)
        status, doc, logits = client.infer_uint8(server.model, pixels)
        assert status == 200 and logits is not None, doc
        processed = parse_metrics(client.metrics())["edgeskip_requests_total_processed"]
    assert "delta_req" in server.summary  # the policy runs there: Algorithm 1 with its measured Δreq
    opened = Bundle.open(host.path)
    image = Normalization.from_manifest(opened.manifest, 1).apply(pixels[None])
    expected = CompiledModel(opened).infer(image, doc["parameters"]["mask"])
    assert np.abs(logits - expected).max() <= 1e-4
    assert processed >= 1
