"""The on-device adaptive server (Korol et al., Sec. II-B; dynamic depth scheduling)."""

from edgeskip_runtime.server.engine import Dropped, InferenceEngine
from edgeskip_runtime.server.http import serve

__all__ = ["Dropped", "InferenceEngine", "serve"]
