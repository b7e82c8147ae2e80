"""Shared fixtures: a quickly trained checkpoint on the synthetic dataset; the user networks of user_networks.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from user_networks import ExplicitNet, UserBlock, UserBottleneck, UserResNet  # noqa: F401  (the tests import them here)

from edgeskip.training.trainer import TrainConfig, train


@pytest.fixture(scope="session")
def synthetic_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet20 trained briefly (stochastic depth) on the synthetic dataset: real training, seconds."""
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    train(TrainConfig(model="resnet20", dataset="synthetic", epochs=3, limit=512, batch_size=32, lr=0.05),
          path, progress=False)
    return path


@pytest.fixture(scope="session")
def standard_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same resnet20 trained briefly with the standard recipe (SkipNet's start, the paper's Original)."""
    path = tmp_path_factory.mktemp("std") / "model.pt"
    train(TrainConfig(model="resnet20", dataset="synthetic", recipe="standard", epochs=3, limit=512, batch_size=32,
                      lr=0.05), path, progress=False)
    return path


def make_skipnet_checkpoint(standard_checkpoint: Path, out: Path, seed: int = 1) -> Path:
    """A SkipNet on the standard network with freshly initialised (untrained) gates: its decisions vary per
    image, which is what export, compile and serving must carry through."""
    from edgeskip.baselines.skipnet import SkipNet
    from edgeskip.training.checkpoint import Checkpoint, load_checkpoint

    standard = load_checkpoint(standard_checkpoint)
    torch.manual_seed(seed)
    net = SkipNet(standard.build_model()).eval()
    Checkpoint(model=standard.model, model_args=standard.model_args, dataset=standard.dataset,
               normalization=standard.normalization, input_shape=standard.input_shape,
               state_dict=net.state_dict(), recipe="skipnet", metrics=[{"val_accuracy": 0.5}],
               train_config={**standard.train_config, "recipe": "skipnet", "gate_type": net.gate_type}).save(out)
    return out


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics so that eval-mode outputs are not degenerate."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


# --- Compile stage (edgeskip export / compile): one export and one compile per target per session. ---

@pytest.fixture(scope="session")
def gated_onnx(synthetic_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic resnet20 checkpoint exported as the gated ONNX model (real dynamo export)."""
    from edgeskip.compile.export import export_checkpoint

    return export_checkpoint(synthetic_checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx").path


def write_pareto(path: Path, skippable_blocks: int) -> Path:
    """A small, valid edgeskip.pareto/1 file for a model with ``skippable_blocks`` gates."""
    from edgeskip_runtime.pareto import ConfigPoint, ParetoFront

    n = skippable_blocks
    configs = [ConfigPoint([1] * n, 0.9, 1.0, test_accuracy=0.89), ConfigPoint([1] * (n - 1) + [0], 0.85, 0.8,
                                                                              test_accuracy=0.84),
               ConfigPoint([0] * n, 0.5, 0.3, test_accuracy=0.52)]
    ParetoFront("resnet20", "synthetic", n, configs).save(path)
    return path


@pytest.fixture(scope="session")
def pareto_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pareto(tmp_path_factory.mktemp("pareto") / "pareto.json", 6)


@pytest.fixture(scope="session")
def bundles(gated_onnx: Path, pareto_file: Path, tmp_path_factory: pytest.TempPathFactory):
    """``bundles(target)``: the bundle of the gated model for ``target``, compiled once per session."""
    from edgeskip.compile.bundle import build_bundle

    root, built = tmp_path_factory.mktemp("bundles"), {}

    def get(target: str):
        if target not in built:
            built[target] = build_bundle(gated_onnx, target, pareto_file, root / target)
        return built[target]

    return get


def flatten_gate(model, k: int):
    """A copy of a gated ONNX model whose k-th gate is data flow: ``Where(cond, block(x), x)``, no If.

    The block then runs on every call: the regression the gate checks exist to catch.
    """
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    ifs = [n for n in model.graph.node if n.op_type == "If"]
    gate = ifs[k]
    branches = {a.name: a.g for a in gate.attribute}
    then, skip = branches["then_branch"], branches["else_branch"]
    where = onnx.helper.make_node("Where", [gate.input[0], then.output[0].name, skip.node[0].input[0]],
                                  [gate.output[0]], name=f"{gate.name}_flattened")
    nodes = []
    for n in model.graph.node:
        nodes.extend([*then.node, where] if n is gate else [n])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


# --- Deploy (edgeskip board-check / deploy / rollback): a real sshd on loopback, throwaway keys. ---

class SSHServer:
    """Debian's ``/usr/sbin/sshd``, non-daemonized on a free 127.0.0.1 port, with its own host and user keys.

    The client side never touches ~/.ssh: a temporary known_hosts holds the throwaway host key.
    """

    def __init__(self, root: Path) -> None:
        import getpass
        import os
        import shutil
        import socket
        import subprocess
        import time

        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not Path(sshd).is_file() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
            pytest.skip("openssh-server/openssh-client are not installed (`make test` installs them as root; "
                        "or apt-get install openssh-server openssh-client)")
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.user = root, getpass.getuser()
        self.host_key, self.user_key = root / "host_key", root / "user_key"
        for key in (self.host_key, self.user_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (root / "authorized_keys").write_text(Path(f"{self.user_key}.pub").read_text())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {Path(f'{self.host_key}.pub').read_text()}")
        config = root / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {root / 'authorized_keys'}", "UsePAM no", "StrictModes no",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PidFile none", "LogLevel ERROR", ""]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir sshd needs as root
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=open(root / "sshd.log", "wb"))  # noqa: SIM115
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                pytest.skip(f"sshd did not start: {(root / 'sshd.log').read_text().strip()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.skip("sshd did not listen within 10 s")
                time.sleep(0.05)

    @property
    def board(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def options(self) -> tuple[str, ...]:
        return (f"UserKnownHostsFile={self.known_hosts}", "GlobalKnownHostsFile=/dev/null", "IdentitiesOnly=yes")

    def cli_args(self, key: Path | None = None) -> list[str]:
        """The ssh options of an ``edgeskip`` board command."""
        args = ["-i", str(key or self.user_key)]
        for opt in self.options():
            args += ["--ssh-option", opt]
        return args

    def runner(self, key: Path | None = None):
        from edgeskip.deploy.ssh import SSHRunner, SSHTarget

        return SSHRunner(SSHTarget.parse(self.board), identity=str(key or self.user_key), options=self.options())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    server = SSHServer(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def own_sshd(tmp_path: Path):
    """An sshd of the test's own, which the test may stop (to drop the connection)."""
    server = SSHServer(tmp_path / "own-sshd")
    yield server
    server.stop()
