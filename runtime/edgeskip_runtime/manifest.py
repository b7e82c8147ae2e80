"""``manifest.json``, schema ``edgeskip.bundle/1``: the one definition of a bundle's manifest.

``edgeskip compile`` writes it (:mod:`edgeskip.compile.bundle`); the board runtime, the server, ``profile``
and ``deploy`` read it, all through :class:`Manifest`. The document::

    {"schema": "edgeskip.bundle/1",
     "model": str, "dataset": str | null, "normalization": {"mean": [float], "std": [float]},
     "skippable_blocks": int, "block_names": [str], "pareto_configs": int,
     "entry_function": str, "inputs": [{name, shape, dtype}], "outputs": [{name, shape, dtype}],
     "target": {name, triple, cpu, features, float_abi, arch, big/little/serving cores, power, ...},
     "compiler": {"iree_version", "flags", "passes"}, "executables": [ELF facts],
     "compile_log": [steps], "files": {name: sha256}, "self_gated": bool}

``files`` lists every file of the bundle folder but the manifest itself, each with its sha256.
``target`` is the board's registered description (``edgeskip.targets``), so the runtime never needs the
toolchain to know its serving cores or power figures.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeskip_runtime.atomic import write_json
from edgeskip_runtime.errors import EdgeskipError

SCHEMA = "edgeskip.bundle/1"
MANIFEST = "manifest.json"


class BundleError(EdgeskipError, RuntimeError):
    """The bundle is missing, corrupt, tampered with, or built for another machine."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), tuple(int(n) for n in d["shape"]), str(d["dtype"]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Manifest:
    model: str
    dataset: str | None
    normalization: dict[str, list[float]]  # {"mean": [...], "std": [...]}, one entry per channel
    skippable_blocks: int
    entry_function: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    target: dict[str, Any]
    files: dict[str, str]  # file name -> sha256, every file but the manifest
    block_names: tuple[str, ...] = ()
    pareto_configs: int = 0
    compiler: dict[str, Any] = field(default_factory=dict)
    executables: tuple[dict[str, Any], ...] = ()
    compile_log: tuple[dict[str, Any], ...] = ()
    self_gated: bool = False  # decides its own branches (SkipNet): no cfg input, one operating point

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: Any, where: str | Path = "manifest") -> Manifest:
        """Check and type a parsed manifest; anything missing or mistyped raises :class:`BundleError`."""
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise BundleError(f"{where} is not an {SCHEMA} manifest (schema {found!r})")
        try:
            files = doc["files"]
            if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
                raise TypeError("files must map each file name to its sha256")
            target = doc["target"]
            if not isinstance(target, dict) or "name" not in target or not (target.get("arch") or target.get("triple")):
                raise TypeError("target must name the board and its arch or triple")
            norm = doc.get("normalization") or {}
            return cls(
                model=str(doc["model"]),
                dataset=None if doc.get("dataset") is None else str(doc["dataset"]),
                normalization={k: [float(x) for x in norm[k]] for k in ("mean", "std") if k in norm},
                skippable_blocks=int(doc["skippable_blocks"]),
                entry_function=str(doc.get("entry_function", "main_graph")),
                inputs=tuple(TensorSpec.from_dict(s) for s in doc["inputs"]),
                outputs=tuple(TensorSpec.from_dict(s) for s in doc.get("outputs", [])),
                target=target,
                files=dict(files),
                block_names=tuple(str(n) for n in doc.get("block_names", [])),
                pareto_configs=int(doc.get("pareto_configs", 0)),
                compiler=dict(doc.get("compiler", {})),
                executables=tuple(doc.get("executables", [])),
                compile_log=tuple(doc.get("compile_log", [])),
                self_gated=bool(doc.get("self_gated", False)),
            )
        except KeyError as e:
            raise BundleError(f"{where} lacks {e.args[0]!r}") from e
        except (TypeError, ValueError) as e:
            raise BundleError(f"{where} is malformed: {e}") from e

    @classmethod
    def read(cls, bundle_dir: str | Path) -> Manifest:
        path = Path(bundle_dir) / MANIFEST
        if not path.is_file():
            raise BundleError(f"{bundle_dir} is not an edgeskip bundle: {MANIFEST} is missing")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{path} is not valid JSON: {e}") from e
        return cls.from_dict(doc, path)

    # -- writing ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = [s.to_dict() for s in self.inputs]
        d["outputs"] = [s.to_dict() for s in self.outputs]
        for key in ("block_names", "executables", "compile_log"):
            d[key] = list(d[key])
        return {"schema": SCHEMA, **d}

    def write(self, bundle_dir: str | Path) -> None:
        write_json(Path(bundle_dir) / MANIFEST, self.to_dict())

    def with_files(self, updates: dict[str, str]) -> Manifest:
        """The same manifest with the sha256 of the files in ``updates`` replaced or added."""
        return replace(self, files={**self.files, **updates})

    # -- what readers ask ------------------------------------------------------------------------
    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise BundleError(f"the manifest has no input {name!r}")

    @property
    def target_name(self) -> str:
        return str(self.target["name"])

    @property
    def serving_cores(self) -> list[int]:
        return [int(c) for c in self.target.get("serving_cores", [])]

    @property
    def power(self) -> dict[str, Any] | None:
        return self.target.get("power")


__all__ = ["MANIFEST", "SCHEMA", "BundleError", "Manifest", "TensorSpec"]
