"""The systems the paper compares against (Korol et al., Sec. III-A): SkipNet with feed-forward gates."""

from edgeskip.baselines.skipnet import SkipNet

__all__ = ["SkipNet"]
