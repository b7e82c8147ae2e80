"""edgeskip-runtime: load an edgeskip bundle on a board and run it (Korol et al., Sec. II-B).

Importable without torch or the IREE compiler: it needs numpy and, to execute, the IREE
runtime (``iree-base-runtime``).
"""

from edgeskip_runtime.bundle import Bundle, BundleError
from edgeskip_runtime.module import CompiledModel, InputError

__all__ = ["Bundle", "BundleError", "CompiledModel", "InputError"]
__version__ = "0.1.0"
