"""Images stored as files: which files are images, reading them as RGB, and `ImageSplit`.

An `ImageSplit` is an ordered list of images with optional integer labels
(-1 where unknown) and class names. It loads raw PIL images by index and
says where each came from; decoding problems surface per image so the
caller can fail with the file's name or skip it. The dataset registry
(`datasets`) and the UCF-101 reader (`ucf101`) both build on this module.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from laic_core.errors import LaicError

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB, fully decoded.

    Grayscale, palette and CMYK convert directly; 16-bit and 32-bit integer
    images are rescaled to 8 bits (PIL's own conversion would clip them);
    images with transparency are composited over white rather than having
    their hidden colour channels exposed.
    """
    img.load()  # decode now, so truncated files fail here and not later
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


class ImageSplit:
    """An ordered list of images of one split; subclasses say how to load them."""

    name: str
    labels: np.ndarray | None  # (N,) int64, -1 where unknown; None when no label at all
    class_names: list[str] | None
    # What a user should know about how the split was read (skipped link
    # loops, images without a class); embed prints them and records them in
    # the features metadata, so nothing is dropped or changed unannounced.
    notes: list[str]

    def __len__(self) -> int:
        raise NotImplementedError

    def load_image(self, i: int) -> Image.Image:
        raise NotImplementedError

    def source(self, i: int) -> str:
        """Where image i came from: a file path, or `<dataset>:<split>[i]`."""
        raise NotImplementedError

    def sources(self) -> list[str]:
        return [self.source(i) for i in range(len(self))]

    def identity(self) -> dict[str, Any]:
        """What the embeddings of this split depend on, for resumable work."""
        raise NotImplementedError


class FileSplit(ImageSplit):
    """Images stored as files (ImageFolder trees and manifests)."""

    def __init__(self, name: str, paths: list[Path], labels: np.ndarray | None,
                 class_names: list[str] | None, notes: list[str] | None = None):
        self.name = name
        self.paths = [str(p) for p in paths]
        self.labels = labels
        self.class_names = class_names
        self.notes = list(notes or [])

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, i: int) -> Image.Image:
        path = self.paths[i]
        try:
            return Image.open(path)
        except FileNotFoundError:
            # A broken link is listed on purpose (so it is reported, not
            # dropped); say what it is rather than "no such file".
            if os.path.islink(path):
                raise FileNotFoundError(f"broken symbolic link to {os.readlink(path)}") from None
            raise

    def source(self, i: int) -> str:
        return self.paths[i]

    def sources(self) -> list[str]:
        return list(self.paths)

    def identity(self) -> dict[str, Any]:
        stats = []
        for p in self.paths:
            try:
                st = os.stat(p)
                stats.append((p, st.st_size, st.st_mtime_ns))
            except OSError:
                stats.append((p, -1, -1))
        return {"kind": "files", "name": self.name, "files": stats}


INDEXED_SOURCE = re.compile(r"^(?P<name>.+)\[(?P<index>\d+)\]$")  # "cifar10:test[12]": not a file


def indexed_source(source: str) -> tuple[str, int] | None:
    """("<dataset>:<split>", i) when `source` names image i of a split that is not a folder of files
    ("cifar10:test[12]", as `ImageSplit.source` gives for a benchmark); None for a file path."""
    match = INDEXED_SOURCE.match(str(source))
    return (match["name"], int(match["index"])) if match else None


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


MAX_LISTED = 20  # file names quoted in one message; the rest are counted


def name_some(paths: list, limit: int = MAX_LISTED) -> str:
    """'a, b, c' or 'a, b, ... and 7 more' (messages stay readable for any count)."""
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f" ... and {len(paths) - limit} more" if len(paths) > limit else "")


def walk_files(folder: Path) -> tuple[list[Path], list[Path], list[str]]:
    """Every file under `folder`, following symbolic links to folders.

    `Path.rglob` does not follow linked folders, which silently dropped every
    class kept as a link (a common way to assemble a dataset). Returns
    (files, broken links, notes), files sorted as `sorted(Path)` sorts them.
    A link back to a folder that contains it (a loop) is not entered again
    and is named in the notes; two links to the same folder are both
    listed, as the tree says. An unreadable folder is an error rather than
    a silently missing class.
    """
    files: list[Path] = []
    broken: list[Path] = []
    notes: list[str] = []
    stack = [(Path(folder), frozenset({os.path.realpath(folder)}))]
    while stack:
        current, ancestors = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            raise LaicError(f"{current}: cannot list this folder ({exc.strerror or exc}); "
                            "fix its permissions or move it out of dataset.root") from exc
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = not is_dir and entry.is_file(follow_symlinks=True)
            except OSError:
                is_dir = is_file = False
            if is_dir:
                real = os.path.realpath(path)
                if real in ancestors:
                    notes.append(f"skipped {path}: a symbolic link to {real}, which contains it (a loop)")
                    continue
                stack.append((path, ancestors | {real}))
            elif is_file:
                files.append(path)
            elif entry.is_symlink():
                broken.append(path)
    return sorted(files), sorted(broken), notes


def tree_images(folder: Path) -> tuple[list[Path], int, list[str]]:
    """(image paths, other files ignored, notes) under folder.

    A broken link named like an image is kept, so that embed reports it as
    unreadable (an error, or a recorded skip with embed.on_error: skip). A
    broken link with any other name may have been a whole class folder: that
    is an error naming every such link.
    """
    files, broken, notes = walk_files(folder)
    images = [p for p in files if is_image_file(p)]
    broken_images = [p for p in broken if is_image_file(p)]
    other_broken = [p for p in broken if not is_image_file(p) and not p.name.startswith(".")]
    if other_broken:
        raise LaicError(
            f"{folder}: {len(other_broken)} broken symbolic link(s), which may have been class folders: "
            + name_some([f"{p} -> {os.readlink(p)}" for p in other_broken])
            + "; point them at existing folders or remove them"
        )
    return sorted(images + broken_images), len(files) - len(images), notes
