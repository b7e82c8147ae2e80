"""Write Fashion-MNIST as an edgeskip npz dataset (x_train, y_train, x_test, y_test, classes), as a user
would convert their own data: plain NumPy, no edgeskip imports.

    python make_npz.py [--source /usr/share/datasets/fashion-mnist] [--out fashion.npz]
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4")
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=Path("fashion.npz"))
    args = parser.parse_args()
    arrays = {f"x_{split}": read_idx(args.source / f"{prefix}-images-idx3-ubyte.gz")  # (N, 28, 28) uint8
              for split, prefix in (("train", "train"), ("test", "t10k"))}
    arrays |= {f"y_{split}": read_idx(args.source / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
               for split, prefix in (("train", "train"), ("test", "t10k"))}
    np.savez_compressed(args.out, **arrays, classes=np.array(CLASSES))
    print(f"wrote {args.out}: {len(arrays['x_train'])} training and {len(arrays['x_test'])} test images")


if __name__ == "__main__":
    main()
