"""A compiled bundle: ``model.vmfb``, ``pareto.json`` and ``manifest.json`` (schema edgeskip.bundle/1).

Opening a bundle checks, before anything is executed, that every file named in the
manifest exists with its sha256, and that the bundle was built for this machine's
architecture. The manifest's ``target`` carries the board facts the runtime needs (serving
cores to pin to, power figures), so the runtime never imports the toolchain.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeskip_runtime.arch import arch_family, machine_family

SCHEMA = "edgeskip.bundle/1"


class BundleError(RuntimeError):
    """The bundle is missing, corrupt, tampered with, or built for another machine."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path, *, check_arch: bool = True) -> Bundle:
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise BundleError(f"{path} is not an edgeskip bundle: {manifest_path.name} is missing")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{manifest_path} is not valid JSON: {e}") from e
        if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
            found = manifest.get("schema") if isinstance(manifest, dict) else None
            raise BundleError(f"{manifest_path} is not an {SCHEMA} manifest (schema {found!r})")
        bundle = cls(path, manifest)
        bundle.verify_files()
        if check_arch:
            bundle.verify_arch()
        return bundle

    def _field(self, *keys: str) -> Any:
        node: Any = self.manifest
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                raise BundleError(f"manifest of {self.path} lacks {'.'.join(keys)}")
            node = node[k]
        return node

    def verify_files(self) -> None:
        files = self._field("files")
        if "model.vmfb" not in files:
            raise BundleError(f"manifest of {self.path} does not list model.vmfb")
        for name, entry in files.items():
            expected = entry["sha256"] if isinstance(entry, dict) else entry
            f = self.path / name
            if not f.is_file():
                raise BundleError(f"bundle {self.path} is incomplete: {name} is missing")
            actual = sha256_file(f)
            if actual != expected:
                raise BundleError(f"checksum mismatch for {name} in {self.path}: manifest says {expected[:12]}…, "
                                  f"file has {actual[:12]}… (corrupt or tampered; rebuild or redeploy the bundle)")

    @property
    def arch(self) -> str:
        target = self._field("target")
        return arch_family(target.get("arch") or target["triple"])

    def verify_arch(self) -> None:
        here = machine_family()
        if self.arch != here:
            raise BundleError(f"bundle {self.path} was built for target {self.target_name!r} ({self.arch}), "
                              f"but this machine is {here}; compile for a matching target "
                              "(`edgeskip targets` lists them)")

    @property
    def target_name(self) -> str:
        return str(self._field("target", "name"))

    @property
    def vmfb(self) -> Path:
        return self.path / "model.vmfb"

    @property
    def function(self) -> str:
        return str(self.manifest.get("entry_function", "main_graph"))

    def input(self, name: str) -> TensorSpec:
        for spec in self._field("inputs"):
            if spec["name"] == name:
                return TensorSpec(spec["name"], tuple(spec["shape"]), spec["dtype"])
        raise BundleError(f"manifest of {self.path} has no input {name!r}")

    @property
    def serving_cores(self) -> list[int]:
        return list(self.manifest.get("target", {}).get("serving_cores", []))

    @property
    def pareto(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "pareto.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BundleError(f"pareto.json of {self.path} is unreadable: {e}") from e


def rewrite_bundle(path: str | Path, updates: dict[str, bytes]) -> None:
    """Replace files of a bundle and refresh their checksums in the manifest, all or nothing.

    The new bundle is assembled beside the old one (unchanged files hard-linked), then the
    two directories are swapped by two renames; a crash in between leaves ``PATH.previous``
    with the complete old bundle, never a bundle whose checksums disagree with its files.
    """
    path = Path(path).resolve()
    manifest = json.loads((path / "manifest.json").read_text())
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for f in path.iterdir():
            if f.is_file() and f.name not in updates and f.name != "manifest.json":
                try:
                    os.link(f, staging / f.name)
                except OSError:
                    shutil.copy2(f, staging / f.name)
        for name, data in updates.items():
            (staging / name).write_bytes(data)
            entry = manifest["files"].get(name)
            digest = hashlib.sha256(data).hexdigest()
            if isinstance(entry, dict):
                entry.update({"sha256": digest, "bytes": len(data)})
            else:
                manifest["files"][name] = digest
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        for f in staging.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        previous = path.with_name(path.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        os.rename(path, previous)
        os.rename(staging, path)
        shutil.rmtree(previous)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
