"""Running a compiled bundle: ``infer(image, cfg)`` for one image or a batch (Korol et al., Sec. II-A.2, II-B).

Every skip configuration lives in the one executable: ``cfg`` is an input array, so
switching configuration costs no reload. Inputs are checked against the manifest before
they reach IREE, so a wrong shape or dtype gets a message that says what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeskip_runtime.arch import DRIVERS
from edgeskip_runtime.bundle import Bundle, BundleError
from edgeskip_runtime.errors import EdgeskipError, UsageError
from edgeskip_runtime.pinning import pin_current_thread, task_topology_flags

# "caching" keeps freed device buffers for reuse: every taken gate branch allocates its result and
# scratch afresh, and without a cache each call pays page faults for them (compile_bench measures the
# default allocator side by side: ``with_default_allocator`` in docs/results/compile_bench_*.json).
ALLOCATORS = ("caching", "default")


class InputError(EdgeskipError, ValueError):
    """An image or cfg does not fit the compiled module."""


def _iree() -> Any:
    try:
        import iree.runtime as rt
    except ImportError as e:  # pragma: no cover - depends on the board's install
        raise EdgeskipError("the IREE runtime is not installed: pip install iree-base-runtime==3.13.0 "
                           "(armv7: build it from source, see docker/runtime-armhf.Dockerfile)") from e
    return rt


def check_device_options(driver: str, allocator: str) -> None:
    if driver not in DRIVERS:
        raise UsageError(f"unknown driver {driver!r}; use one of {DRIVERS}", setting="driver")
    if allocator not in ALLOCATORS:
        raise UsageError(f"unknown allocator {allocator!r}; use one of {ALLOCATORS}", setting="allocator")


def create_device(driver: str = "local-sync", allocator: str = "caching") -> Any:
    """A HAL device of ``driver`` with ``allocator``.

    Create one per process and reuse it for every module loaded (see ``load_function``): IREE
    3.13 does not give back all of a released device's memory, so a device per hot reload would
    grow the server with every reload; one shared device does not.
    """
    check_device_options(driver, allocator)
    return _iree().get_driver(driver).create_default_device(allocators=None if allocator == "default" else [allocator])


def load_function(vmfb: str | Path, function: str, *, driver: str = "local-sync",
                  allocator: str = "caching", device: Any = None) -> tuple[Any, Any]:
    """``(context, function)``: ``function`` of the module in ``vmfb``, on ``device`` (default: a new
    ``driver`` device with ``allocator``)."""
    check_device_options(driver, allocator)
    rt = _iree()
    if device is None:
        device = create_device(driver, allocator)
    config = rt.Config(device=device)
    context = rt.SystemContext(config=config)
    try:
        vm_module = rt.VmModule.mmap(config.vm_instance, str(vmfb))
    except (RuntimeError, ValueError) as e:
        raise BundleError(f"IREE could not load {vmfb} (truncated or corrupt module?): {e}") from e
    context.add_vm_module(vm_module)
    return context, context.modules[vm_module.name][function]


def to_numpy(result: Any) -> np.ndarray:
    """Copy a module result to host memory the caller owns.

    A view into the device buffer would dangle once the model is gone: with the caching
    allocator, reading it after the device is freed crashed the process.
    """
    return np.array(result.to_host(), copy=True)


class CompiledModel:
    """The bundle's module loaded into an IREE context, ready for ``infer``."""

    def __init__(self, bundle: Bundle, *, driver: str = "local-sync", pin: bool = False,
                 allocator: str = "caching", device: Any = None) -> None:
        check_device_options(driver, allocator)  # before pinning touches the thread or IREE's flags
        rt = _iree()
        self.bundle = bundle
        self.driver = driver
        self.pinned_cores: list[int] = []
        if pin and driver == "local-task" and (flags := task_topology_flags(bundle.serving_cores)):
            rt.flags.parse_flags(*flags)
        if pin and driver == "local-sync":
            self.pinned_cores = pin_current_thread(bundle.serving_cores)
        self.image_spec = bundle.input("image")
        # A self-gated module (SkipNet) decides its own branches and takes no cfg: one operating point.
        self.cfg_spec = None if bundle.manifest.self_gated else bundle.input("cfg")
        self._context, self._fn = load_function(bundle.vmfb, bundle.function, driver=driver, allocator=allocator,
                                                device=device)
        self._cfg_dtype = np.dtype(self.cfg_spec.dtype if self.cfg_spec else "int64")
        fn = self._fn
        self._call = fn if self.cfg_spec else (lambda x, _cfg: fn(x))  # the per-request path: no extra frame

    @property
    def num_gates(self) -> int:
        """Entries of cfg (0 for a self-gated module)."""
        return int(self.cfg_spec.shape[0]) if self.cfg_spec else 0

    def check_cfg(self, cfg: Sequence[int] | np.ndarray) -> np.ndarray:
        arr = np.asarray(cfg)
        if arr.size == 0:  # an empty cfg (a self-gated module's) has no dtype to speak of
            arr = arr.astype(self._cfg_dtype)
        if arr.dtype.kind not in "biu":
            raise InputError(f"cfg must hold integers or bools, got dtype {arr.dtype}")
        if arr.shape != (self.num_gates,):
            raise InputError(f"cfg must have shape ({self.num_gates},), one entry per skippable block; "
                             f"got {arr.shape}")
        if not np.isin(arr, (0, 1)).all():
            raise InputError(f"cfg entries must be 0 (skip) or 1 (run), got {sorted(set(arr.tolist()) - {0, 1})}")
        return np.ascontiguousarray(arr, dtype=self._cfg_dtype)

    def check_image(self, image: np.ndarray) -> np.ndarray:
        """Accept ``(C, H, W)`` or ``(N, C, H, W)`` floating images; return ``(N, C, H, W)`` float32."""
        arr = np.asarray(image)
        per_image = self.image_spec.shape[1:]
        if arr.dtype.kind != "f":
            raise InputError(f"image must be floating point (normalised), got dtype {arr.dtype}")
        if arr.shape == tuple(per_image):
            arr = arr[None]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(per_image) or arr.shape[0] < 1:
            raise InputError(f"image must have shape {tuple(per_image)} or (N, {', '.join(map(str, per_image))}), "
                             f"got {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError("image contains NaN or Inf")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def infer(self, image: np.ndarray, cfg: Sequence[int] | np.ndarray) -> np.ndarray:
        """Logits ``(N, classes)`` for ``image`` under skip configuration ``cfg``."""
        batch = self.check_image(image)
        cfg_arr = self.check_cfg(cfg)
        compiled_batch = self.image_spec.shape[0]
        if compiled_batch == batch.shape[0]:
            return to_numpy(self._call(batch, cfg_arr))
        if compiled_batch != 1:
            raise InputError(f"the module was compiled for batch {compiled_batch}, got {batch.shape[0]}")
        return np.concatenate([to_numpy(self._call(batch[i : i + 1], cfg_arr)) for i in range(batch.shape[0])])

    def infer_raw(self, image: np.ndarray, cfg: np.ndarray) -> np.ndarray:
        """The hot path for pre-validated, contiguous float32 ``(1, C, H, W)`` input and a checked cfg."""
        return to_numpy(self._call(image, cfg))
