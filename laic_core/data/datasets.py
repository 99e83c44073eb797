"""Dataset registry: `dataset.kind` + name/root/splits -> (fit split, eval split).

`BENCHMARKS` is the one list of named benchmarks (`dataset.kind: torchvision`):
each entry says its K, its fit/eval splits, the splits it has, its folder
under a raw-data root and how it is read. `load_split` dispatches on it and
the many-dataset table (stages/table.py) builds its settings from it, so a
new benchmark is one `register_benchmark(...)` here, plus its name in
docs/your-images.md and in params.yaml's `dataset.name` comment (a test checks both).

The splits themselves (`ImageSplit`, `FileSplit`) and the reading of image
files live in `laic_core.data.images`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from laic_core.data.images import FileSplit, ImageSplit, is_image_file, tidy_path, tree_images
from laic_core.data.ucf101 import ucf101_split
from laic_core.errors import LaicError, name_some
from laic_core.provenance import digest, file_digests

# CIFAR-100 fine label -> one of the 20 standard super-classes (the map
# every CIFAR-20 clustering result uses; CIFAR-100's own coarse labels).
CIFAR100_TO_20 = np.array([
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
])
CIFAR20_CLASSES = [
    "aquatic mammals", "fish", "flowers", "food containers", "fruit and vegetables",
    "household electrical devices", "household furniture", "insects", "large carnivores",
    "large man-made outdoor things", "large natural outdoor scenes",
    "large omnivores and herbivores", "medium-sized mammals", "non-insect invertebrates",
    "people", "reptiles", "small mammals", "trees", "vehicles", "other vehicles",
]

# ImageNet subsets used by the clustering literature (class lists over ImageNet-1K).
IMAGENET10_WNIDS = [
    "n02056570", "n02085936", "n02128757", "n02690373", "n02692877",
    "n03095699", "n04254680", "n04285008", "n04467665", "n07747607",
]
IMAGENET_DOGS_WNIDS = [
    "n02085936", "n02086646", "n02088238", "n02091467", "n02097130",
    "n02099601", "n02101388", "n02101556", "n02102177", "n02105056",
    "n02105412", "n02105855", "n02107142", "n02110958", "n02112137",
]
# Readable names of those classes (zero-shot reads class names, never labels).
WNID_NAMES = {
    "n02056570": "king penguin", "n02085936": "Maltese dog", "n02128757": "snow leopard",
    "n02690373": "airliner", "n02692877": "airship", "n03095699": "container ship",
    "n04254680": "soccer ball", "n04285008": "sports car", "n04467665": "trailer truck",
    "n07747607": "orange", "n02086646": "Blenheim spaniel", "n02088238": "basset hound",
    "n02091467": "Norwegian elkhound", "n02097130": "giant schnauzer", "n02099601": "golden retriever",
    "n02101388": "Brittany spaniel", "n02101556": "clumber spaniel", "n02102177": "Welsh springer spaniel",
    "n02105056": "groenendael", "n02105412": "kelpie", "n02105855": "Shetland sheepdog",
    "n02107142": "Doberman", "n02110958": "pug", "n02112137": "chow chow",
}


class TorchvisionSplit(ImageSplit):
    """A split of a torchvision dataset (images decoded by torchvision)."""

    def __init__(self, name: str, split: str, dataset: Any, labels: np.ndarray | None,
                 class_names: list[str] | None):
        self.name = f"{name}:{split}"
        self.dataset = dataset
        self.labels = labels
        self.class_names = class_names
        self.notes = []

    def __len__(self) -> int:
        return len(self.dataset)

    def load_image(self, i: int) -> Image.Image:
        return self.dataset[i][0]

    def source(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def sources(self) -> list[str]:
        return [f"{self.name}[{i}]" for i in range(len(self))]

    def identity(self) -> dict[str, Any]:
        return {"kind": "torchvision", "name": self.name, "n": len(self)}


# ---------------------------------------------------------------- torchvision


def _targets(ds: Any) -> np.ndarray | None:
    for attr in ("targets", "labels", "_labels"):
        values = getattr(ds, attr, None)
        if values is not None and len(values) == len(ds):
            return np.asarray(values, dtype=np.int64)
    return None


def _cifar(cls_name: str) -> Callable[[str, str, bool], Any]:
    """A CIFAR constructor: torchvision's CIFAR classes take `train=` instead of `split=`."""
    def make(root: str, split: str, download: bool) -> Any:
        from torchvision import datasets as tvd

        return getattr(tvd, cls_name)(root, train=split == "train", download=download)
    return make


def _split_kw(cls_name: str) -> Callable[[str, str, bool], Any]:
    """A constructor for torchvision datasets that take `split=` (STL-10, DTD, Food-101, ...)."""
    def make(root: str, split: str, download: bool) -> Any:
        from torchvision import datasets as tvd

        return getattr(tvd, cls_name)(root, split=split, download=download)
    return make


def _torchvision_split(bench: "Benchmark", root: Path, split: str, download: bool) -> ImageSplit:
    name = bench.name
    if split not in bench.splits:
        raise LaicError(
            f"dataset split {split!r} does not exist for {name}; choose one of {', '.join(bench.splits)} "
            "(dataset.fit_split / dataset.eval_split)"
        )
    try:
        ds = bench.make(str(root), split, download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted..."
        hint = (
            "the download failed; check the network, or download it elsewhere and place it in "
            f"dataset.root ({root}) as {_layout(bench, root)}" if download else
            f"set dataset.download: true, or place the {name} files in dataset.root ({root}) as "
            f"{_layout(bench, root)}"
        )
        raise LaicError(f"dataset {name} ({split}) not found in {root}: {hint} [{exc}]") from exc
    except OSError as exc:  # network errors during download
        raise LaicError(
            f"dataset {name}: could not download into {root} ({exc}); without network access, "
            f"download it elsewhere and place it in dataset.root as {_layout(bench, root)}"
        ) from exc
    labels = _targets(ds)
    classes = list(getattr(ds, "classes", None) or []) or None
    if bench.label_map is not None:
        labels = bench.label_map[labels] if labels is not None else None
    if bench.class_names is not None:
        classes = list(bench.class_names)
    if classes is not None:
        classes = [c.replace("_", " ") for c in classes]
    return TorchvisionSplit(name, split, ds, labels, classes)


def _layout(bench: "Benchmark", root: Path) -> str:
    """What torchvision expects under the root: the benchmark's `layout`, rooted at `root`."""
    if not bench.layout:
        return "torchvision downloads it (its dataset class's folder inside dataset.root)"
    return bench.layout.replace("<root>", str(root))


def _imagenet_split(bench: "Benchmark", root: Path, split: str, download: bool) -> ImageSplit:
    wnids = list(bench.wnids) if bench.wnids is not None else None
    return _folder_split(root, split, wnids=wnids, name=bench.name)


def _ucf101_split(bench: "Benchmark", root: Path, split: str, download: bool) -> ImageSplit:

    return ucf101_split(root, split)


MANIFEST_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")


def _folder_split(root: Path, split: str, wnids: list[str] | None = None,
                  name: str | None = None, empty_hint: str = "check dataset.root and the split") -> FileSplit:
    """Images under root/split (or root itself for split 'all').

    Images in a first-level sub-folder take it as their class. Images lying
    directly in the folder beside such sub-folders have no class: they keep
    label -1 (clustered, left out of the metrics) and a note says so. A
    folder with no image in any sub-folder has no labels.
    """
    folder = root if split == "all" else root / split
    if not root.exists():
        raise LaicError(f"dataset.root: {root} does not exist; point it at your image folder")
    if not root.is_dir():
        raise LaicError(f"dataset.root: {root} is a file, not a folder of images; "
                        + ("for a list of images set dataset.kind: manifest"
                           if root.suffix.lower() in MANIFEST_SUFFIXES else "point it at your image folder"))
    if not folder.is_dir():
        subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise LaicError(
            f"dataset split folder {folder} does not exist; set dataset.fit_split/eval_split to a "
            f"sub-folder of {root} ({', '.join(subdirs[:10]) or 'it has none'}) or to 'all' for {root} itself"
        )
    if wnids is not None:
        missing = [w for w in wnids if not (folder / w).is_dir()]
        if missing:
            raise LaicError(
                f"{folder}: missing class folders {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''}; dataset {name} needs ImageNet laid out as "
                "<root>/<split>/<wnid>/*.JPEG"
            )
        paths = []
        labels = []
        notes: list[str] = []
        for c, wnid in enumerate(wnids):
            found, _, found_notes = tree_images(folder / wnid)
            paths += found
            labels += [c] * len(found)
            notes += found_notes
        if not paths:
            raise LaicError(f"{folder}: no images found in the class folders of {name}")
        names = _class_names_file(root, wnids) or [WNID_NAMES.get(w, w) for w in wnids]
        return FileSplit(name or str(folder), paths, np.asarray(labels, np.int64), names, notes)

    paths, ignored, notes = tree_images(folder)
    if not paths:
        raise LaicError(
            f"{folder}: no images found (no file with an extension the installed Pillow reads"
            f"{f'; ignored {ignored} other file(s)' if ignored else ''}); {empty_hint}"
        )
    rel = [p.relative_to(folder) for p in paths]
    in_class = [len(r.parts) >= 2 for r in rel]
    if any(in_class):
        folders = sorted({r.parts[0] for r, inside in zip(rel, in_class) if inside})
        index = {c: i for i, c in enumerate(folders)}
        labels = np.asarray([index[r.parts[0]] if inside else -1 for r, inside in zip(rel, in_class)],
                            dtype=np.int64)
        class_names = _class_names_file(root, folders) or [f.replace("_", " ") for f in folders]
        if split == "all":
            notes += _split_layout_note(root, folders)
        stray = [p for p, inside in zip(paths, in_class) if not inside]
        if stray:
            # Chosen over an error: labels feed only the metrics, so these images
            # are still clustered and the other images keep their classes.
            notes.append(
                f"{len(stray)} image(s) lie directly in {folder}, not in a class sub-folder: they are "
                f"clustered but have no class (label -1) and are left out of the metrics; move them into "
                f"a class folder or remove them: {name_some(stray)}"
            )
    else:
        class_names, labels = None, None
    return FileSplit(str(folder), paths, labels, class_names, notes)


def images_at(path: str | Path) -> FileSplit:
    """The images a command is given: every image under a folder (its sub-folders' names are
    classes, as for `dataset.kind: imagefolder`), or one image file. The errors name `path`, not
    the dataset settings: predict reads none of them."""
    path = tidy_path(Path(path).expanduser())
    if path.is_dir():
        return _folder_split(path, "all", empty_hint="give a folder that holds images, or an image file")
    if path.is_file():
        if not is_image_file(path):
            raise LaicError(f"{path}: not an image file (its extension {path.suffix or '(none)'!s} is not a format "
                            "the installed Pillow reads); give an image file or a folder of images")
        return FileSplit(str(path), [path], None, None)
    raise LaicError(f"{path}: no such folder or image file; give a folder of images or one image file")


# Folder names that say "a split of a dataset", not "a class of images".
_SPLIT_FOLDER_NAMES = ("train", "training", "test", "testing", "val", "valid", "validation", "trainval", "eval")


def _split_layout_note(root: Path, folders: list[str]) -> list[str]:
    """A note when the class folders of `fit_split: all` look like splits (train/, test/).

    Their names would become the classes: the metrics would score train
    against test and zero-shot would use "train" as a class name.
    """
    splits = [f for f in folders if f.lower() in _SPLIT_FOLDER_NAMES]
    if len(splits) < 2:
        return []
    fit = next((f for f in splits if f.lower().startswith("train")), splits[0])
    other = next(f for f in splits if f != fit)
    return [f"{root} looks like a split layout ({', '.join(f + '/' for f in splits)}): with fit_split: all "
            f"these folders became the classes; set dataset.fit_split: {fit} and dataset.eval_split: {other} "
            "to use the class folders inside them"]


def _class_names_file(root: Path, folders: list[str]) -> list[str] | None:
    """Readable names for class folders named by id (e.g. WordNet ids), when a file gives them.

    Looked for: `<root>.classes.csv` or `<root>/classes.csv` (columns: folder
    id, name; header optional), or ImageNet's `LOC_synset_mapping.txt`.
    """
    mapping: dict[str, str] = {}
    for candidate in (root.with_name(root.name + ".classes.csv"), root / "classes.csv"):
        if candidate.is_file():
            for line in candidate.read_text(encoding="utf-8").splitlines():
                key, _, name = line.partition(",")
                if name.strip():
                    mapping[key.strip()] = name.strip()
    synsets = root / "LOC_synset_mapping.txt"
    if synsets.is_file():
        for line in synsets.read_text(encoding="utf-8").splitlines():
            key, _, names = line.partition(" ")
            if names.strip():
                mapping[key.strip()] = names.split(",")[0].strip()
    if not mapping or not all(f in mapping for f in folders):
        return None
    return [mapping[f] for f in folders]


def _read_manifest(path: Path):
    import pandas as pd

    if path.is_dir():
        raise LaicError(f"dataset.root: {path} is a folder, not a manifest file; for a folder of images "
                        "set dataset.kind: imagefolder")
    if not path.is_file():
        raise LaicError(f"dataset.root: manifest {path} does not exist")
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        else:
            raise LaicError(f"dataset.root: manifest {path} must be a .csv, .tsv or .parquet file")
    except LaicError:
        raise
    except Exception as exc:
        raise LaicError(f"dataset.root: cannot read manifest {path} ({exc})") from exc
    if "path" not in table.columns:
        raise LaicError(
            f"{path}: manifest needs a 'path' column (found: {', '.join(map(str, table.columns))}); "
            "optional columns: 'label', 'split'"
        )
    return table


def _manifest_split(path: Path, split: str) -> FileSplit:
    import pandas as pd

    table = _read_manifest(path)
    if "split" in table.columns and split != "all":
        known = sorted(map(str, table["split"].dropna().unique()))
        rows = table[table["split"].astype(str) == split]
        if rows.empty:
            raise LaicError(
                f"{path}: no rows with split == {split!r} (splits present: {', '.join(known)}); "
                "set dataset.fit_split/eval_split to one of them or to 'all'"
            )
    else:
        rows = table
    if rows.empty:
        raise LaicError(f"{path}: the manifest lists no images")
    base = path.parent
    paths = []
    for row_no, p in zip(rows.index, rows["path"]):
        if not isinstance(p, str) or not p:
            raise LaicError(f"{path}: row {row_no + 2} has an empty path")
        given = Path(p).expanduser()
        full = given if given.is_absolute() else base / given
        if full.is_dir():
            raise LaicError(f"{path}: row {row_no + 2} names {p}, which is a folder, not an image; list image "
                            "files, one per row (or, for a folder, set dataset.kind: imagefolder)")
        if not full.is_file():
            raise LaicError(
                f"{path}: row {row_no + 2} names {p}, which does not exist (resolved to {full}); "
                "paths are relative to the manifest's folder unless absolute"
            )
        paths.append(tidy_path(full))
    _refuse_repeated_files(path, rows.index, paths)
    labels = class_names = None
    if "label" in table.columns:
        # -1 (or an empty cell) is no label, as for an image outside the class folders: never a class.
        all_labels = table["label"].map(_no_label_as_nan)
        negative = [(i, v) for i, v in all_labels.items() if _is_number(v) and v < 0]
        if negative:
            row_no, value = negative[0]
            raise LaicError(f"{path}: row {row_no + 2} has label {value:g}; class ids are >= 0, and -1 (or an empty "
                            "cell) means the image has no label")
        rows = rows.assign(label=all_labels.loc[rows.index])
        numeric = pd.api.types.is_numeric_dtype(all_labels.dtype)
        if all_labels.isna().all():
            pass
        elif numeric and not all(float(v).is_integer() for v in all_labels.dropna()):
            raise LaicError(f"{path}: the 'label' column must hold integers or class names")
        else:
            if numeric:  # 3.0 (pandas' int-with-gaps) is class 3
                # (a Series of object dtype: pandas' map would infer float64 again)
                all_labels = pd.Series([int(v) if v == v else v for v in all_labels], index=all_labels.index,
                                       dtype=object)
                rows = rows.assign(label=all_labels.loc[rows.index])
            # Class ids from the whole manifest, so fit and eval splits agree.
            names = sorted(all_labels.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
            index = {v: i for i, v in enumerate(names)}
            labels = np.asarray([index.get(v, -1) if v == v else -1 for v in rows["label"]], np.int64)
            class_names = [str(v) for v in names]
    return FileSplit(str(path), paths, labels, class_names)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _no_label_as_nan(value):
    """A manifest's label, with -1 (a number, or the text "-1") turned into NaN: no label."""
    if (_is_number(value) and value == -1) or (isinstance(value, str) and value.strip() == "-1"):
        return float("nan")
    return value


def _refuse_repeated_files(manifest: Path, row_ids, paths: list[Path]) -> None:
    """An error naming every image the manifest lists more than once (under any spelling of its path).

    A repeated image would be clustered and scored twice, and with another
    label it adds a class that is not there.
    """
    first_row: dict[str, int] = {}
    repeats = []
    for row_no, p in zip(row_ids, paths):
        key = os.path.realpath(p)
        if key in first_row:
            repeats.append(f"{p} (rows {first_row[key] + 2} and {row_no + 2})")
        else:
            first_row[key] = row_no
    if repeats:
        raise LaicError(f"{manifest}: {len(repeats)} image(s) listed more than once: {name_some(repeats)}; "
                        "list each image once, with its one label")


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: everything the pipeline and the many-dataset table need to know about it.

    `source` says how it is read: `torchvision` (downloaded into dataset.root
    by `make`), `imagenet` (a local `<root>/<split>/<wnid>/` tree, restricted
    to `wnids` when given) or `ucf101` (middle frames from a local root,
    laic_core/data/ucf101.py). Class names come from the dataset itself (torchvision's
    `classes`, ImageNet's classes.csv / LOC_synset_mapping.txt or WNID_NAMES,
    UCF-101's folder names as words) unless `class_names` fixes them.
    """

    name: str  # the value of dataset.name
    num_clusters: int  # K: the number of classes
    splits: tuple[str, ...] | None  # the splits its loader accepts; None: any sub-folder of the root
    source: str  # torchvision | imagenet | ucf101
    fit_split: str = "train"
    eval_split: str = "test"
    folder: str | None = None  # its folder under the many-dataset table's raw root; default: its name
    make: Callable[[str, str, bool], Any] | None = field(default=None, compare=False)  # torchvision
    wnids: tuple[str, ...] | None = None  # imagenet: the class list (None: every class folder)
    label_map: np.ndarray | None = field(default=None, compare=False)  # dataset label -> benchmark label
    class_names: tuple[str, ...] | None = None  # fixed class names (else the dataset's own)
    description: str = ""
    layout: str = ""  # torchvision: what dataset.root holds once downloaded (for the not-found message)

    @property
    def downloaded(self) -> bool:
        """Published files downloaded once into dataset.root (nothing a user edits)."""
        return self.source == "torchvision"


# How each source is read: (benchmark, root, split, download) -> ImageSplit.
_LOADERS: dict[str, Callable[[Benchmark, Path, str, bool], ImageSplit]] = {
    "torchvision": _torchvision_split,
    "imagenet": _imagenet_split,
    "ucf101": _ucf101_split,
}

# dataset.kind of every benchmark (the registry is looked up under this kind).
BENCHMARK_KIND = "torchvision"

BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(bench: Benchmark) -> Benchmark:
    """Add a benchmark; adding a dataset is one call here (plus docs/your-images.md and params.yaml's comment,
    which tests/test_datasets.py checks)."""
    if bench.name in BENCHMARKS:
        raise ValueError(f"benchmark {bench.name!r} is registered twice")  # a bug here, not user input
    if bench.source not in _LOADERS:
        raise ValueError(f"benchmark {bench.name!r}: source {bench.source!r} is not one of {', '.join(_LOADERS)}")
    if bench.source == "torchvision" and bench.make is None:
        raise ValueError(f"benchmark {bench.name!r}: a torchvision benchmark needs its constructor (make)")
    BENCHMARKS[bench.name] = bench
    return bench


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark `name`; the error names dataset.name and every known benchmark."""
    if name not in BENCHMARKS:
        raise LaicError(
            f"dataset.name: unknown dataset {name!r}; known: {', '.join(BENCHMARKS)} "
            "(or use dataset.kind: imagefolder / manifest for your own images)"
        )
    return BENCHMARKS[name]


# The clustering benchmarks of the paper and TAC (in their tables' order), then
# the larger sets, with the usual splits: fit on train, evaluate on test
# (ImageNet and its subsets: on val). ImageNet-10/-Dogs are class lists over
# one local ImageNet tree; UCF-101 is the middle frame of each video of split 1.
_TRAIN_TEST = ("train", "test")
# What torchvision finds in dataset.root once it has downloaded a benchmark (no network: put it there).
_ARCHIVE = "<root>/{folder}/ holding {files} (the archive {url} unpacked into <root>)"
_CIFAR100_LAYOUT = _ARCHIVE.format(folder="cifar-100-python", files="train, test, meta",
                                   url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz")
register_benchmark(Benchmark("cifar10", 10, _TRAIN_TEST, "torchvision", make=_cifar("CIFAR10"),
                             description="CIFAR-10",
                             layout=_ARCHIVE.format(
                                 folder="cifar-10-batches-py",
                                 files="data_batch_1 ... data_batch_5, test_batch, batches.meta",
                                 url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")))
register_benchmark(Benchmark("cifar20", 20, _TRAIN_TEST, "torchvision", make=_cifar("CIFAR100"),
                             label_map=CIFAR100_TO_20, class_names=tuple(CIFAR20_CLASSES),
                             description="CIFAR-100 with the standard 20 super-classes", layout=_CIFAR100_LAYOUT))
register_benchmark(Benchmark("stl10", 10, _TRAIN_TEST, "torchvision", make=_split_kw("STL10"),
                             description="STL-10",
                             layout=_ARCHIVE.format(
                                 folder="stl10_binary",
                                 files="train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt",
                                 url="http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz")))
register_benchmark(Benchmark("imagenet10", 10, None, "imagenet", "train", "val", folder="imagenet",
                             wnids=tuple(IMAGENET10_WNIDS), description="ImageNet-10, over a local ImageNet"))
register_benchmark(Benchmark("imagenet_dogs", 15, None, "imagenet", "train", "val", folder="imagenet",
                             wnids=tuple(IMAGENET_DOGS_WNIDS),
                             description="ImageNet-Dogs, over a local ImageNet"))
register_benchmark(Benchmark("dtd", 47, ("train", "val", "test"), "torchvision", make=_split_kw("DTD"),
                             description="Describable Textures",
                             layout="<root>/dtd/dtd/ holding images/ and labels/ (the archive https://www."
                                    "robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz unpacked into "
                                    "<root>/dtd)"))
register_benchmark(Benchmark("ucf101", 101, ("train", "test", "val"), "ucf101",  # val: TAC's name for test
                             description="UCF-101 middle frames, split 1, from a local root"))
register_benchmark(Benchmark("cifar100", 100, _TRAIN_TEST, "torchvision", make=_cifar("CIFAR100"),
                             description="CIFAR-100", layout=_CIFAR100_LAYOUT))
register_benchmark(Benchmark("food101", 101, _TRAIN_TEST, "torchvision", make=_split_kw("Food101"),
                             description="Food-101",
                             layout=_ARCHIVE.format(folder="food-101", files="images/, meta/",
                                                    url="http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz")))
register_benchmark(Benchmark("flowers102", 102, ("train", "val", "test"), "torchvision",
                             make=_split_kw("Flowers102"), description="Oxford Flowers-102",
                             layout="<root>/flowers-102/ holding jpg/, imagelabels.mat and setid.mat "
                                    "(from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/)"))
register_benchmark(Benchmark("pets", 37, ("trainval", "test"), "torchvision", "trainval", "test",
                             make=_split_kw("OxfordIIITPet"), description="Oxford-IIIT Pets",
                             layout="<root>/oxford-iiit-pet/ holding images/ and annotations/ (images.tar.gz "
                                    "and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ "
                                    "unpacked there)"))
register_benchmark(Benchmark("imagenet", 1000, None, "imagenet", "train", "val", folder="imagenet",
                             description="ImageNet-1K, from a local root"))


@dataclass
class DatasetSplits:
    fit: ImageSplit
    eval: ImageSplit
    same: bool  # fit and eval are the same images (transductive use)


KINDS = ("torchvision", "imagefolder", "manifest")


def load_split(kind: str, name: str, root: str | Path, split: str, *, download: bool = True) -> ImageSplit:
    """One split of a dataset: a registered benchmark (kind torchvision), a folder or a manifest."""
    root = tidy_path(Path(root).expanduser())
    if kind == BENCHMARK_KIND:
        bench = get_benchmark(name)
        return _LOADERS[bench.source](bench, root, split, download)
    if kind == "imagefolder":
        return _folder_split(root, split)
    if kind == "manifest":
        return _manifest_split(root, split)
    raise LaicError(f"dataset.kind: {kind!r} is not one of {', '.join(KINDS)}")


def load_dataset(kind: str, name: str, root: str | Path, fit_split: str, eval_split: str,
                 *, download: bool = True) -> DatasetSplits:
    """The fit and eval splits a run uses (the same object when they coincide)."""
    fit = load_split(kind, name, root, fit_split, download=download)
    if eval_split == fit_split:
        return DatasetSplits(fit, fit, True)
    return DatasetSplits(fit, load_split(kind, name, root, eval_split, download=download), False)


LISTINGS = ("stat", "content")  # dataset.listing: what the listing trusts to see a changed image


def split_listing(found: ImageSplit, listing: str = "stat", cache: str | Path | None = None) -> dict[str, Any]:
    """The listing of one split already read: its name, image count and a digest of every image
    (path, size and mtime; or path, size and the sha256 of its bytes with `listing="content"`), its
    label, the class names and the notes. `cache`: where content digests are kept between runs."""
    if listing not in LISTINGS:
        raise LaicError(f"dataset.listing: {listing!r} is not one of {', '.join(LISTINGS)}")
    files = found.identity()["files"]  # path, size, mtime of every image
    if listing == "content":
        digests = file_digests([p for p, _, _ in files], cache)
        files = [(p, size, sha) for (p, size, _), sha in zip(files, digests)]
    content = {
        "files": files,
        "labels": None if found.labels is None else found.labels.tolist(),
        "class_names": found.class_names,
        "notes": found.notes,
    }
    out = {"name": found.name, "images": len(found), "sha256": digest(content)}
    if listing == "content":  # (absent for stat: listings written before the setting keep their bytes)
        out["listing"] = "content"
    return out


def _split_listing(kind: str, name: str, root: str | Path, split: str, download: bool, listing: str = "stat",
                   cache: str | Path | None = None, found: ImageSplit | None = None) -> dict[str, Any]:
    if kind == BENCHMARK_KIND and name in BENCHMARKS and BENCHMARKS[name].downloaded:
        # Published files, downloaded once into root and never edited: nothing
        # to watch (and listing them would start the download here).
        return {"dataset": name, "split": split}
    found = found if found is not None else load_split(kind, name, root, split, download=download)
    return split_listing(found, listing, cache)


def dataset_split_listing(kind: str, name: str, root: str | Path, split: str, *, download: bool = True,
                          listing: str = "stat", cache: str | Path | None = None,
                          found: ImageSplit | None = None) -> dict[str, Any]:
    """What `dataset_listing` says of one split (`found`: that split, when already read)."""
    return _split_listing(kind, name, root, split, download, listing, cache, found)


def dataset_listing(kind: str, name: str, root: str | Path, fit_split: str, eval_split: str,
                    *, download: bool = True, listing: str = "stat",
                    cache: str | Path | None = None) -> dict[str, Any]:
    """A small summary of the images a run embeds, whose bytes change exactly when they do.

    Per split: the image count and a digest of every image's path, size and
    mtime (`listing="content"`: size and the sha256 of its bytes), its label
    and the class names. DVC cannot look into an image folder or a manifest's
    images; a file depending on this summary lets it see an edited manifest,
    an added, removed or replaced image, or a renamed class folder, without
    `dvc repro -f`. With "stat" an image replaced by another of the same size
    whose modification time was kept (`cp -p`, `rsync -t`, some sync tools)
    is not seen; "content" sees it, at the cost of reading every image once
    (digests are then reused while a file's stat is unchanged, `cache`).
    """
    listing_args = (download, listing, cache)
    out = {"fit": _split_listing(kind, name, root, fit_split, *listing_args)}
    out["eval"] = ("same as fit" if eval_split == fit_split
                   else _split_listing(kind, name, root, eval_split, *listing_args))
    return out
