"""A compiled bundle: ``model.vmfb``, ``pareto.json`` and ``manifest.json`` (:mod:`edgeskip_runtime.manifest`).

Opening a bundle checks, before anything is executed, that every file named in the
manifest exists with its sha256, and that the bundle was built for this machine's
architecture. The manifest's ``target`` carries the board facts the runtime needs (serving
cores to pin to, power figures), so the runtime never imports the toolchain.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeskip_runtime.arch import arch_family, machine_family
from edgeskip_runtime.atomic import replace_dir
from edgeskip_runtime.manifest import MANIFEST, BundleError, Manifest, TensorSpec
from edgeskip_runtime.pareto import ParetoFileError, ParetoFront


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: str | Path, *, check_arch: bool = True) -> Bundle:
        path = Path(path)
        bundle = cls(path, Manifest.read(path))
        bundle.verify_files()
        if check_arch:
            bundle.verify_arch()
        return bundle

    def verify_files(self) -> None:
        files = self.manifest.files
        if "model.vmfb" not in files:
            raise BundleError(f"manifest of {self.path} does not list model.vmfb")
        for name, expected in files.items():
            f = self.path / name
            if not f.is_file():
                raise BundleError(f"bundle {self.path} is incomplete: {name} is missing")
            actual = sha256_file(f)
            if actual != expected:
                raise BundleError(f"checksum mismatch for {name} in {self.path}: manifest says {expected[:12]}…, "
                                  f"file has {actual[:12]}… (corrupt or tampered; rebuild or redeploy the bundle)")

    @property
    def arch(self) -> str:
        target = self.manifest.target
        return arch_family(target.get("arch") or target["triple"])

    def verify_arch(self) -> None:
        here = machine_family()
        if self.arch != here:
            raise BundleError(f"bundle {self.path} was built for target {self.target_name!r} ({self.arch}), "
                              f"but this machine is {here}; compile for a matching target "
                              "(`edgeskip targets` lists them)")

    @property
    def target_name(self) -> str:
        return self.manifest.target_name

    @property
    def vmfb(self) -> Path:
        return self.path / "model.vmfb"

    @property
    def function(self) -> str:
        return self.manifest.entry_function

    def input(self, name: str) -> TensorSpec:
        return self.manifest.input(name)

    @property
    def serving_cores(self) -> list[int]:
        return self.manifest.serving_cores

    @property
    def pareto(self) -> ParetoFront:
        """The bundle's operating points, checked by the Pareto file's own parser."""
        try:
            return ParetoFront.load(self.path / "pareto.json")
        except ParetoFileError as e:
            raise BundleError(f"pareto.json of {self.path}: {e}") from e


def rewrite_bundle(path: str | Path, updates: dict[str, bytes]) -> None:
    """Replace files of a bundle and refresh their checksums in the manifest, all or nothing.

    The new bundle is assembled beside the old one (unchanged files hard-linked) and swapped in
    with :func:`~edgeskip_runtime.atomic.replace_dir`: never a bundle whose checksums disagree with its files.
    """
    path = Path(path).resolve()
    manifest = Manifest.read(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is read by the serving user too
    try:
        for f in path.iterdir():
            if f.is_file() and f.name not in updates and f.name != MANIFEST:
                try:
                    os.link(f, staging / f.name)
                except OSError:
                    shutil.copy2(f, staging / f.name)
        for name, data in updates.items():
            (staging / name).write_bytes(data)
        manifest.with_files({name: hashlib.sha256(data).hexdigest() for name, data in updates.items()}).write(staging)
        replace_dir(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
