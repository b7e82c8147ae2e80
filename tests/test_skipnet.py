"""SkipNet, the paper's baseline: gate structure, decisions, the hybrid RL loss and training from a
standard checkpoint (real training on the synthetic dataset)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from edgeskip_runtime.errors import UsageError

from edgeskip.baselines.skipnet import SkipNet, default_gate_type
from edgeskip.data import load_dataset
from edgeskip.models import create_model
from edgeskip.training.checkpoint import load_checkpoint
from edgeskip.training.skipnet import SkipNetConfig, evaluate_skipnet, reinforce_loss, train_skipnet


@pytest.mark.parametrize(("name", "gate_type", "gate_convs", "maxpool"),
                         [("resnet20", "ffgate1", 2, True), ("resnet110", "ffgate2", 1, False)])
def test_gates_follow_skipnet(name: str, gate_type: str, gate_convs: int, maxpool: bool) -> None:
    net = SkipNet(create_model(name, in_channels=1))
    blocks = len(net.block_names)
    assert net.gate_type == gate_type == default_gate_type(blocks)
    assert net.num_gates == blocks - 1  # every block but the first is gated; the last block has no gate
    gate = net.gates[0].net
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in gate) == gate_convs
    assert isinstance(gate[0], torch.nn.MaxPool2d) == maxpool
    assert gate[-1].out_channels == 2


def test_hard_decisions_skip_blocks_per_image() -> None:
    torch.manual_seed(0)
    net = SkipNet(create_model("resnet20", in_channels=1)).eval()
    with torch.no_grad():
        for gate in net.gates:  # gate 0 always skips, the others always run
            gate.net[-1].bias.copy_(torch.tensor([0.0, 50.0]))
            gate.net[-1].weight.zero_()
        net.gates[0].net[-1].bias.copy_(torch.tensor([50.0, 0.0]))
        x = torch.randn(3, 1, 32, 32)
        out = net(x)
        runs = net.trace.run_matrix()
    assert runs.shape == (3, net.num_gates) and runs[:, 0].sum() == 0 and runs[:, 1:].min() == 1
    base = net.base
    with torch.no_grad():  # by hand: block 1 replaced by its input (identity shortcut)
        h = base.relu(base.bn1(base.conv1(x)))
        blocks = [base.get_submodule(n) for n in net.block_names]
        h = blocks[0](h)
        for b in blocks[2:]:
            h = b(h)
        want = base.fc(torch.flatten(base.avgpool(h), 1))
    assert torch.allclose(out, want, atol=1e-6)


def test_reinforce_loss_returns_sum_later_rewards_and_the_final_one() -> None:
    torch.manual_seed(0)
    net = SkipNet(create_model("resnet20", in_channels=1))
    net.train()
    net.mode = "reinforce"
    x, y = torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,))
    logits = net(x)
    loss = reinforce_loss(net, logits, y, alpha=0.7, rl_weight=0.01)
    runs = net.trace.run_matrix()
    log_probs = torch.stack(net.trace.log_probs, 1)
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none").detach()
    g = net.num_gates
    returns = torch.stack([((1 - runs[:, i:]) * 0.7 / g).sum(1) - ce for i in range(g)], 1)
    want = torch.nn.functional.cross_entropy(logits, y) - 0.01 * (returns * log_probs).sum()
    assert torch.allclose(loss, want)
    loss.backward()
    assert net.gates[0].net[-1].weight.grad is not None and net.gates[0].net[-1].weight.grad.abs().sum() > 0


def test_skipnet_trains_from_a_standard_checkpoint(standard_checkpoint: Path, tmp_path: Path) -> None:
    """The RL stage with a large skip reward learns to skip; the checkpoint rebuilds the gated network."""
    out = tmp_path / "skipnet.pt"
    ck = train_skipnet(SkipNetConfig(standard=str(standard_checkpoint), sp_epochs=1, rl_epochs=2, limit=256,
                                     batch_size=32, rl_lr=0.01, alpha=20.0), out, progress=False)
    assert [m["stage"] for m in ck.metrics] == ["supervised", "reinforce", "reinforce"]
    rl = [m for m in ck.metrics if m["stage"] == "reinforce"]
    assert rl[-1]["val_mean_skipped"] > ck.metrics[0]["val_mean_skipped"]  # the skip reward moved the gates
    loaded = load_checkpoint(out)
    net = loaded.build_model()
    assert isinstance(net, SkipNet) and loaded.recipe == "skipnet"
    data = load_dataset("synthetic", limit=256)
    result = evaluate_skipnet(net, data.test, loaded.normalization)
    assert result.mean_skipped == pytest.approx(sum(k * v for k, v in result.skipped_histogram.items())
                                                / len(data.test))
    assert sum(result.skipped_histogram.values()) == len(data.test)


def test_skipnet_needs_a_standard_checkpoint(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="starts from a standard checkpoint"):
        train_skipnet(SkipNetConfig(standard=str(synthetic_checkpoint), limit=64), tmp_path / "s.pt", progress=False)


def test_skipnet_exports_with_data_dependent_branches() -> None:
    """Each gate is an ONNX If decided in the graph; ONNX Runtime follows each image's own decisions."""
    import onnxruntime as ort

    from edgeskip.compile.errors import GateStructureError
    from edgeskip.compile.export import export_gated, export_self_gated
    from edgeskip.compile.onnx_gates import verify_self_gated

    torch.manual_seed(0)
    net = SkipNet(create_model("resnet20", in_channels=1)).eval()
    proto = export_self_gated(net, [1, 32, 32])
    gates = verify_self_gated(proto, expected=net.num_gates)
    assert len(gates) == 8 and all(g.decided_by for g in gates)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    decisions = set()
    for seed in range(6):
        x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) * (1 + seed)
        with torch.no_grad():
            want = net(x)
        decisions.add(tuple(net.trace.run_matrix()[0].tolist()))
        got = session.run(None, {"image": x.numpy()})[0]
        assert torch.allclose(torch.from_numpy(got), want, atol=1e-4)
    assert len(decisions) > 1  # the images really took different paths
    cfg_driven, _ = export_gated(create_model("resnet20", in_channels=1), [1, 32, 32])
    with pytest.raises(GateStructureError, match="takes only 'image'"):
        verify_self_gated(cfg_driven, expected=6)


def test_skipnet_compiles_and_serves_as_one_self_gated_operating_point(standard_checkpoint: Path,
                                                                      tmp_path: Path) -> None:
    """Export a SkipNet checkpoint, compile it with IREE for the host, and run it in the module and the server
    engine: no cfg, one operating point, each image's own branches, the eager network's logits."""
    import numpy as np
    from conftest import make_skipnet_checkpoint
    from edgeskip_runtime.bundle import Bundle
    from edgeskip_runtime.module import CompiledModel
    from edgeskip_runtime.server import InferenceEngine
    from edgeskip_runtime.server.engine import InferRequest

    from edgeskip.compile.bundle import build_bundle
    from edgeskip.compile.export import export_checkpoint

    make_skipnet_checkpoint(standard_checkpoint, tmp_path / "skipnet.pt")
    net = load_checkpoint(tmp_path / "skipnet.pt").build_model().eval()
    export = export_checkpoint(tmp_path / "skipnet.pt", tmp_path / "skipnet.onnx")
    assert export.metadata.self_gated and len(export.gates) == net.num_gates
    bundle = build_bundle(export.path, "host", None, tmp_path / "bundle")
    assert bundle.manifest.self_gated and [i.name for i in bundle.manifest.inputs] == ["image"]
    assert bundle.manifest.compiler["passes"] == ["channels-last-branch-weights"]
    front = Bundle.open(bundle.path).pareto
    assert front.skippable_blocks == 0 and len(front.configs) == 1 and front.configs[0].val_accuracy == 0.5
    model = CompiledModel(Bundle.open(bundle.path))
    assert model.num_gates == 0
    paths = set()
    for seed in range(5):
        x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) * (1 + seed)
        with torch.no_grad():
            want = net(x).numpy()
        paths.add(tuple(net.trace.run_matrix()[0].tolist()))
        assert np.allclose(model.infer(x.numpy(), ()), want, atol=1e-4)
    assert len(paths) > 1
    engine = InferenceEngine(bundle.path, pin=False)
    try:
        result = engine.submit(InferRequest("r", x.numpy(), 0, None, False))
        assert np.allclose(result.logits, want, atol=1e-4) and result.n_skipped == 0 and result.config == 0
    finally:
        engine.close()
