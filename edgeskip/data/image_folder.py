"""``folder:PATH``: a user's dataset as image files (Korol et al., Sec. II-A.1: the framework reads in the
user's dataset), in torchvision's ``ImageFolder`` layout::

    PATH/train/<class>/<image>     PATH/test/<class>/<image>

The classes are the sub-folders of ``train/``, sorted by name (label 0 is the first). ``test/`` may leave a
class out but not add one. Files with an image extension Pillow knows are read; hidden files and other
extensions are ignored, as ``ImageFolder`` does. Every image must have the size of the first one; they are
read as one channel when all are grey-scale, else as RGB (an alpha channel is dropped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeskip.data.base import DatasetError, ImageSet
from edgeskip.data.registry import register_dataset_source
from edgeskip.progress import progress_bar

GREY_MODES = ("1", "L", "I", "I;16", "F")


def _image_files(folder: Path) -> list[Path]:
    from PIL import Image

    extensions = {e.lower() for e in Image.registered_extensions()}
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions)


def _class_folders(split: Path) -> list[Path]:
    if not split.is_dir():
        raise DatasetError(f"folder dataset: {split} does not exist; a folder dataset has train/ and test/, each with "
                           "one sub-folder per class", setting="dataset")
    folders = sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"folder dataset: {split} has no class sub-folders")
    return folders


def _check_headers(files: list[tuple[Path, int]]) -> tuple[tuple[int, int], str]:
    """Every file's header (size, mode), read without decoding: the common size and the mode to read all in."""
    from PIL import Image, UnidentifiedImageError

    headers = []
    for path, _ in files:
        try:
            with Image.open(path) as im:
                headers.append((im.size, im.mode))
        except (OSError, UnidentifiedImageError) as e:
            raise DatasetError(f"{path} is not a readable image ({e})") from e
    first_size = headers[0][0]
    for (path, _), (size, _) in zip(files, headers, strict=True):
        if size != first_size:
            raise DatasetError(f"{path} is {size[0]}x{size[1]} pixels, but {files[0][0]} is "
                               f"{first_size[0]}x{first_size[1]}; every image of a folder dataset needs one size")
    return first_size, "L" if all(m in GREY_MODES for _, m in headers) else "RGB"


def _decode(files: list[tuple[Path, int]], size: tuple[int, int], mode: str, description: str) -> ImageSet:
    from PIL import Image

    images = np.empty((len(files), size[1], size[0], 1 if mode == "L" else 3), dtype=np.uint8)
    with progress_bar(len(files) >= 2000) as bar:
        task = bar.add_task(description, total=len(files), info="")
        for i, (path, _) in enumerate(files):
            try:
                with Image.open(path) as im:
                    images[i] = np.asarray(im.convert(mode)).reshape(images.shape[1:])
            except (OSError, ValueError) as e:
                raise DatasetError(f"{path} is not a readable image ({e})") from e
            bar.update(task, advance=1)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels)


@register_dataset_source("folder")
def folder(path: Path) -> tuple[ImageSet, ImageSet, int, list[str]]:
    if not path.is_dir():
        raise DatasetError(f"folder dataset {path} does not exist", setting="dataset")
    train_folders = _class_folders(path / "train")
    classes = [f.name for f in train_folders]
    splits: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    for label, class_folder in enumerate(train_folders):
        files = _image_files(class_folder)
        if not files:
            raise DatasetError(f"folder dataset: class folder {class_folder} has no images")
        splits["train"] += [(f, label) for f in files]
    for class_folder in _class_folders(path / "test"):
        if class_folder.name not in classes:
            raise DatasetError(f"folder dataset: {class_folder} is a class that train/ does not have "
                               f"(train/ has {', '.join(classes)})")
        splits["test"] += [(f, classes.index(class_folder.name)) for f in _image_files(class_folder)]
    if not splits["test"]:
        raise DatasetError(f"folder dataset: {path / 'test'} holds no images")
    size, mode = _check_headers(splits["train"] + splits["test"])
    train = _decode(splits["train"], size, mode, f"read {path.name}/train")
    test = _decode(splits["test"], size, mode, f"read {path.name}/test")
    return train, test, len(classes), classes
