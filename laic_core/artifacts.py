"""Atomic artifact writes and resumable chunked arrays.

Every artifact is written under a temporary name in its final folder and
renamed into place, so an interrupted run never leaves a file that looks
complete. Long computations write fixed-size chunks into a `.partial`
folder beside the final file; a rerun with the same fingerprint reuses the
finished chunks and computes only the missing ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from laic_core.errors import NO_SPACE_ERRNOS, LaicError

_UMASK = os.umask(0)
os.umask(_UMASK)


def size_text(n_bytes: float) -> str:
    """A size for messages: '512 bytes', '3.5 MiB', '1.2 GiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n_bytes < 1024:
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


def free_bytes(folder: str | Path) -> int:
    """Bytes free for this user on the file system holding `folder` (or its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def ensure_free_space(folder: str | Path, needed_bytes: int, what: str) -> None:
    """Stop before a long computation whose outputs cannot fit (a check at the start, not a guarantee)."""
    free = free_bytes(folder)
    if needed_bytes > free:
        raise LaicError(f"{folder}: {what} needs about {size_text(needed_bytes)}, but only {size_text(free)} are free "
                        "there; free space, then rerun")


def _out_of_space(exc: OSError, folder: Path, size: int | None) -> bool:
    """Whether a write failed for want of space: ENOSPC or a quota, or numpy's short write
    ("2048 requested and 992 written", without an errno) with less free than the write needed."""
    if exc.errno in NO_SPACE_ERRNOS:
        return True
    return exc.errno is None and free_bytes(folder) < (size if size is not None else 2**20)


@contextlib.contextmanager
def atomic_path(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    On any exception (Ctrl-C included) the temporary file is removed and
    `path` is left untouched. A full disk is one LaicError naming the file
    and the space it needed: `size` bytes when the caller knows it, else
    more than what was written when the disk filled.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if not _out_of_space(exc, path.parent, size):
            raise
        # One line: the file, the space it needed, what is free, and what to do.
        needed = size_text(size) if size is not None else f"more than the {size_text(tmp.stat().st_size)} written"
        raise LaicError(f"no space left on the device while writing {path} (it needs {needed}; "
                        f"{size_text(free_bytes(path.parent))} free there): free space and rerun to resume") from exc
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """`atomic_path` for files that belong together: each is renamed into place only once every
    one of them has been written, so a failure leaves all the earlier ones, never a mix."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]


def save_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_torch(path: str | Path, obj: Any) -> None:
    """torch.save `obj` so that the same content always gives the same bytes.

    torch.save to a path names the zip's root folder after the file, and
    `atomic_path` writes to a random temporary name, so every run produced
    new bytes (a changed dvc.lock, needless reruns downstream). Saved into a
    buffer, the root folder is always "archive".
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    save_bytes(path, buffer.getvalue())


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path, size=np.asarray(array).nbytes) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))


def save_csv(path: str | Path, table: pd.DataFrame) -> None:
    """Write a DataFrame as CSV (no index), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


# ------------------------------------------------------------------ reading, and damaged files

# Artifact path -> the stage that writes it. The stages fill it (stages/inputs.py, from
# stages/layout.py); the library knows no stage, so a path it lacks gets the generic fix.
_PRODUCERS: dict[str, str] = {}


def register_producers(producers: dict[str | Path, str]) -> None:
    """Say which stage writes which artifact (or folder of artifacts), for the fix a damaged file names."""
    _PRODUCERS.update({Path(path).as_posix(): stage for path, stage in producers.items()})


def producer(path: str | Path) -> str | None:
    """The stage that writes `path` (or the folder it lies in), when registered."""
    path = Path(path)
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            return None
    for candidate in (path, *path.parents):
        if candidate.as_posix() in _PRODUCERS:
            return _PRODUCERS[candidate.as_posix()]
    return None


def rerun_hint(path: str | Path) -> str:
    stage = producer(path)
    return f"`dvc repro -f {stage}`" if stage else "`dvc repro -f <the stage that writes it>`"


def damaged(path: str | Path, exc: BaseException) -> LaicError:
    """The one line for an artifact that exists but cannot be read (truncated, overwritten, a damaged DVC
    cache object): the file, what the reader said, and the stage to rerun."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = reason.split(". ")[0].rstrip(".")  # the libraries' first sentence says it; the rest is advice
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return LaicError(f"{path}: damaged or incomplete ({reason}); rerun the stage that writes it: "
                     f"{rerun_hint(path)}")


def _read(path: str | Path, reader, errors: tuple[type[BaseException], ...] = ()):
    """reader(path) for an artifact: missing -> "run the stage"; unreadable -> `damaged`."""
    import pickle
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise LaicError(f"{path}: missing; run the stage that produces it (`dvc repro`)")
    try:
        return reader(path)
    except PermissionError:
        raise
    except (OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile, pa.ArrowException,
            UnicodeDecodeError, *errors) as exc:
        raise damaged(path, exc) from exc


def load_npy(path: str | Path, *, mmap: bool = False) -> np.ndarray:
    """The array saved by `save_npy`; a damaged file is one LaicError naming the stage to rerun."""
    def read(p: Path) -> np.ndarray:
        array = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        if not isinstance(array, np.ndarray):
            raise ValueError("not a single .npy array")
        return array

    return _read(path, read)


def load_torch(path: str | Path) -> Any:
    """What `save_torch` saved (tensors and plain data only: weights_only)."""
    import torch

    return _read(path, lambda p: torch.load(p, map_location="cpu", weights_only=True), (RuntimeError,))


def load_csv(path: str | Path) -> pd.DataFrame:
    """A CSV artifact (written by `save_csv`)."""
    return _read(path, pd.read_csv, (pd.errors.ParserError, pd.errors.EmptyDataError))


def save_parquet(path: str | Path, table: pd.DataFrame, meta: dict[str, Any] | None = None) -> None:
    """Write a DataFrame as Parquet; `meta` is stored as JSON in the schema metadata."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    if meta:
        merged = dict(arrow.schema.metadata or {})
        merged[b"laic"] = json.dumps(meta, sort_keys=True).encode()
        arrow = arrow.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)


def load_parquet(path: str | Path) -> pd.DataFrame:
    return _read(path, pd.read_parquet)


def load_parquet_meta(path: str | Path) -> dict[str, Any]:
    """The `meta` dict stored by `save_parquet` ({} when none)."""
    def read(p: Path) -> dict[str, Any]:
        raw = (pq.read_schema(p).metadata or {}).get(b"laic")
        return json.loads(raw) if raw else {}

    return _read(path, read)


def save_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def load_json(path: str | Path) -> Any:
    return _read(path, lambda p: json.loads(p.read_text(encoding="utf-8")))


def fingerprint(obj: Any) -> str:
    """A stable short hash of a JSON-serialisable description of some work."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class ChunkedArray:
    """A (n_rows, dim) array computed chunk by chunk, resumable across runs.

    Chunks live in `<final>.partial/` as `chunk_<i>.npy`, each holding rows
    `[i * chunk_size, (i + 1) * chunk_size)`. `key` fingerprints everything
    the rows depend on (model, data, preprocessing); chunks written under a
    different key are discarded rather than mixed in.
    """

    def __init__(self, final_path: str | Path, n_rows: int, chunk_size: int, key: str):
        if n_rows < 0 or chunk_size < 1:
            raise ValueError("n_rows must be >= 0 and chunk_size >= 1")
        self.final_path = Path(final_path)
        self.n_rows = n_rows
        self.chunk_size = chunk_size
        self.key = key
        self.dir = self.final_path.with_name(self.final_path.name + ".partial")
        self._prepare()

    @property
    def n_chunks(self) -> int:
        return -(-self.n_rows // self.chunk_size)

    def chunk_rows(self, i: int) -> range:
        return range(i * self.chunk_size, min((i + 1) * self.chunk_size, self.n_rows))

    def _chunk_path(self, i: int) -> Path:
        return self.dir / f"chunk_{i:06d}.npy"

    def _prepare(self) -> None:
        stamp = self.dir / "KEY"
        expected = f"{self.key} {self.n_rows} {self.chunk_size}"
        if self.dir.exists() and (not stamp.is_file() or stamp.read_text() != expected):
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(expected)

    def done(self) -> list[int]:
        return [i for i in range(self.n_chunks) if self._chunk_path(i).is_file()]

    def missing(self) -> list[int]:
        return [i for i in range(self.n_chunks) if not self._chunk_path(i).is_file()]

    def missing_rows(self) -> list[int]:
        """Row ids of the chunks not yet on disk, in order: what a resumed run still has to compute."""
        return [i for c in self.missing() for i in self.chunk_rows(c)]

    def write_chunk(self, i: int, rows: np.ndarray) -> None:
        expected = len(self.chunk_rows(i))
        if rows.shape[0] != expected:
            raise ValueError(f"chunk {i} needs {expected} rows, got {rows.shape[0]}")
        save_npy(self._chunk_path(i), rows)

    def read_chunk(self, i: int) -> np.ndarray:
        return np.load(self._chunk_path(i))

    def finite_rows(self) -> np.ndarray:
        """(n_rows,) bool: rows that hold numbers (a NaN row marks an input that failed)."""
        return np.concatenate(
            [np.isfinite(self.read_chunk(i)).all(axis=1) for i in range(self.n_chunks)]
            or [np.zeros(0, bool)]
        )

    def finalize(self, dtype: np.dtype | str = np.float32, keep: np.ndarray | None = None) -> np.ndarray:
        """Concatenate all chunks into the final .npy (atomically); drop the chunks.

        `keep` ((n_rows,) bool) selects the rows to keep. Streams chunk by
        chunk into an .npy memmap so peak memory is one chunk, whatever the
        total size.
        """
        missing = self.missing()
        if missing:
            raise RuntimeError(f"{len(missing)} chunk(s) still missing, first {missing[0]}")
        if keep is None:
            keep = np.ones(self.n_rows, bool)
        if self.n_chunks == 0:
            raise ValueError("nothing to finalize: the array has no rows")
        width = self.read_chunk(0).shape[1:]
        size = int(keep.sum()) * int(np.prod(width)) * np.dtype(dtype).itemsize
        with atomic_path(self.final_path, size=size) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(int(keep.sum()),) + width)
            at = 0
            for i in range(self.n_chunks):
                rows = self.chunk_rows(i)
                block = self.read_chunk(i)[keep[rows.start:rows.stop]]
                out[at:at + len(block)] = block
                at += len(block)
            out.flush()
            del out
        shutil.rmtree(self.dir, ignore_errors=True)
        return np.load(self.final_path, mmap_mode="r")


class ChunkAssembler:
    """Collects rows of `out` arriving in any order; writes each chunk once all its rows are in.

    Only chunks that are complete reach the disk, so an interruption never
    leaves a partial chunk behind. A row that arrives twice (a retried
    worker's output) overwrites itself; rows of chunks already on disk are
    ignored. Memory holds only the chunks still being filled.
    """

    def __init__(self, out: ChunkedArray):
        self.out = out
        self._rows: dict[int, np.ndarray] = {}  # chunk id -> its rows so far
        self._have: dict[int, np.ndarray] = {}  # chunk id -> which of them have arrived
        self._written: set[int] = set(out.done())

    @property
    def pending(self) -> list[int]:
        """Chunks that have some rows but not all."""
        return sorted(self._rows)

    def add(self, rows, values: np.ndarray) -> list[int]:
        """Put `values[j]` at row `rows[j]`; returns the chunks this completed (and wrote)."""
        rows = np.asarray(rows, dtype=np.int64)
        values = np.asarray(values)
        if len(rows) != len(values):
            raise ValueError(f"{len(rows)} row ids for {len(values)} rows")
        size = self.out.chunk_size
        owner = rows // size
        written = []
        for c in np.unique(owner).tolist():
            if c in self._written:
                continue
            if c not in self._rows:
                n = len(self.out.chunk_rows(c))
                self._rows[c] = np.empty((n,) + values.shape[1:], values.dtype)
                self._have[c] = np.zeros(n, bool)
            at = rows[owner == c] - c * size
            self._rows[c][at] = values[owner == c]
            self._have[c][at] = True
            if self._have[c].all():
                self.out.write_chunk(c, self._rows.pop(c))
                del self._have[c]
                self._written.add(c)
                written.append(c)
        return written


def save_matrix(path: str | Path, matrix: Any) -> None:
    """Save a dense ndarray or a scipy.sparse matrix as .npz (atomically)."""
    import scipy.sparse as sp

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            if sp.issparse(matrix):
                sp.save_npz(fh, sp.csr_matrix(matrix), compressed=False)
            else:
                np.savez(fh, dense=np.ascontiguousarray(matrix))


def load_matrix(path: str | Path) -> Any:
    """The dense ndarray or scipy.sparse CSR matrix saved by `save_matrix`."""
    import scipy.sparse as sp

    def read(p: Path) -> Any:
        with np.load(p, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("not an .npz archive")
            if "dense" in data.files:
                return data["dense"]
        return sp.load_npz(p).tocsr()

    return _read(path, read)
