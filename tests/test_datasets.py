"""The dataset registry: folders, manifests, benchmarks and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from laic_core.datasets import (
    CIFAR20_CLASSES, CIFAR100_TO_20, IMAGENET10_WNIDS, load_dataset, load_split,
)
from laic_core.errors import LaicError
from tests.conftest import SHARED_DATASETS, make_image_tree


def test_cifar20_map_is_the_standard_partition():
    assert CIFAR100_TO_20.shape == (100,) and len(CIFAR20_CLASSES) == 20
    # Every super-class holds exactly five CIFAR-100 classes.
    assert np.bincount(CIFAR100_TO_20, minlength=20).tolist() == [5] * 20
    # Spot checks against CIFAR-100's own coarse labels: apple -> fruit and
    # vegetables, aquarium fish -> fish, baby -> people, bear -> large carnivores.
    assert CIFAR100_TO_20[[0, 1, 2, 3]].tolist() == [4, 1, 14, 8]


def test_folder_splits_labels_and_sub_folder_choice(tmp_path):
    make_image_tree(tmp_path / "data" / "train", classes=2, per_class=3)
    make_image_tree(tmp_path / "data" / "test", classes=2, per_class=2)
    splits = load_dataset("imagefolder", "", tmp_path / "data", "train", "test")
    assert (len(splits.fit), len(splits.eval), splits.same) == (6, 4, False)
    assert splits.fit.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert splits.fit.class_names == ["class 0", "class 1"]
    with pytest.raises(LaicError, match=r"split folder .*val does not exist.*test, train"):
        load_split("imagefolder", "", tmp_path / "data", "val")
    same = load_dataset("imagefolder", "", tmp_path / "data" / "train", "all", "all")
    assert same.same and same.fit is same.eval


def test_flat_folder_has_no_labels(tmp_path):
    make_image_tree(tmp_path / "tree", classes=1, per_class=3)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted((tmp_path / "tree").rglob("*.png"))):
        f.rename(flat / f"{i}.png")
    (flat / "nested").mkdir()
    split = load_split("imagefolder", "", flat, "all")
    assert len(split) == 3 and split.labels is None and split.class_names is None


def test_class_names_file_gives_readable_names(tmp_path):
    root = tmp_path / "val"
    make_image_tree(root, classes=2, per_class=1)
    for i, wnid in enumerate(["n01440764", "n02102040"]):
        (root / f"class_{i}").rename(root / wnid)
    (tmp_path / "val.classes.csv").write_text("wnid,name\nn01440764,tench\nn02102040,English springer\n")
    assert load_split("imagefolder", "", root, "all").class_names == ["tench", "English springer"]


def test_manifest_splits_labels_and_relative_paths(tmp_path):
    make_image_tree(tmp_path / "imgs", classes=2, per_class=2)
    rows = [
        {"path": "imgs/class_0/img_0.png", "label": "cat", "split": "train"},
        {"path": "imgs/class_0/img_1.png", "label": "dog", "split": "train"},
        {"path": str(tmp_path / "imgs/class_1/img_0.png"), "label": "cat", "split": "test"},
        {"path": "imgs/class_1/img_1.png", "label": None, "split": "test"},
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    splits = load_dataset("manifest", "", tmp_path / "m.parquet", "train", "test")
    assert splits.fit.labels.tolist() == [0, 1] and splits.eval.labels.tolist() == [0, -1]
    assert splits.fit.class_names == ["cat", "dog"]
    assert Path(splits.eval.source(0)).is_file()
    with pytest.raises(LaicError, match=r"no rows with split == 'val'.*test, train"):
        load_split("manifest", "", tmp_path / "m.parquet", "val")


def test_manifest_without_path_column(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.png,1\n")
    with pytest.raises(LaicError, match=r"m.csv: manifest needs a 'path' column"):
        load_split("manifest", "", tmp_path / "m.csv", "all")


def test_torchvision_errors_name_the_parameter(tmp_path):
    with pytest.raises(LaicError, match=r"split 'val' does not exist for cifar10.*train, test"):
        load_split("torchvision", "cifar10", tmp_path, "val")
    with pytest.raises(LaicError, match=r"cifar10 \(test\) not found in .*dataset.download: true"):
        load_split("torchvision", "cifar10", tmp_path, "test", download=False)
    with pytest.raises(LaicError, match=r"dataset.kind: 'folder' is not one of"):
        load_split("folder", "", tmp_path, "all")


def test_imagenet10_needs_its_class_folders(tmp_path):
    (tmp_path / "val" / IMAGENET10_WNIDS[0]).mkdir(parents=True)
    with pytest.raises(LaicError, match=r"missing class folders n02085936"):
        load_split("torchvision", "imagenet10", tmp_path, "val")


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATASETS / "dtd10").is_dir(), reason="../shared/datasets absent")
def test_real_image_trees_load():
    split = load_split("imagefolder", "", SHARED_DATASETS / "dtd10", "all")
    assert len(split) == 1200 and len(split.class_names) == 10
    img = split.load_image(0)
    assert img.size[0] >= 271


# ------------------------------------------------------------- links and strays


def test_class_folders_that_are_symlinks_are_followed(tmp_path):
    store = make_image_tree(tmp_path / "store", classes=2, per_class=3)
    tree = make_image_tree(tmp_path / "tree", classes=2, per_class=2)
    (tree / "linked_a").symlink_to(store / "class_0", target_is_directory=True)
    (tree / "linked_b").symlink_to(store / "class_1", target_is_directory=True)
    split = load_split("imagefolder", "", tree, "all")
    assert len(split) == 10
    assert split.class_names == ["class 0", "class 1", "linked a", "linked b"]
    assert np.bincount(split.labels).tolist() == [2, 2, 3, 3]
    assert split.notes == []


def test_symlink_loop_is_skipped_with_a_note(tmp_path):
    tree = make_image_tree(tmp_path / "tree", classes=2, per_class=2)
    (tree / "class_0" / "again").symlink_to(tree, target_is_directory=True)
    split = load_split("imagefolder", "", tree, "all")
    assert len(split) == 4 and split.labels.tolist() == [0, 0, 1, 1]
    assert len(split.notes) == 1 and "again" in split.notes[0] and "loop" in split.notes[0]


def test_broken_links_are_listed_never_dropped(tmp_path):
    tree = make_image_tree(tmp_path / "tree", classes=2, per_class=2)
    (tree / "class_1" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    split = load_split("imagefolder", "", tree, "all")
    # Kept as an image, so embed reports it (error or recorded skip).
    gone = [i for i, s in enumerate(split.sources()) if s.endswith("gone.png")]
    assert len(gone) == 1 and split.labels[gone[0]] == 1
    with pytest.raises(FileNotFoundError, match=r"broken symbolic link to .*nowhere.png"):
        split.load_image(gone[0])
    # A broken link with no image name may have been a whole class folder.
    (tree / "class_2").symlink_to(tmp_path / "unmounted" / "class_2")
    with pytest.raises(LaicError, match=r"1 broken symbolic link\(s\).*class_2 -> .*unmounted.*remove them"):
        load_split("imagefolder", "", tree, "all")


def test_a_stray_top_level_image_keeps_every_other_label(tmp_path):
    tree = make_image_tree(tmp_path / "tree", classes=2, per_class=2)
    (tree / "class_0" / "img_0.png").rename(tree / "stray.png")
    split = load_split("imagefolder", "", tree, "all")
    assert len(split) == 4 and split.class_names == ["class 0", "class 1"]
    by_name = dict(zip((Path(s).name for s in split.sources()), split.labels.tolist()))
    assert by_name["stray.png"] == -1
    assert sorted(split.labels.tolist()) == [-1, 0, 1, 1]
    assert len(split.notes) == 1
    assert "1 image(s) lie directly in" in split.notes[0] and "stray.png" in split.notes[0]
    assert "label -1" in split.notes[0] and "move them into a class folder" in split.notes[0]


def test_tilde_in_root_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    make_image_tree(tmp_path / "photos", classes=2, per_class=1)
    assert len(load_split("imagefolder", "", "~/photos", "all")) == 2
    pd.DataFrame({"path": ["~/photos/class_0/img_0.png"]}).to_csv(tmp_path / "m.csv", index=False)
    assert load_split("manifest", "", "~/m.csv", "all").sources() == [str(tmp_path / "photos/class_0/img_0.png")]
