"""UCF-101 as an image benchmark: the middle frame of each video, as TAC uses it.

Two layouts of a local root are read (UCF-101 cannot be downloaded here):

(a) extracted frames, TAC's layout: `<root>/{train,test}/<ClassName>/*.jpg`
    (TAC names the eval folder `val`; `test` and `val` are both accepted);
(b) the official release: `<root>/UCF-101/<ClassName>/v_<ClassName>_gXX_cYY.avi`
    with `<root>/ucfTrainTestlist/{classInd.txt,trainlist01.txt,testlist01.txt}`
    (split 1, the standard one). The middle frame of every listed video
    (index n_frames // 2) is extracted once with PyAV into
    `<root>/middle_frames/{train,test}/<ClassName>/<video stem>.jpg`, which is
    layout (a) again; later runs find the frames there and decode nothing.

A video that cannot be decoded keeps its place in the split: loading its
image raises, so `embed` names it with every other unreadable image (or
skips it with `embed.on_error: skip`), and a note lists it meanwhile.
"""

from __future__ import annotations

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image

from laic_core.artifacts import atomic_path
from laic_core.data.images import FileSplit, tree_images
from laic_core.errors import LaicError, name_some

NAME = "ucf101"
NUM_CLASSES = 101
SPLITS = ("train", "test", "val")  # val: TAC's name for the test split
VIDEOS = "UCF-101"
LISTS = "ucfTrainTestlist"
FRAMES = "middle_frames"
JPEG_QUALITY = 95

DOWNLOAD_HINT = (
    "UCF-101 is not downloaded automatically: get UCF101.rar and "
    "UCF101TrainTestSplits-RecognitionTask.zip from https://www.crcv.ucf.edu/data/UCF101.php and "
    "unpack both into dataset.root, so that it holds UCF-101/<ClassName>/*.avi and "
    "ucfTrainTestlist/{classInd.txt,trainlist01.txt,testlist01.txt} (the middle frames are then "
    "extracted once, which needs `pip install av`); or put already-extracted frames there as "
    "<root>/{train,test}/<ClassName>/*.jpg (TAC's layout; test may be named val)"
)


def readable_class_name(folder: str) -> str:
    """A UCF-101 class folder as words: 'ApplyEyeMakeup' or 'Apply_Eye_Makeup' -> 'apply eye makeup'."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", folder.replace("_", " "))
    return " ".join(spaced.split()).lower()


class FrameSplit(FileSplit):
    """Middle frames of videos: a FileSplit whose undecodable videos fail when loaded.

    `failed` maps an index to why its video gave no frame; the frame file
    does not exist, and `load_image` says which video it should have come from.
    """

    def __init__(self, name: str, paths: list[Path], labels: np.ndarray, class_names: list[str],
                 notes: list[str], failed: dict[int, str]):
        super().__init__(name, paths, labels, class_names, notes)
        self.failed = dict(failed)

    def load_image(self, i: int) -> Image.Image:
        if i in self.failed:
            raise OSError(self.failed[i])
        return super().load_image(i)


# ------------------------------------------------------------------ entry point


def ucf101_split(root: Path, split: str) -> FileSplit:
    """Split `split` ('train', 'test' or 'val' = 'test') of UCF-101 under `root`, either layout."""
    root = Path(root)
    if split not in SPLITS:
        raise LaicError(
            f"dataset split {split!r} does not exist for {NAME}; choose train or test (val is read as "
            "test, TAC's name for it) (dataset.fit_split / dataset.eval_split)"
        )
    if not root.is_dir():
        raise LaicError(f"dataset.root: {root} does not exist. {DOWNLOAD_HINT}")
    if (root / VIDEOS).is_dir():
        return _release_split(root, split)
    if any((root / s).is_dir() for s in SPLITS):
        return _frames_split(root, split)
    hint = ""
    try:
        videos_here = any(p.suffix.lower() == ".avi" for d in _subdirs(root)[:3] for p in d.iterdir())
    except OSError:  # only a hint: an unreadable folder must not hide the real message
        videos_here = False
    if videos_here:
        hint = (f" ({root} holds class folders of videos: point dataset.root at the folder that "
                f"holds {root.name}/ and {LISTS}/, with the videos folder named {VIDEOS})")
    raise LaicError(f"dataset.root: {root} holds neither UCF-101 layout{hint}. {DOWNLOAD_HINT}")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


# ------------------------------------------------------------------ (a) extracted frames


def _frames_folder(root: Path, split: str) -> tuple[Path, list[str]]:
    """The folder holding `split`'s frames and a note when it is the other eval name."""
    if split == "train":
        if not (root / "train").is_dir():
            raise LaicError(f"{root / 'train'}: missing; {NAME} needs <root>/train/<ClassName>/*.jpg")
        return root / "train", []
    other = "val" if split == "test" else "test"
    if (root / split).is_dir():
        return root / split, []
    if (root / other).is_dir():
        return root / other, [f"{NAME}: read {root / other} as the {split} split "
                              "(TAC names UCF-101's test split val)"]
    raise LaicError(f"{root}: neither test/ nor val/ exists; {NAME} needs the eval frames in "
                    "<root>/test/<ClassName>/*.jpg (or <root>/val/...)")


def _class_index_file(root: Path) -> Path | None:
    for candidate in (root / "classInd.txt", root / LISTS / "classInd.txt",
                      root.parent / LISTS / "classInd.txt"):
        if candidate.is_file():
            return candidate
    return None


def _frames_split(root: Path, split: str) -> FileSplit:
    """Layout (a). Class ids: classInd.txt's order when one is found, else sorted folder names.

    Without classInd.txt the classes are the union of the class folders of
    every split folder present, so a class missing from one split does not
    shift the ids of the others.
    """
    folder, notes = _frames_folder(root, split)
    index_file = _class_index_file(root)
    if index_file is not None:
        classes = read_class_index(index_file)
    else:
        classes = sorted({d.name for s in SPLITS if (root / s).is_dir() for d in _subdirs(root / s)})
    index = {c: i for i, c in enumerate(classes)}
    unknown = [d.name for d in _subdirs(folder) if d.name not in index]
    if unknown:
        raise LaicError(f"{folder}: class folder(s) not in {index_file}: {name_some(unknown)}; "
                        f"rename them to the names {index_file.name} lists or remove them")
    paths, ignored, tree_notes = tree_images(folder)
    notes += tree_notes
    if not paths:
        raise LaicError(f"{folder}: no images found{f' (ignored {ignored} other file(s))' if ignored else ''}; "
                        f"{NAME} needs {folder}/<ClassName>/*.jpg")
    rel = [p.relative_to(folder) for p in paths]
    labels = np.asarray([index[r.parts[0]] if len(r.parts) >= 2 else -1 for r in rel], np.int64)
    stray = [p for p, r in zip(paths, rel) if len(r.parts) < 2]
    if stray:
        notes.append(f"{len(stray)} image(s) lie directly in {folder}, not in a class folder: clustered "
                     f"with no class (label -1), left out of the metrics: {name_some(stray)}")
    notes += _class_count_note(classes)
    return FileSplit(f"{NAME}:{split}", paths, labels, [readable_class_name(c) for c in classes], notes)


def _class_count_note(classes: list[str]) -> list[str]:
    if len(classes) == NUM_CLASSES:
        return []
    return [f"{NAME}: {len(classes)} classes found where UCF-101 has {NUM_CLASSES}; "
            f"set dataset.num_clusters to match"]


# ------------------------------------------------------------------ (b) the official release


def read_class_index(path: Path) -> list[str]:
    """classInd.txt ('1 ApplyEyeMakeup' per line) -> class folder names in id order."""
    entries: dict[int, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise LaicError(f"{path}:{n}: expected '<id> <ClassName>', got {line.strip()!r}")
        entries[int(parts[0])] = parts[1]
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise LaicError(f"{path}: class ids must run 1..{len(entries)} without gaps")
    return [entries[i] for i in sorted(entries)]


def read_split_list(path: Path, classes: list[str]) -> list[tuple[str, int]]:
    """trainlist01.txt / testlist01.txt -> [(video path relative to UCF-101/, class id)].

    The class is the line's folder, not the file name: UCF-101 keeps videos
    named v_HandStandPushups_... in the folder HandstandPushups. A trailing
    label column (trainlist) is ignored for that reason too.
    """
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        rel = line.split()[0].replace("\\", "/")
        folder = rel.split("/")[0] if "/" in rel else ""
        if folder not in index:
            raise LaicError(f"{path}:{n}: {rel!r} is not in a class folder listed in classInd.txt; "
                            "use the lists of the same UCF-101 release")
        out.setdefault(rel, index[folder])
    return list(out.items())


def _release_split(root: Path, split: str) -> FrameSplit:
    """Layout (b): split 1's list -> middle frames (extracted where missing) -> the split."""
    lists = root / LISTS
    list_name = "trainlist01.txt" if split == "train" else "testlist01.txt"
    needed = [lists / "classInd.txt", lists / list_name]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise LaicError(f"{root / VIDEOS} holds the videos but {', '.join(missing)} is missing: unpack "
                        f"UCF101TrainTestSplits-RecognitionTask.zip into {root} (it gives {LISTS}/), "
                        "from https://www.crcv.ucf.edu/data/UCF101.php")
    classes = read_class_index(needed[0])
    videos = read_split_list(needed[1], classes)
    folder = "train" if split == "train" else "test"
    notes = [] if split != "val" else [f"{NAME}: split val read as UCF-101's test split ({list_name})"]
    frames_dir = root / FRAMES / folder
    entries = sorted(
        ((frames_dir / Path(rel).parent / (Path(rel).stem + ".jpg"), root / VIDEOS / rel, label)
         for rel, label in videos),
        key=lambda e: e[0],
    )
    if not any(video.is_file() for _, video, _ in entries):
        raise LaicError(f"{root / VIDEOS}: none of the {len(entries)} videos listed in {needed[1]} is there; "
                        f"unpack UCF101.rar into {root} (it gives {VIDEOS}/<ClassName>/*.avi)")
    failures = extract_middle_frames([(video, frame) for frame, video, _ in entries], frames_dir,
                                     desc=f"{NAME} {folder}")
    paths = [frame for frame, _, _ in entries]
    position = {frame: i for i, frame in enumerate(paths)}
    failed = {position[frame]: reason for frame, reason in failures.items()}
    if failed:
        notes.append(
            f"{len(failed)} video(s) gave no middle frame; embed reports them as unreadable images "
            f"(embed.on_error: skip leaves them out): "
            + name_some([failures[paths[i]] for i in sorted(failed)])
        )
    notes += _class_count_note(classes)
    return FrameSplit(f"{NAME}:{split}", paths, np.asarray([e[2] for e in entries], np.int64),
                      [readable_class_name(c) for c in classes], notes, failed)


# ------------------------------------------------------------------ frame extraction


def middle_frame(video: Path) -> Image.Image:
    """Frame n_frames // 2 of `video` (0-based), as an RGB image.

    n_frames is the number of frames that actually decode. The container's
    own count (AVI headers carry one) picks the frame in the same pass that
    counts them; only when it is missing or wrong is the video decoded again.
    """
    import av

    with av.open(str(video)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        guess = stream.frames // 2 if stream.frames > 0 else -1
        picked, n = None, 0
        for frame in container.decode(stream):
            if n == guess:
                picked = frame.to_image()
            n += 1
    if n == 0:
        raise ValueError("no frame decodes")
    if picked is not None and guess == n // 2:
        return picked.convert("RGB")
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i == n // 2:
                return frame.to_image().convert("RGB")
    raise ValueError(f"frame {n // 2} of {n} did not decode a second time")


def _extract_one(video: Path, frame: Path) -> None:
    image = middle_frame(video)
    with atomic_path(frame) as tmp:  # a frame on disk is always whole: resuming trusts it
        image.save(tmp, format="JPEG", quality=JPEG_QUALITY)


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # what containers and taskset allow
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    # PyAV decodes without the GIL, so threads use the cores; a few suffice.
    return max(1, min(4, cpus))


def extract_middle_frames(jobs: list[tuple[Path, Path]], out_dir: Path, desc: str = "middle frames",
                          workers: int | None = None) -> dict[Path, str]:
    """Write the middle frame of each (video, frame path under out_dir) whose frame is not there yet.

    JPEG quality 95, written atomically, so an interrupted run resumes by
    skipping the frames already written. Returns {frame path: reason} for
    every video that gave no frame (missing, or not decodable); nothing is
    written for those, so the next run tries them again.
    """
    failures: dict[Path, str] = {}
    pending = []
    for video, frame in jobs:
        if frame.is_file():
            continue
        if not video.is_file():
            failures[frame] = f"{video}: listed in the split but missing"
        else:
            pending.append((video, frame))
    if not pending:
        return failures
    try:
        import av  # noqa: F401
    except ImportError:
        raise LaicError(
            f"{desc}: {len(pending)} video(s) need their middle frame extracted, which needs PyAV: "
            "pip install av (or pip install -e \".[video]\"); or provide extracted frames as "
            "<root>/{train,test}/<ClassName>/*.jpg"
        ) from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        writable = os.access(out_dir, os.W_OK)
    except OSError as exc:
        writable, why = False, exc.strerror or str(exc)
    else:
        why = "permission denied"
    if not writable:
        raise LaicError(
            f"{out_dir}: cannot write the extracted frames here ({why}); make dataset.root writable, "
            "or extract the frames elsewhere as <dir>/{train,test}/<ClassName>/*.jpg and set "
            "dataset.root to that folder"
        )
    from laic_core.progress import progress_bar

    print(f"{desc}: extracting the middle frame of {len(pending)} video(s) into {out_dir} "
          f"({len(jobs) - len(pending)} already there); once only, an interrupted run resumes",
          file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=workers or _workers())
    try:
        futures = {pool.submit(_extract_one, video, frame): (video, frame) for video, frame in pending}
        with progress_bar(len(pending), desc, unit="video") as bar:
            for future in as_completed(futures):
                video, frame = futures[future]
                exc = future.exception()
                if exc is not None:
                    # PyAV's errors repeat the file name; its strerror is the reason alone.
                    why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                    failures[frame] = f"{video}: cannot extract its middle frame ({why})"
                    bar.write(f"cannot decode {video}: {why}")
                bar.update(1)
    finally:
        # Ctrl-C or an error: drop the queued videos instead of decoding them all first.
        pool.shutdown(wait=True, cancel_futures=True)
    return failures
