"""The board runtimes proven end to end under emulation: `edgeskip-runtime serve` with each board's own
Python, numpy and IREE runtime, run under qemu-user, answering a KServe v2 request from the host.

* odroid-xu4 (armv7): Debian's armhf python3.11 and numpy, IREE's Python bindings and ml_dtypes cross-built
  from source (tests/tools/build_armhf_runtime.sh), local-sync only;
* rpi4 (aarch64): Debian's arm64 python3.11 and PyPI's aarch64 wheels (tests/tools/install_aarch64_python.sh).
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
# target -> (qemu, the board Python's folder and its env override, extra site dirs in the sysroot, how to get it)
BOARDS = {
    "odroid-xu4": ("qemu-arm-static", "EDGESKIP_ARMHF_PY_DIR", ".cache/armhf-python",
                   "usr/lib/python3/dist-packages", "make armhf-runtime"),
    "rpi4": ("qemu-aarch64-static", "EDGESKIP_AARCH64_PY_DIR", ".cache/aarch64-python", None, "make aarch64-runtime"),
}


def board_python(target: str) -> tuple[list[str], dict[str, str]]:
    """The interpreter command and environment of ``target``'s Python under emulation, or a skip saying why."""
    qemu_name, env_var, default, dist_packages, how = BOARDS[target]
    qemu = shutil.which(qemu_name)
    base = Path(os.environ.get(env_var, ROOT / default))
    python = base / "sysroot/usr/bin/python3.11"
    if not qemu or not python.is_file() or not (base / "site/iree/runtime").is_dir():
        pytest.skip(f"no {target} Python under emulation: run `{how}` (root once for Debian's packages, "
                    f"PyPI and the vendored IREE source for the rest)")
    path = [base / "site", *([base / "sysroot" / dist_packages] if dist_packages else []), ROOT / "runtime"]
    return [qemu, "-L", str(base / "sysroot"), str(python)], {"PYTHONPATH": ":".join(map(str, path))}


@pytest.mark.parametrize("target", sorted(BOARDS))
def test_board_server_under_qemu_answers_a_kserve_v2_request(bundles, target: str) -> None:
    python, env = board_python(target)
    board, host = bundles(target), bundles("host")
    # local-task is asked for: on armv7 the server must fall back to local-sync and say so, not fail.
    with LocalServer(board.path, "--no-pin", "--driver", "local-task", python=python, env=env) as server:
        client = OIPClient(server.url, timeout_s=120)
        assert client.get_json(f"/v2/models/{server.model}/ready")["ready"] is True
        assert client.metadata(server.model)["parameters"]["target"] == target
        pixels = np.random.default_rng(5).integers(0, 256, (1, 32, 32)).astype(np.uint8)
        status, doc, logits = client.infer_uint8(server.model, pixels)
        assert status == 200 and logits is not None, doc
        processed = parse_metrics(client.metrics())["edgeskip_requests_total_processed"]
        server.stop()
        output = server.proc.stdout.read() if server.proc.stdout else ""
    assert "delta_req" in server.summary  # the policy runs there: Algorithm 1 with its measured Δreq
    assert ("local-task is not available on armv7" in server.preamble) is (target == "odroid-xu4"), server.preamble
    assert "edgeskip stopped" in output
    opened = Bundle.open(host.path)
    image = Normalization.from_manifest(opened.manifest, 1).apply(pixels[None])
    expected = CompiledModel(opened).infer(image, doc["parameters"]["mask"])
    assert np.abs(logits - expected).max() <= 1e-4
    assert processed >= 1
