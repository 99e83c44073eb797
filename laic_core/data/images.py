"""Images stored as files: which files are images, reading them as RGB, and `ImageSplit`.

An `ImageSplit` is an ordered list of images with optional integer labels
(-1 where unknown) and class names. It loads raw PIL images by index and
says where each came from; decoding problems surface per image so the
caller can fail with the file's name or skip it. The dataset registry
(`datasets`) and the UCF-101 reader (`ucf101`) both build on this module.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

from laic_core.errors import LaicError, name_some, printable

# Formats Pillow registers but cannot turn into pixels here: MPEG, whose
# plugin reads a video's frame size and decodes nothing (the stubs, such as
# HDF5 and GRIB, are recognised by their class).
_UNDECODED_FORMATS = {"MPEG"}


@functools.cache  # asked once, when a folder is first listed: not at import (Pillow's plugins, Ghostscript)
def readable_extensions() -> tuple[str, ...]:
    """Every file extension the installed Pillow decodes (lower case, with the dot).

    Asked of Pillow rather than listed by hand: a fixed list left out the
    `.jfif` and `.jpe` files cameras write, and the AVIF and JPEG 2000 files
    Pillow reads when it is built with them.
    """
    Image.init()
    readable = set()
    for extension, format_name in Image.registered_extensions().items():
        opener = Image.OPEN.get(format_name)
        if opener is None or format_name in _UNDECODED_FORMATS:
            continue
        if isinstance(opener[0], type) and issubclass(opener[0], ImageFile.StubImageFile):
            continue  # needs a decoder the application installs
        if format_name == "EPS" and not _has_ghostscript():  # PostScript is rendered by Ghostscript
            continue
        readable.add(extension.lower())
    return tuple(sorted(readable))


def _has_ghostscript() -> bool:
    from PIL import EpsImagePlugin

    return bool(EpsImagePlugin.has_ghostscript())


def upright(img: Image.Image) -> Image.Image:
    """`img` turned as its EXIF Orientation tag says (itself when there is none, or it says "upright").

    Phones store a portrait photo's pixels sideways and say so in the tag;
    CLIP embeds the pixels it is given, and a sideways cat is about as far
    from the upright one as another cat is.
    """
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a damaged EXIF block must not cost a readable image its pixels
        return img
    return img if orientation == 1 else ImageOps.exif_transpose(img)


_ESCAPED_BYTE = re.compile(rb"\\x([89a-f][0-9a-f])")  # a byte >= 0x80 as `printable` writes it


def source_file(source: str | Path) -> str:
    """The file a stored source names: `source` itself, or, when that does not exist and `source`
    holds `\\xNN` escapes (`printable` of a name that is not UTF-8), the name with those bytes.

    Lossless but for one case: a folder holding both a file literally named `caf\\xe9.jpg` and
    one whose name has the byte 0xe9 there; the literal name is taken.
    """
    source = str(source)
    if "\\x" not in source or os.path.lexists(source):
        return source
    raw = os.fsencode(source)
    name = os.fsdecode(_ESCAPED_BYTE.sub(lambda m: bytes([int(m[1], 16)]), raw))
    return name if os.path.lexists(name) else source


_SEPARATOR = re.compile(r"/|\\(?!x[89a-f][0-9a-f])")  # a Windows "\\" too, but not `printable`'s \\xNN


def source_parts(source: str) -> tuple[str, str]:
    """(folder, file name) of a stored source path, "/" and Windows' "\\" both separating folders
    (the `\\xNN` of a name that is not UTF-8 stays in the name)."""
    parts = _SEPARATOR.split(str(source))
    return "/".join(parts[:-1]), parts[-1]


def open_image(path: str | Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """The image file at `path`, decoded, upright and 8-bit RGB: how every image file is read.

    Embedding, predict and the gallery's thumbnails all read files through
    this; `path` may be a stored source (`source_file`). draft_size: for thumbnails, lets a JPEG decode at 1/2, 1/4 or 1/8
    scale while it still covers that size (much less work). Pillow's warning
    about a huge image (a possible decompression bomb) is repeated with the
    file's name, which Pillow's own text lacks.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = Image.open(source_file(path))
    for warning in caught:
        named = issubclass(warning.category, Image.DecompressionBombWarning)
        warnings.warn(f"{printable(path)}: {warning.message}" if named else warning.message, warning.category,
                      stacklevel=2)
    with img:  # closes the file once decoded
        if draft_size is not None:
            img.draft("RGB", draft_size)
        return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> 8-bit RGB, fully decoded and upright (`upright`).

    Grayscale, palette and CMYK convert directly; 16-bit and 32-bit integer
    images are rescaled to 8 bits (PIL's own conversion would clip them);
    images with transparency are composited over white rather than having
    their hidden colour channels exposed.
    """
    img.load()  # decode now, so truncated files fail here and not later
    img = upright(img)
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
        self.paths = [str(p) for p in paths]  # as the file system names them (opened as they are)
        self.labels = labels
        self.class_names = class_names
        self.notes = [printable(note) for note in notes or []]

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, i: int) -> Image.Image:
        path = self.paths[i]
        try:
            return open_image(path)
        except FileNotFoundError:
            # A broken link is listed on purpose (so it is reported, not
            # dropped); say what it is rather than "no such file".
            if os.path.islink(path):
                raise FileNotFoundError(f"broken symbolic link to {os.readlink(path)}") from None
            raise

    def source(self, i: int) -> str:
        """The path as stored and shown: a name that is not UTF-8 has its bytes as `\\xNN` (`printable`)."""
        return printable(self.paths[i])

    def sources(self) -> list[str]:
        return [printable(p) for p in self.paths]

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


def is_hidden(path: Path) -> bool:
    """Named with a leading dot: a trash folder, a thumbnail cache, a macOS `._` companion file."""
    return path.name.startswith(".")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in readable_extensions() and not is_hidden(path)


def tidy_path(path: str | Path) -> Path:
    """`path` without `.` and `..` steps (`photos/../cats/a.jpg` -> `cats/a.jpg`), still relative if it was.

    The lexical clean-up is kept only when it names the same file: after a
    symbolic link, `..` leaves the link's target, so there the path is resolved.
    """
    path = Path(path)
    tidy = Path(os.path.normpath(path))
    if tidy == path:
        return path
    try:
        if os.path.samefile(tidy, path):
            return tidy
    except OSError:  # one of them does not exist: resolve, as the file system would
        pass
    return path.resolve()


def walk_files(folder: Path) -> tuple[list[Path], list[Path], list[str]]:
    """Every file under `folder`, following symbolic links to folders, hidden folders skipped.

    `Path.rglob` does not follow linked folders, which silently dropped every
    class kept as a link (a common way to assemble a dataset). Returns
    (files, broken links, notes), files sorted as `sorted(Path)` sorts them.
    A link back to a folder that contains it (a loop) is not entered again
    and is named in the notes; two links to the same folder are both
    listed, as the tree says. Hidden folders (`.Trash-1000`, `.thumbnails`)
    hold no one's dataset: they are not entered, and the notes name them (a
    trash folder walked became a class). An unreadable folder is an error
    rather than a silently missing class.
    """
    files: list[Path] = []
    broken: list[Path] = []
    hidden: list[Path] = []
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
            if is_dir and is_hidden(path):
                hidden.append(path)
            elif is_dir:
                real = os.path.realpath(path)
                if real in ancestors:
                    notes.append(f"skipped {path}: a symbolic link to {real}, which contains it (a loop)")
                    continue
                stack.append((path, ancestors | {real}))
            elif is_file:
                files.append(path)
            elif entry.is_symlink():
                broken.append(path)
    if hidden:
        notes.append(f"skipped {len(hidden)} hidden folder(s) (names starting with '.', like hidden "
                     f"files): {name_some(sorted(hidden))}")
    return sorted(files), sorted(broken), notes


def tree_images(folder: Path) -> tuple[list[Path], int, list[str]]:
    """(image paths, other files left out, notes) under folder.

    A file whose extension the installed Pillow does not read is left out and
    named in a note (hidden files are left out silently). A broken link named
    like an image is kept, so that embed reports it as unreadable (an error,
    or a recorded skip with embed.on_error: skip). A broken link with any
    other name may have been a whole class folder: that is an error naming
    every such link.
    """
    files, broken, notes = walk_files(folder)
    images = [p for p in files if is_image_file(p)]
    broken_images = [p for p in broken if is_image_file(p)]
    other_broken = [p for p in broken if not is_image_file(p) and not is_hidden(p)]
    if other_broken:
        raise LaicError(
            f"{folder}: {len(other_broken)} broken symbolic link(s), which may have been class folders: "
            + name_some([f"{p} -> {os.readlink(p)}" for p in other_broken])
            + "; point them at existing folders or remove them"
        )
    left_out = [p for p in files if not is_image_file(p) and not is_hidden(p)]
    if left_out:
        extensions = sorted({p.suffix.lower() or "(none)" for p in left_out})
        notes.append(f"left out {len(left_out)} file(s) whose extension ({', '.join(extensions)}) is not an "
                     f"image format the installed Pillow reads: {name_some(left_out)}")
    return sorted(images + broken_images), len(files) - len(images), notes
