"""Finished embedding arrays kept outside the project, keyed by everything their rows depend on.

The WordNet vocabulary takes about an hour to encode with CLIP ViT-B/32 on a
CPU, and DVC reruns a stage whenever one of its code files changes, so an
upgrade of laic, or a second project (`laic init` on another folder), would pay
that hour again for the same numbers. A finished `vocab` array is therefore
kept here under a key made of the model's identity (by content), the nouns,
the templates, the dtype, the source of the modules that encode them and
`ENCODING_VERSION`; a run whose key matches copies (or hard-links) the array
instead of encoding.

Where: ``$LAIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/laic``, else
``~/.cache/laic``; ``LAIC_CACHE_DIR=off`` turns it off. Random-weight models
(``pretrained: none``) are never cached. Each entry is one ``.npy`` file;
deleting the folder is always safe.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from laic_core.artifacts import atomic_path

ENV = "LAIC_CACHE_DIR"
# Part of every key, with the source of the modules that encode (text/encode, tower, prefix_cache):
# bump it when the rows of an encoding change for a reason the key does not see (how a model is
# loaded or put in eval mode, the dtype policy), so that no stale encoding is reused.
ENCODING_VERSION = 1
OFF = ("off", "none", "0", "false")
KEEP = 8  # entries kept per kind; older ones (by last use) are removed


def cache_dir() -> Path | None:
    """The cache folder, or None when it is turned off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "laic"


def source_digest(*modules) -> str:
    """sha256 (16 hex) of the source files of `modules`: the code whose change must invalidate a key."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _entry(kind: str, key: str) -> Path | None:
    folder = cache_dir()
    return None if folder is None else folder / kind / f"{key}.npy"


def lookup(kind: str, key: str, n_rows: int) -> Path | None:
    """The cached (n_rows, d) array of `kind` under `key` when it exists, else None."""
    path = _entry(kind, key)
    if path is None or not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):  # a damaged entry is a miss, and goes
        path.unlink(missing_ok=True)
        return None
    if array.ndim != 2 or array.shape[0] != n_rows:
        return None
    os.utime(path)  # last use, for `_prune`
    return path


def restore(cached: Path, dest: str | Path) -> None:
    """Put the cached array at `dest`, atomically: a hard link where the file system allows, else a copy."""
    dest = Path(dest)
    with atomic_path(dest, size=cached.stat().st_size) as tmp:
        tmp.unlink()
        try:
            os.link(cached, tmp)
        except OSError:
            shutil.copyfile(cached, tmp)


def store(kind: str, key: str, source: str | Path) -> Path | None:
    """Keep a finished array under `key`; returns the entry, or None when the cache is off or unwritable.

    A cache is a convenience: any failure to write it (a read-only home, a full disk) is silent.
    """
    path = _entry(kind, key)
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
        _prune(path.parent)
    except Exception:  # noqa: BLE001 (see the docstring)
        return None
    return path


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)
