"""Bring your own network and data: a network defined outside edgeskip (``user_networks.py`` in this folder)
through the whole command line (train, sensitivity, Pareto, export, compile, serve, infer), once with each
skipping protocol, on datasets the tests write themselves (``npz:`` and ``folder:``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from user_networks import ExplicitNet, UserResNet

from edgeskip.data import DatasetError, load_dataset
from edgeskip.data.base import Normalization
from edgeskip.data.synthetic import make_synthetic
from edgeskip.evaluation.client import OIPClient
from edgeskip.evaluation.local_server import LocalServer
from edgeskip.gating import GatedModel
from edgeskip.models import create_model
from edgeskip.models.protocol import ProtocolError, check_skippable
from edgeskip.models.reference import ModelReferenceError, model_arguments, parse_model_args, served_model_name
from edgeskip.training.checkpoint import CheckpointError, load_checkpoint

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CLASSES = [f"pattern-{i}" for i in range(10)]


def edgeskip(*args: str, cwd: Path, ok: bool = True, pythonpath: Path = TESTS) -> subprocess.CompletedProcess:
    """The real ``edgeskip`` command, run where a user would run it, with their code on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    done = subprocess.run([sys.executable, "-m", "edgeskip", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if ok and done.returncode != 0:
        raise AssertionError(f"edgeskip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def write_npz(path: Path, channels: int = 3, n_train: int = 400, n_test: int = 100) -> Path:
    """Synthetic class patterns as a user's npz: channels-last uint8 images, as NumPy and Pillow hold them."""
    train, test = make_synthetic(n_train, 0, channels), make_synthetic(n_test, 1, channels)
    np.savez(path, x_train=train.images.permute(0, 2, 3, 1).numpy(), y_train=train.labels.numpy(),
             x_test=test.images.permute(0, 2, 3, 1).numpy(), y_test=test.labels.numpy(), classes=np.array(CLASSES))
    return path


def write_folder(root: Path, n_train: int = 300, n_test: int = 60) -> Path:
    """The same patterns as PNG files in train/<class>/ and test/<class>/ (grey-scale)."""
    from PIL import Image

    for split, data in (("train", make_synthetic(n_train, 0)), ("test", make_synthetic(n_test, 1))):
        for i, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
            folder = root / split / CLASSES[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy()).save(folder / f"{i:04d}.png")
    return root


PIPELINES = {
    # (model reference, its --model-arg, dataset writer, dataset form, skippable blocks)
    "torchvision-layout-npz": ("user_networks:user_resnet", "block=bottleneck", write_npz, "npz:data.npz", 3),
    "explicit-protocol-folder": ("user_networks:explicit_net", "num_classes=10", write_folder, "folder:images", 3),
}


@pytest.mark.parametrize("case", list(PIPELINES))
def test_whole_command_line_pipeline_on_a_user_network(case: str, tmp_path: Path) -> None:
    ref, model_arg, write_data, dataset, b_s = PIPELINES[case]
    write_data(tmp_path / dataset.partition(":")[2])
    edgeskip("train", "--model", ref, "--model-arg", model_arg, "--dataset", dataset, "--epochs", "1",
             "--limit", "128", "--batch-size", "32", "--out", "model.pt", cwd=tmp_path)
    ck = load_checkpoint(tmp_path / "model.pt")
    key, _, value = model_arg.partition("=")
    assert ck.model == ref and str(ck.model_args[key]) == value and ck.model_args["num_classes"] == 10
    assert ck.dataset == f"{dataset.partition(':')[0]}:{tmp_path / dataset.partition(':')[2]}"  # absolute
    edgeskip("sensitivity", "model.pt", "--limit", "64", "--out", "sensitivity.json", cwd=tmp_path)
    assert sorted(json.loads((tmp_path / "sensitivity.json").read_text())["order"]) == list(range(b_s))
    edgeskip("pareto", "model.pt", "--sensitivity", "sensitivity.json", "--limit", "64", "--repeats", "3",
             "--out", "pareto.json", cwd=tmp_path)
    edgeskip("export", "model.pt", "--out", "model.onnx", cwd=tmp_path)
    edgeskip("compile", "model.onnx", "--pareto", "pareto.json", "--target", "host", "--out", "bundle", cwd=tmp_path)

    image = load_dataset(ck.dataset, limit=1).test.images[0]
    with LocalServer(tmp_path / "bundle", "--no-pin") as server:
        client = OIPClient(server.url)
        assert client.model_name() == served_model_name(ref)
        status, doc, logits = client.infer_uint8(client.model_name(), image.numpy())
        client.close()
    assert status == 200, doc
    mask = doc["parameters"]["mask"]
    model = GatedModel(ck.build_model())  # the user's network, rebuilt from the checkpoint alone
    with torch.no_grad():
        eager = model(ck.normalization.apply(image[None]), torch.tensor(mask, dtype=torch.int64))
    assert logits.shape == (1, 10)
    np.testing.assert_allclose(logits, eager.numpy(), atol=1e-4)
    if dataset.startswith("npz:"):
        later_commands_need_only_the_checkpoint_and_the_bundle(tmp_path)


def later_commands_need_only_the_checkpoint_and_the_bundle(run: Path) -> None:
    """From another folder, evaluate, profile and bench find the user's network and data through the checkpoint
    (its import reference and the npz file's absolute path) and the bundle (its dataset, for bench's labels)."""
    elsewhere = run / "elsewhere"
    elsewhere.mkdir()
    out = edgeskip("evaluate", str(run / "model.pt"), "--limit", "40", cwd=elsewhere).stdout
    assert "user_networks:user_resnet" in out and "n=40" in out
    edgeskip("profile", str(run / "bundle"), "--repeats", "3", "--warmup", "1", "--no-pin", cwd=elsewhere)
    edgeskip("bench", str(run / "bundle"), "--requests", "20", "--out", "bench", cwd=elsewhere)
    runs = json.loads((elsewhere / "bench" / "bench.json").read_text())["runs"].values()
    assert sum(r["processed"] for r in runs) > 0 and all(r["online_accuracy"] is not None for r in runs)


def test_an_entry_point_adds_a_model(tmp_path: Path) -> None:
    """An installed package's ``edgeskip.models`` entry point is a model name like a registered one."""
    site = tmp_path / "site"
    (site / "acme_nets-1.0.dist-info").mkdir(parents=True)
    (site / "acme_nets-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-nets\nVersion: 1.0\n")
    (site / "acme_nets-1.0.dist-info" / "entry_points.txt").write_text(
        "[edgeskip.models]\nacme-resnet = acme_nets:build\n")
    (site / "acme_nets.py").write_text("from user_networks import user_resnet as build\n")
    env_path = Path(os.pathsep.join([str(site), str(TESTS)]))
    assert "acme-resnet" in edgeskip("list", cwd=tmp_path, pythonpath=env_path).stdout
    edgeskip("train", "--model", "acme-resnet", "--dataset", "synthetic", "--recipe", "standard", "--epochs", "1",
             "--limit", "32", "--out", "m.pt", cwd=tmp_path, pythonpath=env_path)
    assert load_checkpoint(tmp_path / "m.pt").model == "acme-resnet"
    broken = tmp_path / "broken"
    (broken / "b-1.0.dist-info").mkdir(parents=True)
    (broken / "b-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: b\nVersion: 1.0\n")
    (broken / "b-1.0.dist-info" / "entry_points.txt").write_text("[edgeskip.models]\nbad-net = gone_module:f\n")
    done = edgeskip("train", "--model", "bad-net", "--dataset", "synthetic", "--out", "x.pt", cwd=tmp_path,
                    pythonpath=broken, ok=False)
    assert done.returncode == 1 and "entry point 'bad-net'" in done.stderr and "gone_module" in done.stderr


# -- protocol violations are named at train time --------------------------------------------------------------

class ShapeChangingNames(ExplicitNet):
    """Names a stride-2 convolution as skippable: skipping it would hand on a tensor of the wrong shape."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3) -> None:
        super().__init__(in_channels, num_classes)
        self.widen = nn.Conv2d(8, 8, 3, stride=2, padding=1)

    def skippable_block_names(self) -> list[str]:
        return ["blocks.1", "widen"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(self.widen(x).mean(dim=(2, 3)))


class RunsTwice(ExplicitNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(self.blocks[1](x).mean(dim=(2, 3)))


def _projected_shortcut() -> nn.Module:
    net = UserResNet()
    net.layer1[1].shortcut = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
    return net


@pytest.mark.parametrize(("build", "message"), [
    (_projected_shortcut, "layer1.1 has a non-identity shortcut .shortcut is a Sequential"),
    (lambda: RunsTwice(num_classes=10), "blocks.1 ran 2 times"),
    (lambda: ShapeChangingNames(num_classes=10), r"widen maps a tensor of shape \(1, 8, 32, 32\) to \(1, 8, 16, 16\)"),
    (lambda: UserResNet(num_classes=7), r"expected logits \(1, 10\)"),
    (lambda: UserResNet(in_channels=1), "fails on an input of shape"),
])
def test_protocol_violations_are_named_before_training(build, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        check_skippable(build(), (3, 32, 32), num_classes=10)


def test_a_violation_stops_train_before_it_writes_anything(tmp_path: Path) -> None:
    (tmp_path / "bad_nets.py").write_text(
        "from user_networks import UserResNet\nfrom torch import nn\n\n"
        "def build(in_channels=3, num_classes=10):\n"
        "    net = UserResNet(in_channels=in_channels, num_classes=num_classes)\n"
        "    net.layer3[1].downsample = nn.Conv2d(32, 32, 1)\n    return net\n")
    done = edgeskip("train", "--model", "bad_nets:build", "--dataset", "synthetic", "--out", "m.pt", cwd=tmp_path,
                    ok=False)
    assert done.returncode == 1 and "block layer3.1 has a non-identity shortcut" in done.stderr
    assert not (tmp_path / "m.pt").exists() and "Traceback" not in done.stderr


# -- model references ---------------------------------------------------------------------------------------------

def test_model_arguments_take_data_args_only_where_the_factory_does() -> None:
    data = {"in_channels": 1, "num_classes": 10}
    assert model_arguments("user_networks:user_resnet", data, {"block": "bottleneck"}) == {
        "in_channels": 1, "num_classes": 10, "block": "bottleneck"}

    assert model_arguments("test_own_network:_projected_shortcut", data, {}) == {}
    with pytest.raises(Exception, match="takes no argument.*depth"):
        model_arguments("user_networks:user_resnet", data, {"depth": 3})


def test_parse_model_args_reads_json_values() -> None:
    assert parse_model_args(["width=8", "small=true", "name=wide", "sizes=[1, 2]", "rate=0.5"]) == {
        "width": 8, "small": True, "name": "wide", "sizes": [1, 2], "rate": 0.5}
    for bad in (["8"], ["=3"], ["a b=1"], ["w=1", "w=2"]):
        with pytest.raises(Exception, match="--model-arg"):
            parse_model_args(bad)


@pytest.mark.parametrize(("ref", "message"), [
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("user_networks:nothing_here", "has no 'nothing_here'"),
    ("user_networks:CLASSES_NOT_THERE.x", "has no"),
    ("user_networks:torch", "names a module"),
    ("user_networks:", "not of the form"),
])
def test_bad_references_get_clear_errors(ref: str, message: str) -> None:
    with pytest.raises(ModelReferenceError, match=message):
        create_model(ref)


def test_a_factory_must_return_a_module() -> None:
    with pytest.raises(ModelReferenceError, match="returned a int"):
        create_model("test_own_network:_not_a_module")


def _not_a_module() -> int:
    return 3


def test_a_checkpoint_naming_an_unimportable_model_is_refused_clearly(tmp_path: Path) -> None:
    from edgeskip.training.checkpoint import Checkpoint

    net = UserResNet()
    Checkpoint(model="moved_away_module:user_resnet", model_args={}, dataset="synthetic",
               normalization=Normalization([0.5] * 3, [0.2] * 3), input_shape=[3, 32, 32],
               state_dict=net.state_dict()).save(tmp_path / "m.pt")
    ck = load_checkpoint(tmp_path / "m.pt")  # reading the weights runs no code
    with pytest.raises(ModelReferenceError, match="cannot import module 'moved_away_module'"):
        ck.build_model()
    Checkpoint(model="user_networks:explicit_net", model_args={}, dataset="synthetic",
               normalization=Normalization([0.5] * 3, [0.2] * 3), input_shape=[3, 32, 32],
               state_dict=net.state_dict()).save(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="do not fit the network"):
        load_checkpoint(tmp_path / "other.pt").build_model()


# -- user data ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["NHWC", "NHW", "NCHW"])
def test_npz_layouts_read_as_nchw(layout: str, tmp_path: Path) -> None:
    train, test = make_synthetic(50, 0, 1 if layout == "NHW" else 3), make_synthetic(20, 1, 1 if layout == "NHW" else 3)
    to = {"NHWC": lambda x: x.permute(0, 2, 3, 1), "NHW": lambda x: x[:, 0], "NCHW": lambda x: x}[layout]
    np.savez(tmp_path / "d.npz", x_train=to(train.images).numpy(), y_train=train.labels.numpy(),
             x_test=to(test.images).numpy(), y_test=test.labels.numpy())
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}", val_fraction=0.2, seed=3)
    assert torch.equal(torch.cat([data.train.images, data.val.images]).sort(0).values, train.images.sort(0).values)
    assert torch.equal(data.test.images, test.images) and data.num_classes == 10
    assert len(data.val) == 10 and data.normalization == Normalization.fit(data.train.images)  # fitted on train only
    assert len(load_dataset(f"npz:{tmp_path / 'd.npz'}", limit=7).train) == 7


def _npz(tmp_path: Path, **override) -> str:
    train, test = make_synthetic(40, 0), make_synthetic(10, 1)
    arrays = {"x_train": train.images[:, 0].numpy(), "y_train": train.labels.numpy(),
              "x_test": test.images[:, 0].numpy(), "y_test": test.labels.numpy(), **override}
    np.savez(tmp_path / "d.npz", **{k: v for k, v in arrays.items() if v is not None})
    return f"npz:{tmp_path / 'd.npz'}"


@pytest.mark.parametrize(("override", "message"), [
    ({"x_train": np.zeros((40, 32, 32), np.float32)}, "x_train is float32, expected uint8.*astype"),
    ({"x_test": np.zeros((10, 2, 2, 32, 32), np.uint8)}, r"x_test has shape \(10, 2, 2, 32, 32\)"),
    ({"x_test": np.zeros((10, 28, 28), np.uint8)}, "both splits need one shape"),
    ({"y_train": np.zeros(39, np.int64)}, r"y_train has shape \(39,\), expected \(40,\)"),
    ({"y_train": np.zeros(40, np.float32)}, "expected integer class indices"),
    ({"y_test": None}, "lacks the array.*y_test"),
    ({"y_train": np.arange(40) % 5 * 2}, "class.*1, 3, 5, 7, 9 have no training images"),
    ({"classes": np.array(["a", "b"])}, "classes names only 2 classes"),
    ({"x_train": np.array([object()] * 40, dtype=object)}, "not a readable .npz"),
])
def test_bad_npz_data_is_named(override: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=message) as caught:
        load_dataset(_npz(tmp_path, **override))
    assert "d.npz" in str(caught.value)


def test_corrupt_and_missing_npz_files(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="d.npz is not a readable"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'nothing.npz'}")
    with pytest.raises(Exception, match="unknown dataset source 'zip'"):
        load_dataset("zip:whatever")


def test_folder_dataset_reads_classes_in_order_and_mixed_modes_as_rgb(tmp_path: Path) -> None:
    from PIL import Image

    root = write_folder(tmp_path / "images", n_train=60, n_test=20)
    grey = load_dataset(f"folder:{root}", val_fraction=0.1)
    assert grey.classes == CLASSES and grey.in_channels == 1 and grey.image_shape == (1, 32, 32)
    assert len(grey.train) + len(grey.val) == 60 and len(grey.test) == 20
    (root / "train" / CLASSES[0] / ".hidden.png").write_bytes(b"ignored")
    (root / "train" / CLASSES[0] / "notes.txt").write_text("ignored: not an image extension")
    Image.new("RGB", (32, 32), (200, 10, 10)).save(root / "test" / CLASSES[3] / "red.png")
    colour = load_dataset(f"folder:{root}")
    assert colour.in_channels == 3 and len(colour.test) == 21
    red = colour.test.images[colour.test.labels == 3][-1]
    assert red[:, 0, 0].tolist() == [200, 10, 10]


def _truncated_png(root: Path) -> None:
    (root / "train" / CLASSES[2] / "0000x.png").write_bytes(b"\x89PNG truncated")


def _smaller_image(root: Path) -> None:
    from PIL import Image

    Image.new("L", (16, 16)).save(root / "train" / CLASSES[1] / "small.png")


@pytest.mark.parametrize(("damage", "message"), [
    (_truncated_png, "0000x.png is not a readable image"),
    (_smaller_image, "small.png is 16x16 pixels"),
    (lambda r: (r / "train" / "empty-class").mkdir(), "empty-class has no images"),
    (lambda r: (r / "test" / "extra-class").mkdir(), "extra-class is a class that train/ does not have"),
    (lambda r: shutil.rmtree(r / "test"), "test does not exist"),
])
def test_bad_folder_data_is_named(damage, message: str, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "images", n_train=40, n_test=10)
    damage(root)
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"folder:{root}")


# -- the worked example ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "args", "blocks"), [
    ("resnet18:resnet18", {"small_input": True, "width": 8}, ["layer1.1", "layer2.1", "layer3.1", "layer4.1"]),
    ("resnet18:resnet18", {}, ["layer1.1", "layer2.1", "layer3.1", "layer4.1"]),
    ("mobile_net:mobile_net", {}, ["features.0", "features.2", "features.4", "features.5", "features.7"]),
])
def test_example_networks_follow_their_protocols(ref: str, args: dict, blocks: list[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    example = REPO / "examples" / "own_network"
    monkeypatch.syspath_prepend(str(example))
    source = (example / f"{ref.partition(':')[0]}.py").read_text()
    assert "import edgeskip" not in source and "from edgeskip" not in source  # plain PyTorch
    model = create_model(ref, **model_arguments(ref, {"in_channels": 1, "num_classes": 10}, args))
    assert [b.name for b in check_skippable(model, (1, 32, 32), num_classes=10)] == blocks
    readme = (example / "README.md").read_text()
    assert f"--model {ref}" in readme and "edgeskip serve" in readme
