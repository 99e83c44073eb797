"""Image embeddings on a Ray cluster: Ray Data batch inference, same chunks as `encode_images`.

`encode_images_ray` fills the missing chunks of a `ChunkedArray` exactly as
`laic_core.data.encode.encode_images` does (same rows, same NaN rows for skipped
images, same chunk files and key), so a run started by one engine can be
finished by the other. The work is a Ray Data pipeline:

    row ids of the missing chunks, one block per batch
      -> decode + preprocess   (stateless Ray tasks on CPUs)
      -> encode                (a fixed pool of `workers` actors, each one model
                                replica loaded with `load_clip`; one GPU each
                                when the workers run on CUDA)
      -> the driver            (collects rows in any order; writes a chunk once
                                it is complete)

On GPUs decoding runs in CPU tasks beside the replicas, as many as the
cluster's CPUs allow. On CPUs, where both steps ask for the same resources,
Ray Data fuses them: each replica decodes its own batches, so decoding is
as parallel as the replicas are and pixels never cross the object store.

Workers that die are restarted by Ray and their batch is retried (Ray Data's
defaults for actor pools, max_restarts=-1 and max_task_retries=-1; Ray 2.60
deprecates setting them per call), so a lost worker costs time, not the run.
An interrupted driver leaves only complete chunks, and the next run (on
either engine) computes only the missing ones.

Ray is an optional dependency (`pip install -e ".[ray]"`); nothing here
imports it before it is needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from laic_core.artifacts import ChunkAssembler, ChunkedArray
from laic_core.data.encode import check_on_error, image_embedding_dim, preprocess_image, unreadable_message
from laic_core.data.images import FileSplit, ImageSplit
from laic_core.data.models import ClipBundle, load_clip
from laic_core.errors import LaicError
from laic_core.progress import progress_bar

INSTALL_HINT = 'pip install -e ".[ray]"'


def require_ray():
    """The `ray` module, or a LaicError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra, not only ray core)
    except ImportError as exc:
        raise LaicError(
            f"embed.engine: ray needs Ray Data, which is not installed ({exc}); "
            f"install it with {INSTALL_HINT}, or set embed.engine: local"
        ) from exc
    return ray


def is_local_address(address: str | None) -> bool:
    """'local', '' or None: start a Ray instance on this machine."""
    return address in (None, "", "local")


def local_cpus(workers: int) -> int:
    """CPUs a local instance declares: the machine's, and at least one beyond the replicas.

    Every model replica holds one CPU, so with fewer CPUs than replicas + 1 no
    decoding task could ever be scheduled.
    """
    return max(os.cpu_count() or 1, workers + 1)


@contextlib.contextmanager
def ray_session(address: str | None = "local", workers: int = 2) -> Iterator[None]:
    """Connect to Ray for the duration of the block (reuse a connection already open).

    address: 'local' or '' starts a private instance on this machine sized for
        `workers` replicas and shuts it down afterwards; 'auto' joins the
        cluster this machine belongs to (`ray start`); 'ray://head:10001' or
        'head:6379' connects to a remote one. The driver's own `laic_core`
        is shipped to the workers (`py_modules`), so cluster nodes need the
        project's dependencies (torch, open_clip) but not the project itself.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield
        return
    package = Path(__file__).resolve().parent
    options: dict[str, Any] = dict(
        runtime_env={"py_modules": [str(package)]},
        include_dashboard=False,
        logging_level=logging.WARNING,
    )
    if is_local_address(address):
        ray.init(num_cpus=local_cpus(workers), **options)
    else:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise LaicError(
                f"embed.ray_address: cannot connect to a Ray cluster at {address!r} ({exc}); "
                "start one with `ray start --head`, or use ray_address: local"
            ) from exc
    try:
        yield
    finally:
        ray.shutdown()


def worker_device(device: str = "auto") -> str:
    """The device the model replicas run on, given `model.device` (Ray must be connected).

    'auto' means CUDA when the cluster has GPUs, else the CPU (whatever the
    driver machine has: the driver does not encode).
    """
    ray = require_ray()
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if device == "auto":
        return "cuda" if gpus >= 1 else "cpu"
    if device == "cuda" and gpus < 1:
        raise LaicError(
            "model.device: 'cuda' was asked for but the Ray cluster has no GPU; use 'auto' or 'cpu'"
        )
    return device


def plan_blocks(rows: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Consecutive groups of at most `batch_size` row ids: one Ray block (and batch) each."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    rows = np.asarray(rows, dtype=np.int64)
    return [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]


def _block_table(split: ImageSplit, rows: np.ndarray):
    """A block's input: row ids, plus absolute file paths when the split is made of files.

    With paths in the block a decoding task needs nothing else; other splits
    (torchvision datasets) are shipped to the tasks whole.
    """
    import pandas as pd

    table = {"row": rows}
    if isinstance(split, FileSplit):
        table["path"] = [os.path.abspath(split.paths[i]) for i in rows]
    return pd.DataFrame(table)


def pixel_shape(preprocess) -> tuple[int, ...]:
    """The (C, H, W) shape `preprocess` gives every image."""
    from PIL import Image

    return tuple(preprocess(Image.new("RGB", (64, 64))).shape)


def decode_batch(batch: dict, *, preprocess, shape: tuple[int, ...], split: ImageSplit | None = None) -> dict:
    """Ray task: a block of row ids -> preprocessed pixels, and the error text of each failed image.

    Decoding is the single-process path's own (`encode.preprocess_image`), so an image
    reads the same and fails with the same reason on either engine.
    """
    rows = np.asarray(batch["row"], dtype=np.int64)
    if "path" in batch:  # a split of just this block's files, indexed from 0
        split, at = FileSplit("block", [str(p) for p in batch["path"]], None, None), range(len(rows))
    else:
        at = rows.tolist()
    pixels = np.zeros((len(rows),) + tuple(shape), np.float32)
    errors = []
    for j, i in enumerate(at):
        x, err = preprocess_image(split, i, preprocess)
        if not err:
            pixels[j] = x.numpy()
        errors.append(err)
    return {"row": rows, "pixels": pixels, "error": np.asarray(errors, dtype=object)}


class ImageEncoder:
    """Ray actor: one model replica; a batch of pixels -> L2-normalised float32 embeddings.

    Rows whose image failed to decode get NaN, as in `encode_images`.
    """

    def __init__(self, name: str, pretrained: str, device: str):
        self.bundle = load_clip(name, pretrained, device)
        self.dim = image_embedding_dim(self.bundle)

    def __call__(self, batch: dict) -> dict:
        errors = np.asarray(batch["error"], dtype=object)
        ok = np.array([not e for e in errors], dtype=bool)
        feats = np.full((len(errors), self.dim), np.nan, dtype=np.float32)
        if ok.any():
            x = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
            x = x.to(self.bundle.device, dtype=self.bundle.dtype)
            with torch.inference_mode():
                f = F.normalize(self.bundle.model.encode_image(x).float(), dim=-1)
            feats[ok] = f.cpu().numpy()
        return {"row": np.asarray(batch["row"], dtype=np.int64), "feature": feats, "error": errors}


def _laic_error_inside(exc: BaseException) -> str | None:
    """The message of a LaicError raised on a worker, from the exceptions Ray wraps it in.

    Task errors keep the original as a cause; an actor that failed in its
    constructor (say, weights missing on that node) only keeps its traceback
    as text, so the message is read from there.
    """
    seen = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, LaicError):
            return str(node)
        node = getattr(node, "cause", None) or node.__cause__ or node.__context__
        node = node if isinstance(node, BaseException) else None
    found = re.findall(r"LaicError: (.+)", str(exc))
    return found[-1].strip() if found else None


@contextlib.contextmanager
def _quiet_ray_data():
    """Ray Data's own progress bars off while ours runs (restored afterwards)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = ctx.enable_progress_bars
    ctx.enable_progress_bars = False
    try:
        yield
    finally:
        ctx.enable_progress_bars = saved


def encode_images_ray(
    bundle: ClipBundle,
    split: ImageSplit,
    out: ChunkedArray,
    *,
    batch_size: int = 256,
    on_error: str = "fail",
    workers: int = 2,
    address: str | None = "local",
    device: str = "auto",
    desc: str = "embed",
    encoder_cls: type = ImageEncoder,
    timings: dict | None = None,
) -> list[tuple[int, str]]:
    """Encode every image of `split` into the missing chunks of `out`, on Ray.

    Same contract as `encode_images`: rows are L2-normalised float32 CLIP
    image embeddings in split order; only missing chunks are computed; with
    `on_error="skip"` an undecodable image gets a NaN row and is returned in
    the `(index, reason)` list, with `"fail"` it raises a LaicError naming
    the file.

    bundle: the driver's copy of the model; its preprocessing runs in the
        decoding tasks, and each of the `workers` replicas loads
        `load_clip(bundle.name, bundle.pretrained, device)` (so paths in
        them must exist on every node, as must the images).
    address: where Ray runs (see `ray_session`); a connection already open
        is used as it is.
    device: `model.device` for the replicas (see `worker_device`).
    encoder_cls: the actor class (tests substitute one that dies).
    timings: if given, filled with `seconds` (the whole pipeline, replicas'
        start-up included), `first_batch_s` (until the first batch came
        back) and `images`.
    """
    check_on_error(on_error)
    if workers < 1:
        raise LaicError(f"embed.ray_workers: {workers!r} must be an integer >= 1")
    rows = out.missing_rows()
    failures: list[tuple[int, str]] = []
    if not rows:
        return failures
    with ray_session(address, workers), _quiet_ray_data():
        ray = require_ray()
        dev = worker_device(device)
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if dev == "cuda" and workers > gpus:
            print(f"{desc}: {workers} replicas asked for, the cluster has {gpus:g} GPU(s); "
                  "the others wait for a GPU to appear", file=sys.stderr)
        files = isinstance(split, FileSplit)
        blocks = [_block_table(split, b) for b in plan_blocks(rows, batch_size)]
        ds = ray.data.from_pandas(blocks)
        ds = ds.map_batches(
            decode_batch,
            batch_size=None,  # a block is one batch already
            batch_format="numpy",
            fn_kwargs={"preprocess": bundle.preprocess, "shape": pixel_shape(bundle.preprocess),
                       "split": None if files else split},
        )
        resources = {"num_gpus": 1} if dev == "cuda" else {}
        ds = ds.map_batches(
            encoder_cls,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"name": bundle.name, "pretrained": bundle.pretrained, "device": dev},
            **resources,
        )
        assembler = ChunkAssembler(out)
        unreadable: list[tuple[int, str]] = []  # on_error="fail": every one, named in one error
        started = time.perf_counter()
        first = None
        batches = ds.iter_batches(batch_size=None, batch_format="numpy")
        try:
            with progress_bar(len(rows), desc, unit="img") as bar:
                for batch in batches:
                    if first is None:
                        first = time.perf_counter() - started
                    idx = np.asarray(batch["row"], dtype=np.int64)
                    for i, err in zip(idx.tolist(), batch["error"]):
                        if not err:
                            continue
                        if on_error == "fail":
                            unreadable.append((i, str(err)))
                        else:
                            failures.append((i, str(err)))
                            bar.write(f"skipped {split.source(i)}: {err}")
                    if not unreadable:  # the run will fail: write no more chunks, only look for bad files
                        assembler.add(idx, batch["feature"])
                    bar.update(len(idx))
        except LaicError:
            raise
        except Exception as exc:  # Ray wraps worker errors; show ours as they are
            inner = _laic_error_inside(exc)
            if inner is not None:
                raise LaicError(f"{inner} (on a Ray worker)") from exc
            raise
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the pipeline when the driver leaves early
        if unreadable:
            raise LaicError(unreadable_message(split, sorted(unreadable), "set embed.on_error: skip"))
        lost = out.missing()
        if lost:  # cannot happen unless Ray dropped rows without an error
            raise RuntimeError(f"Ray returned no rows for chunk(s) {lost[:10]} of {out.dir}")
        seconds = time.perf_counter() - started
    if timings is not None:
        timings.update(seconds=seconds, first_batch_s=first, images=len(rows))
    print(f"{desc}: encoded {len(rows)} images in {seconds:.1f}s "
          f"({len(rows) / max(seconds, 1e-9):.1f} img/s, the replicas' start-up included: "
          f"first batch after {first:.1f}s) on Ray, {workers} replica(s) on {dev}",
          file=sys.stderr)
    return failures
