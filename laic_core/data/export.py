"""Lay a clustering out as folders of images: OUT/<id>-<name>/<file>, plus OUT/clusters.csv.

`plan_export` decides every image's path (pure: no file is touched);
`write_export` makes the links or copies. Source images are only ever read:
links point at them, copies copy them, and an image that is not a file (a
benchmark's image, "cifar10:test[3]") is written as a PNG.

Names are made safe for every common file system (`safe_name`: no characters
Windows, macOS or Linux refuse, no reserved device names, no trailing dots or
spaces, a bounded length), and two images of one folder never share a name,
even where names differ only in case.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from laic_core.artifacts import atomic_path
from laic_core.data.images import indexed_source, source_file, source_parts, to_rgb
from laic_core.errors import LaicError
from laic_core.progress import progress_bar

MODES = ("symlink", "copy", "hardlink")
CSV_NAME = "clusters.csv"
JUNK_FOLDER = "junk"  # the images of clusters marked junk (cluster id -1)
MAX_NAME = 60  # characters of a cluster's name in its folder name
MAX_FILE = 120  # characters of a file name
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f\s&;$!`\'\[\]]+')  # refused somewhere, or awkward in a shell
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe_name(text: str, max_len: int = MAX_NAME) -> str:
    """`text` as a file name that every common file system takes ("" stays "").

    Unicode NFC; characters Windows refuses (<>:"/\\|?* and control
    characters), whitespace and characters a shell would act on (&;$!`'[])
    become "_"; no leading or trailing dots, spaces or "_"; at most max_len
    characters; a Windows device name (CON, NUL, COM1.txt, ...) gets a
    leading "_".
    """
    name = _UNSAFE.sub("_", unicodedata.normalize("NFC", str(text)))
    name = name.strip("._ ")[:max_len].rstrip("._ ")
    if name.split(".")[0].lower() in _RESERVED:
        name = "_" + name
    return name


def folder_names(ids: Sequence[int], names: Sequence[str]) -> dict[int, str]:
    """{cluster id: its folder}: "<id>-<safe name>" (just "<id>" when unnamed), ids zero-padded to
    the widest so folders sort by id; the junk id -1 -> "junk"."""
    ids = [int(k) for k in ids]
    width = len(str(max([k for k in ids if k >= 0], default=0)))
    out = {}
    for k, name in zip(ids, names):
        if k < 0:
            out[k] = JUNK_FOLDER
        else:
            safe = safe_name(name)
            out[k] = f"{k:0{width}d}-{safe}" if safe else f"{k:0{width}d}"
    return out


def _file_name(source: str) -> str:
    if indexed_source(source):  # not a file: written as a PNG named after its source
        return (safe_name(source, MAX_FILE - 4) or "image") + ".png"
    base = source_parts(source)[1]
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = safe_name(suffix, 10)
    return (safe_name(stem, MAX_FILE - len(suffix) - 1) or "image") + (f".{suffix}" if suffix else "")


def plan_export(sources: Sequence[str], clusters, names: Sequence[str]) -> pd.DataFrame:
    """Where every image goes: one row per image (in row order) with row, source, cluster, name and
    path (relative to the export folder, "/"-separated).

    sources: (N,) file paths or "<dataset>:<split>[i]"; clusters: (N,) int cluster ids (-1 = junk);
    names: (N,) the name of each image's cluster (a cluster's folder takes the name of its first
    image). A file name two images of one folder share (ignoring case: macOS and Windows do) gets
    "-<row>" before its suffix.
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    if not (len(sources) == clusters.shape[0] == len(names)):
        raise LaicError(f"{len(sources)} sources, {clusters.shape[0]} clusters and {len(names)} names: "
                        "give one of each per image")
    first = {}
    for k, name in zip(clusters.tolist(), names):
        first.setdefault(k, str(name) if isinstance(name, str) else "")
    folders = folder_names(list(first), list(first.values()))
    paths, taken = [], set()
    for row, (source, k) in enumerate(zip(map(str, sources), clusters.tolist())):
        name = _file_name(source)
        path = f"{folders[k]}/{name}"
        if path.lower() in taken:
            stem, dot, suffix = name.rpartition(".")
            name = f"{stem}-{row}.{suffix}" if dot else f"{name}-{row}"
            path = f"{folders[k]}/{name}"
        taken.add(path.lower())
        paths.append(path)
    return pd.DataFrame({"row": np.arange(len(paths), dtype=np.int64), "source": list(map(str, sources)),
                         "cluster": clusters, "name": [first[k] for k in clusters.tolist()], "path": paths})


def _is_inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def inside(out: str | Path, folder: str | Path) -> bool:
    """Whether the folder `out` (made or not) is `folder` or lies inside it, links resolved."""
    return _is_inside(os.path.realpath(out), os.path.realpath(folder))


def _previous_export(out: Path) -> list[Path]:
    """The files an earlier export into `out` made (listed in its clusters.csv), that still exist."""
    listing = out / CSV_NAME
    if not listing.is_file():
        return []
    try:
        paths = pd.read_csv(listing, usecols=["path"])["path"].astype(str)
    except (ValueError, pd.errors.ParserError):
        return []
    files = [out / p for p in paths if ".." not in Path(p).parts and not Path(p).is_absolute()]
    return [f for f in files if f.is_symlink() or f.is_file()] + [listing]


def _why_not(out: Path, exc: OSError) -> str:
    """Why the folder `out` cannot be made, in words: a file in its way, or the system's reason."""
    for parent in [out, *out.parents]:
        if os.path.lexists(parent):
            if not parent.is_dir():
                return f"{parent} is a file"
            break
    return exc.strerror or str(exc)


def _remove_previous(out: Path, files: Sequence[Path]) -> None:
    """Remove an earlier export's files, then the folders they leave empty (never `out` itself)."""
    folders = set()
    for f in files:
        f.unlink()  # a link or our own copy: never a source (sources cannot lie inside out)
        folders.update(p for p in f.parents if p != out and _is_inside(str(p), str(out)))
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only when empty: a person's own files there stay
        except OSError:
            pass


def write_export(plan: pd.DataFrame, out: str | Path, *, mode: str = "symlink",
                 load_image: Callable[[int], Image.Image] | None = None, force: bool = False,
                 progress: bool = True) -> dict:
    """Make `plan` (from `plan_export`) real under `out`; returns {"images", "folders", "written"}.

    mode: "symlink" (absolute links to the sources), "copy" or "hardlink" (same file system only);
    an image that is not a file is loaded with load_image(row) and written as PNG in every mode.
    `out` must not exist, or be an empty folder; with force, a non-empty folder is written into:
    the files of an earlier export there (its clusters.csv lists them) and the folders they leave
    empty are removed, anything else is kept, and a path already taken by another file is an
    error. The export is written beside `out` (a hidden `.<name>.partial`) and moved into place
    only when complete, so a refusal or an interruption leaves `out` as it was and nothing beside
    it. Sources are only read; `out` may not hold any of them (the caller refuses an `out` inside
    a folder the dataset lists, `inside`).
    """
    out = Path(out)
    if mode not in MODES:
        raise LaicError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if out.is_file() or (out.is_symlink() and not out.is_dir()):
        raise LaicError(f"{out} is a file; give the folder to export into (a new one, or an empty one)")
    non_empty = out.is_dir() and any(out.iterdir())
    if non_empty and not force:
        raise LaicError(f"{out} is not empty; export into a new or empty folder, or pass --force to write "
                        "into it (replacing a previous export there, keeping anything else)")
    here = os.path.realpath(out)
    files = [s for s in plan["source"] if not indexed_source(s)]
    held = [s for s in files if _is_inside(os.path.realpath(s), here)]
    if held:
        raise LaicError(f"{out} holds source images (e.g. {held[0]}); export into a folder outside the images")
    previous = _previous_export(out) if non_empty else []
    if non_empty:
        mine = {str(f.relative_to(out)) for f in previous}
        taken = [p for p in plan["path"] if os.path.lexists(out / p) and p not in mine]
        if taken:
            raise LaicError(f"{out}: {len(taken)} path(s) the export needs are taken by other files "
                            f"(e.g. {out / taken[0]}); export into a new folder")
    partial = out.with_name(f".{out.name}.partial")
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            for folder in sorted({p.rsplit("/", 1)[0] for p in plan["path"]}):
                (partial / folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LaicError(f"cannot create the folder {out} ({_why_not(out, exc)}); export into a folder you "
                            "can write") from None
        with progress_bar(len(plan), f"export ({mode})", unit="img", enabled=progress) as bar:
            for row, source, path in zip(plan["row"].tolist(), plan["source"].tolist(), plan["path"].tolist()):
                _place(int(row), str(source), partial / path, mode, load_image)
                bar.update(1)
        with atomic_path(partial / CSV_NAME) as tmp:
            plan.to_csv(tmp, index=False)
        if non_empty:
            _remove_previous(out, previous)
            for folder in sorted({p.rsplit("/", 1)[0] for p in plan["path"]}):
                (out / folder).mkdir(parents=True, exist_ok=True)
            for path in [*plan["path"].tolist(), CSV_NAME]:
                os.replace(partial / path, out / path)
            shutil.rmtree(partial)
        else:
            if out.is_dir():
                out.rmdir()  # empty, checked above
            partial.rename(out)
    except OSError as exc:
        raise LaicError(f"export into {out} failed: {exc.strerror or exc} ({exc.filename or out}); nothing was "
                        "left beside it") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    n_folders = plan["path"].str.rsplit("/", n=1).str[0].nunique()
    return {"images": len(plan), "folders": int(n_folders), "written": str(out)}


def _place(row: int, source: str, dest: Path, mode: str, load_image) -> None:
    if indexed_source(source) and not os.path.exists(source):
        if load_image is None:
            raise LaicError(f"{source} is not a file and no loader was given to write it as PNG")
        with atomic_path(dest) as tmp:
            to_rgb(load_image(row)).save(tmp, "PNG")
        return
    source = source_file(source)  # a name that is not UTF-8 is stored with its bytes as \xNN
    if not os.path.isfile(source):
        raise LaicError(f"{source}: no such image file; the per-image table names images that are gone "
                        "(moved since the run?); restore them or rerun `dvc repro`")
    if mode == "symlink":
        os.symlink(os.path.abspath(source), dest)
    elif mode == "hardlink":
        try:
            os.link(source, dest)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise LaicError(f"cannot hard-link {source} into {dest.parent} ({exc.strerror}): hard links "
                                "need one file system; use --mode copy or --mode symlink") from exc
            raise
    else:
        shutil.copy2(source, dest)  # keeps the modification time; reads the source only
