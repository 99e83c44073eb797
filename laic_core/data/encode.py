"""Encode images with a CLIP model: batched, resumable, every unreadable file named."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from laic_core.artifacts import ChunkAssembler, ChunkedArray
from laic_core.data.images import ImageSplit, to_rgb
from laic_core.data.models import ClipBundle
from laic_core.errors import MAX_LISTED, LaicError, printable
from laic_core.progress import progress_bar


def preprocess_image(split: ImageSplit, i: int, preprocess: Callable) -> tuple[torch.Tensor | None, str]:
    """Image i of `split`, decoded and preprocessed, and "" -- or None and why it failed."""
    try:
        return preprocess(to_rgb(split.load_image(i))), ""
    except Exception as exc:  # any decoder failure is reported per file
        return None, printable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class _Images(Dataset):
    """Preprocessed images of `split` at `indices`; a failed decode yields its error text."""

    def __init__(self, split: ImageSplit, indices: Sequence[int], preprocess: Callable):
        self.split = split
        self.indices = list(indices)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        i = self.indices[j]
        x, err = preprocess_image(self.split, i, self.preprocess)
        return x, i, err


def _collate(items):
    good = [x for x, _, err in items if not err]
    batch = torch.stack(good) if good else None
    return batch, [i for _, i, _ in items], [err for _, _, err in items]


def check_on_error(on_error: str, key: str = "embed.on_error") -> None:
    """What to do with an unreadable image: 'fail' (one error naming every such file) or 'skip'."""
    if on_error not in ("fail", "skip"):
        raise LaicError(f"{key}: {on_error!r} must be 'fail' or 'skip'")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def resolve_num_workers(value: int | str) -> int:
    """embed.num_workers -> DataLoader processes; "auto" = min(4, usable CPUs - 1).

    One CPU stays with the main process, which runs the model; the cap stays
    below the DataLoader's own suggested maximum (the usable CPUs), so "auto"
    never makes it warn.
    """
    if value == "auto":
        return max(0, min(4, usable_cpus() - 1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LaicError(f"embed.num_workers: {value!r} must be 'auto' or an integer >= 0")
    return value


def encode_images(
    bundle: ClipBundle,
    split: ImageSplit,
    out: ChunkedArray,
    *,
    batch_size: int = 256,
    num_workers: int | str = "auto",
    on_error: str = "fail",
    desc: str = "embed",
    skip_hint: str = "set embed.on_error: skip",
) -> list[tuple[int, str]]:
    """Encode every image of `split` into the missing chunks of `out`.

    Rows are L2-normalised float32 CLIP image embeddings, in split order.
    Only chunks not already on disk are computed, so an interrupted run
    resumes where it stopped. With `on_error="skip"` an image that fails to
    decode gets a NaN row (dropped when the array is finalised) and is
    returned in the list of `(index, reason)`; with `"fail"` the run stops
    encoding at the first such image, decodes the rest, and raises one
    LaicError naming every unreadable file and the fix (`skip_hint`: how the
    caller's user turns skipping on). `num_workers`: an int or "auto".
    """
    check_on_error(on_error)
    num_workers = resolve_num_workers(num_workers)
    indices = out.missing_rows()
    failures: list[tuple[int, str]] = []
    if not indices:
        return failures
    loader = DataLoader(
        _Images(split, indices, bundle.preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=bundle.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=worker_ignores_interrupts if num_workers > 0 else None,
    )
    model = bundle.model
    dim = image_embedding_dim(bundle)
    assembler = ChunkAssembler(out)
    started = time.perf_counter()
    unreadable: list[tuple[int, str]] = []  # on_error="fail": every one, named in one error
    with progress_bar(len(indices), desc, unit="img") as bar, torch.inference_mode():
        for batch, idx, errors in loader:
            feats = np.full((len(idx), dim), np.nan, dtype=np.float32)
            ok = np.array([not e for e in errors])
            if not ok.all():
                for i, err in zip(idx, errors):
                    if not err:
                        continue
                    if on_error == "fail":
                        if not unreadable:
                            bar.write(f"cannot read {split.source(i)}; checking the remaining images "
                                      "for more unreadable files before stopping")
                            bar.set_description(f"{desc} (checking files)")
                        unreadable.append((i, err))
                    else:
                        failures.append((i, err))
                        bar.write(f"skipped {split.source(i)}: {err}")
            if unreadable:
                # The run will fail: decode the rest only, so that one error names
                # every unreadable file instead of one per fix-and-rerun.
                bar.update(len(idx))
                continue
            if batch is not None:
                x = batch.to(bundle.device, dtype=bundle.dtype, non_blocking=True)
                f = F.normalize(model.encode_image(x).float(), dim=-1)
                feats[ok] = f.cpu().numpy()
            assembler.add(idx, feats)
            bar.update(len(idx))
    if unreadable:
        raise LaicError(unreadable_message(split, unreadable, skip_hint))
    seconds = time.perf_counter() - started
    encoded = len(indices) - len(failures)
    skipped = f", skipped {len(failures)} unreadable" if failures else ""
    print(f"{desc}: encoded {encoded} images{skipped} in {seconds:.1f}s "
          f"({encoded / max(seconds, 1e-9):.1f} img/s)", file=sys.stderr)
    return failures


def worker_ignores_interrupts(worker_id: int) -> None:
    """Ctrl-C reaches the whole process group: the stage unwinds and stops its workers itself. A worker
    that took the signal as well printed a traceback of its own (from its fd-sharing thread) beside the
    stage's one line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def unreadable_message(split: ImageSplit, unreadable: list[tuple[int, str]], skip_hint: str,
                       limit: int = MAX_LISTED) -> str:
    """One error for every unreadable image: the first `limit` with their reasons, then a count."""
    lines = [f"  {split.source(i)}: {err}" for i, err in unreadable[:limit]]
    if len(unreadable) > limit:
        lines.append(f"  ... and {len(unreadable) - limit} more")
    return (f"cannot read {len(unreadable)} image(s) of {split.name} (all of its images were checked):\n"
            + "\n".join(lines)
            + f"\nFix or remove these files, or {skip_hint} to record and skip unreadable images.")


def image_embedding_dim(bundle: ClipBundle) -> int:
    """The model's image-embedding width (read off the tower, else one dummy forward)."""
    visual = bundle.model.visual
    dim = getattr(visual, "output_dim", None)
    if dim is None:
        size = getattr(visual, "image_size", 224)
        size = size if isinstance(size, (tuple, list)) else (size, size)
        with torch.inference_mode():
            x = torch.zeros(1, 3, *size, device=bundle.device, dtype=bundle.dtype)
            dim = bundle.model.encode_image(x).shape[-1]
    return int(dim)
