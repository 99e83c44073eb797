"""The dataset registry: folders, manifests, benchmarks and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from laic_core.data.datasets import (
    BENCHMARKS, CIFAR20_CLASSES, CIFAR100_TO_20, IMAGENET10_WNIDS, Benchmark, load_dataset, load_split,
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
    with pytest.raises(LaicError, match=r"cifar10 \(test\) not found in .*dataset.download: true") as error:
        load_split("torchvision", "cifar10", tmp_path, "test", download=False)
    # the layout to put there by hand, on a machine without network access
    assert f"{tmp_path}/cifar-10-batches-py/ holding data_batch_1" in str(error.value)
    assert "cifar-10-python.tar.gz unpacked into" in str(error.value)
    with pytest.raises(LaicError, match=r"dataset.kind: 'folder' is not one of"):
        load_split("folder", "", tmp_path, "all")


def test_every_downloaded_benchmark_says_what_its_root_holds():
    from laic_core.data.datasets import BENCHMARKS

    for bench in BENCHMARKS.values():
        if bench.downloaded:
            assert bench.layout.startswith("<root>/"), bench.name


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


# ------------------------------------------------------------- what a practitioner's folder holds


def test_hidden_folders_are_skipped_and_named(tmp_path):
    tree = make_image_tree(tmp_path / "tree", classes=2, per_class=2)
    make_image_tree(tree / ".Trash-1000", classes=1, per_class=3)  # would have become a class
    make_image_tree(tree / "class_0" / ".thumbnails", classes=1, per_class=2)
    split = load_split("imagefolder", "", tree, "all")
    assert len(split) == 4 and split.class_names == ["class 0", "class 1"]
    assert not any("/." in s for s in split.sources())
    assert len(split.notes) == 1
    assert "skipped 2 hidden folder(s)" in split.notes[0]
    assert ".Trash-1000" in split.notes[0] and "class_0/.thumbnails" in split.notes[0]


def test_every_format_pillow_reads_is_taken_and_other_files_are_named(tmp_path):
    from PIL import features

    tree = make_image_tree(tmp_path / "tree", classes=1, per_class=2)
    photo = Image.open(tree / "class_0" / "img_0.png").convert("RGB")
    formats = {".jfif": "JPEG", ".jpe": "JPEG"}  # what cameras and old tools write
    if features.check("jpg_2000"):
        formats[".jp2"] = "JPEG2000"
    if features.check("avif"):
        formats[".avif"] = "AVIF"
    for suffix, fmt in formats.items():
        photo.save(tree / "class_0" / f"camera{suffix}", format=fmt)
    (tree / "class_0" / "notes.txt").write_text("not an image")
    (tree / "class_0" / "clip.mov").write_bytes(b"\x00" * 16)
    split = load_split("imagefolder", "", tree, "all")
    taken = {Path(s).suffix for s in split.sources()}
    assert taken == {".png", *formats}
    assert all(split.load_image(i).size == (20, 20) for i in range(len(split)))
    note = next(n for n in split.notes if n.startswith("left out"))
    assert "left out 2 file(s)" in note and "(.mov, .txt)" in note
    assert "notes.txt" in note and "clip.mov" in note


def test_train_and_test_folders_under_fit_split_all_get_a_note(tmp_path):
    make_image_tree(tmp_path / "data" / "train", classes=2, per_class=2)
    make_image_tree(tmp_path / "data" / "test", classes=2, per_class=1)
    split = load_split("imagefolder", "", tmp_path / "data", "all")
    assert split.class_names == ["test", "train"]  # what the user asked for, with a word about it
    assert len(split.notes) == 1 and "looks like a split layout (test/, train/)" in split.notes[0]
    assert "set dataset.fit_split: train and dataset.eval_split: test" in split.notes[0]
    assert load_split("imagefolder", "", tmp_path / "data", "train").notes == []


def test_a_manifest_listing_an_image_twice_is_refused_with_its_rows(tmp_path):
    make_image_tree(tmp_path / "imgs", classes=1, per_class=2)
    rows = [("imgs/class_0/img_0.png", "cat"), ("imgs/class_0/img_1.png", "cat"),
            ("imgs/../imgs/class_0/img_0.png", "dog")]  # the same file, spelt otherwise, another label
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(LaicError, match=r"m.csv: 1 image\(s\) listed more than once: .*img_0.png "
                                        r"\(rows 2 and 4\); list each image once"):
        load_split("manifest", "", tmp_path / "m.csv", "all")


def test_a_file_given_as_an_image_folder_names_the_kind_to_set(tmp_path):
    pd.DataFrame({"path": ["a.png"]}).to_csv(tmp_path / "images.csv", index=False)
    with pytest.raises(LaicError, match=r"dataset.root: .*images.csv is a file, not a folder of images; "
                                        r"for a list of images set dataset.kind: manifest"):
        load_split("imagefolder", "", tmp_path / "images.csv", "all")
    with pytest.raises(LaicError, match=r"is a folder, not a manifest file; .*dataset.kind: imagefolder"):
        load_split("manifest", "", tmp_path, "all")


def test_source_paths_are_written_without_dot_dot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image_tree(tmp_path / "photos", classes=1, per_class=1)
    (tmp_path / "lists").mkdir()
    pd.DataFrame({"path": ["../photos/class_0/img_0.png"]}).to_csv(tmp_path / "lists" / "m.csv", index=False)
    assert load_split("manifest", "", "lists/m.csv", "all").sources() == ["photos/class_0/img_0.png"]
    assert load_split("imagefolder", "", "lists/../photos", "all").sources() == ["photos/class_0/img_0.png"]
    # After a symbolic link, `..` leaves the link's target: there the path is resolved, not cut.
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "deep" / "er", target_is_directory=True)
    make_image_tree(tmp_path / "deep" / "pics", classes=1, per_class=1)
    sources = load_split("imagefolder", "", "link/../pics", "all").sources()
    assert sources == [str(tmp_path / "deep" / "pics" / "class_0" / "img_0.png")]


# ------------------------------------------------------------- UCF-101 middle frames


def _jpeg(path: Path, colour, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(path, quality=95)


def _write_video(path: Path, colours, container: str = "avi", size: int = 32) -> None:
    """A tiny MPEG-4 video, one solid colour per frame (PyAV)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for c in colours:
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), c, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _mean_colour(img) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)


def _release_lists(root: Path, train: list[str], test: list[str]) -> None:
    """ucfTrainTestlist/ as the release ships it (CRLF line ends, labels only in trainlist)."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    ids = {"ApplyEyeMakeup": 1, "HandstandPushups": 2}
    (lists / "trainlist01.txt").write_bytes(
        "".join(f"{v} {ids[v.split('/')[0]]}\r\n" for v in train).encode())
    (lists / "testlist01.txt").write_bytes("".join(f"{v}\r\n" for v in test).encode())


def test_ucf101_class_folders_read_as_words():
    from laic_core.data.ucf101 import readable_class_name

    assert readable_class_name("ApplyEyeMakeup") == "apply eye makeup"
    assert readable_class_name("Apply_Eye_Makeup") == "apply eye makeup"  # CoOp's folder names
    assert readable_class_name("YoYo") == "yo yo"
    assert readable_class_name("HandstandPushups") == "handstand pushups"


def test_ucf101_extracted_frames_tac_layout(tmp_path):
    root = tmp_path / "UCF101"
    for split, n in (("train", 3), ("val", 2)):  # TAC's folder names
        for c, cls in enumerate(["YoYo", "ApplyEyeMakeup"]):
            for j in range(n):
                _jpeg(root / split / cls / f"v_{cls}_g0{j}_c01.jpg", (80 * c, 0, 0))
    splits = load_dataset("torchvision", "ucf101", root, "train", "test")
    assert (len(splits.fit), len(splits.eval)) == (6, 4)
    # Without classInd.txt: sorted folder names give the ids.
    assert splits.fit.class_names == ["apply eye makeup", "yo yo"]
    assert splits.fit.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert any("val as the test split" in n for n in splits.eval.notes)
    assert any("2 classes found where UCF-101 has 101" in n for n in splits.fit.notes)
    assert splits.fit.load_image(0).size == (16, 16)
    # classInd.txt, when present, orders the classes.
    (root / "classInd.txt").write_text("1 YoYo\n2 ApplyEyeMakeup\n")
    split = load_split("torchvision", "ucf101", root, "val")
    assert split.class_names == ["yo yo", "apply eye makeup"] and split.labels.tolist() == [1, 1, 0, 0]
    (root / "val" / "Stray").mkdir()
    with pytest.raises(LaicError, match=r"class folder\(s\) not in .*classInd.txt: Stray"):
        load_split("torchvision", "ucf101", root, "test")


def test_ucf101_errors_say_where_to_get_it(tmp_path):
    with pytest.raises(LaicError, match=r"does not exist.*crcv.ucf.edu.*UCF-101/<ClassName>/\*\.avi"):
        load_split("torchvision", "ucf101", tmp_path / "nowhere", "train")
    with pytest.raises(LaicError, match=r"split 'trainval' does not exist for ucf101"):
        load_split("torchvision", "ucf101", tmp_path, "trainval")
    with pytest.raises(LaicError, match=r"holds neither UCF-101 layout\. .*ucfTrainTestlist"):
        load_split("torchvision", "ucf101", tmp_path, "train")
    # The videos folder itself given as the root.
    (tmp_path / "videos" / "YoYo").mkdir(parents=True)
    (tmp_path / "videos" / "YoYo" / "v_YoYo_g01_c01.avi").write_bytes(b"")
    with pytest.raises(LaicError, match=r"holds class folders of videos: point dataset.root at the folder"):
        load_split("torchvision", "ucf101", tmp_path / "videos", "train")
    # Videos without the split lists.
    (tmp_path / "videos").rename(tmp_path / "UCF-101")
    with pytest.raises(LaicError, match=r"classInd.txt.* is missing: unpack UCF101TrainTestSplits"):
        load_split("torchvision", "ucf101", tmp_path, "train")


def test_ucf101_without_pyav_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    (tmp_path / "UCF-101" / "ApplyEyeMakeup").mkdir(parents=True)
    (tmp_path / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi").write_bytes(b"RIFF")
    _release_lists(tmp_path, ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"], [])
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(LaicError, match=r"1 video\(s\) need their middle frame extracted.*pip install av"):
        load_split("torchvision", "ucf101", tmp_path, "train")


def test_ucf101_official_release_middle_frames(tmp_path):
    pytest.importorskip("av")
    from laic_core.data.encode import preprocess_image

    root = tmp_path / "ucf"
    red, green, blue, yellow, cyan, white = (230, 20, 20), (20, 230, 20), (20, 20, 230), \
        (230, 230, 20), (20, 230, 230), (240, 240, 240)
    videos = root / "UCF-101"
    # 5 frames: the middle (index 5 // 2 = 2) is blue.
    _write_video(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", [red, green, blue, yellow, cyan])
    # The release's own quirk: this class's files say HandStand. Matroska keeps no
    # frame count, so the frames are counted first: 6 frames, index 3 is yellow.
    _write_video(videos / "HandstandPushups/v_HandStandPushups_g08_c01.avi",
                 [red, red, green, yellow, blue, blue], container="matroska")
    _write_video(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", [white, white, cyan, red, red])
    (videos / "HandstandPushups/v_HandStandPushups_g01_c01.avi").write_bytes(b"RIFF not a video" * 8)
    _release_lists(root, ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
                          "HandstandPushups/v_HandStandPushups_g08_c01.avi"],
                   ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                    "HandstandPushups/v_HandStandPushups_g01_c01.avi"])

    splits = load_dataset("torchvision", "ucf101", root, "train", "test")
    train, test = splits.fit, splits.eval
    assert train.class_names == ["apply eye makeup", "handstand pushups"]
    assert train.labels.tolist() == [0, 1] and test.labels.tolist() == [0, 1]
    frames = root / "middle_frames"
    assert train.sources() == [str(frames / "train/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.jpg"),
                               str(frames / "train/HandstandPushups/v_HandStandPushups_g08_c01.jpg")]
    for split, i, colour in ((train, 0, blue), (train, 1, yellow), (test, 0, cyan)):
        assert np.abs(_mean_colour(split.load_image(i)) - colour).max() < 25, (split.name, i)
    assert list(frames.rglob("*.tmp")) == []

    # The undecodable video keeps its row; loading it names the video, so embed
    # reports it (or skips it) like any unreadable image.
    _, why = preprocess_image(test, 1, lambda img: img)
    assert "v_HandStandPushups_g01_c01.avi" in why and "cannot extract its middle frame" in why
    assert any("1 video(s) gave no middle frame" in n and "g01_c01.avi" in n for n in test.notes)

    # Resumable: frames already written are not decoded again; a missing one is.
    written = {p: p.stat().st_mtime_ns for p in frames.rglob("*.jpg")}
    first = frames / "train/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.jpg"
    first.unlink()
    again = load_split("torchvision", "ucf101", root, "train")
    assert first.is_file() and again.sources() == train.sources()
    assert all(p.stat().st_mtime_ns == t for p, t in written.items() if p != first)

    # The extracted frames are layout (a): read directly, they give the same split.
    direct = load_split("torchvision", "ucf101", frames, "train")
    assert direct.sources() == train.sources() and direct.labels.tolist() == train.labels.tolist()
    assert direct.class_names == train.class_names


def test_ucf101_is_a_table_benchmark():
    from stages.table import dataset_settings

    settings = dataset_settings("ucf101")
    assert settings["dataset.num_clusters"] == "101"
    assert (settings["dataset.fit_split"], settings["dataset.eval_split"]) == ("train", "test")
    assert settings["dataset.name"] == "ucf101" and settings["dataset.kind"] == "torchvision"


# ------------------------------------------------------------- the benchmark registry

PROJECT = Path(__file__).resolve().parents[1]


def test_benchmark_registry_is_consistent():
    from laic_core.data import ucf101

    assert list(BENCHMARKS)[:3] == ["cifar10", "cifar20", "stl10"]  # the papers' table order
    for name, bench in BENCHMARKS.items():
        assert bench.name == name and bench.num_clusters >= 2
        if bench.splits is not None:
            assert {bench.fit_split, bench.eval_split} <= set(bench.splits), name
        if bench.class_names is not None:
            assert len(bench.class_names) == bench.num_clusters, name
        if bench.wnids is not None:
            assert len(bench.wnids) == bench.num_clusters, name
        if bench.label_map is not None:
            assert int(bench.label_map.max()) + 1 == bench.num_clusters, name
    assert BENCHMARKS["ucf101"].splits == ucf101.SPLITS and BENCHMARKS["ucf101"].num_clusters == ucf101.NUM_CLASSES
    assert BENCHMARKS["imagenet_dogs"].folder == "imagenet" and BENCHMARKS["pets"].fit_split == "trainval"


def test_unknown_benchmark_lists_every_registered_one(tmp_path):
    with pytest.raises(LaicError, match=r"dataset.name: unknown dataset 'cifar11'; known: ") as err:
        load_split("torchvision", "cifar11", tmp_path, "train")
    assert all(name in str(err.value) for name in BENCHMARKS)


class _FakeTorchvision:
    """What a torchvision dataset offers load_split: classes, targets, (image, label) items."""

    def __init__(self, root, split, download):
        self.classes = ["red_panda", "sea_otter", "snow_owl"]
        self.targets = [2, 0, 1, 2] if split == "train" else [0]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return Image.new("RGB", (4, 4)), self.targets[i]


def test_a_new_benchmark_is_one_registry_entry(tmp_path, monkeypatch):
    bench = Benchmark("toy3", 2, ("train", "test"), "torchvision", make=_FakeTorchvision,
                      label_map=np.array([0, 0, 1]), class_names=("mammal", "bird"))
    monkeypatch.setitem(BENCHMARKS, "toy3", bench)
    splits = load_dataset("torchvision", "toy3", tmp_path, "train", "test")
    assert splits.fit.labels.tolist() == [1, 0, 0, 1] and splits.fit.class_names == ["mammal", "bird"]
    assert splits.fit.source(0) == "toy3:train[0]" and len(splits.eval) == 1
    with pytest.raises(LaicError, match=r"split 'val' does not exist for toy3; choose one of train, test"):
        load_split("torchvision", "toy3", tmp_path, "val")
    # Without fixed names or a label map, the dataset's own classes (underscores as spaces).
    monkeypatch.setitem(BENCHMARKS, "toy3", Benchmark("toy3", 3, ("train",), "torchvision", make=_FakeTorchvision))
    assert load_split("torchvision", "toy3", tmp_path, "train").class_names == ["red panda", "sea otter", "snow owl"]

    from stages.table import dataset_settings

    assert dataset_settings("toy3", "raw")["dataset.root"] == "raw/toy3"


def _params_dataset_name_comment() -> str:
    """The comment after `name:` in params.yaml's dataset section."""
    in_dataset = False
    for line in (PROJECT / "params.yaml").read_text().splitlines():
        if line and not line[0].isspace():
            in_dataset = line.startswith("dataset:")
        elif in_dataset and line.strip().startswith("name:"):
            return line.partition("#")[2]
    raise AssertionError("params.yaml has no dataset.name line")


def test_every_benchmark_is_documented():
    """A benchmark added to BENCHMARKS must also be named in the docs users read."""
    import re

    comment = _params_dataset_name_comment()
    missing = [n for n in BENCHMARKS if not re.search(rf"\b{re.escape(n)}\b", comment)]
    assert not missing, f"params.yaml: add {', '.join(missing)} to the comment of dataset.name"
    page = (PROJECT / "docs" / "your-images.md").read_text()
    missing = [n for n in BENCHMARKS if f"`{n}`" not in page]
    assert not missing, f"docs/your-images.md: name {', '.join(missing)} (in backticks) in the benchmarks paragraph"


def test_minus_one_in_a_manifest_means_no_label(tmp_path):
    """The probe: -1 for "unknown" became a class (scored, and zero-shot used "-1" as a class name)."""
    make_image_tree(tmp_path / "images", classes=2, per_class=2)
    rows = ["images/class_0/img_0.png", "images/class_0/img_1.png", "images/class_1/img_0.png",
            "images/class_1/img_1.png"]
    pd.DataFrame({"path": rows, "label": [0, -1, 3, 3]}).to_csv(tmp_path / "m.csv", index=False)
    split = load_split("manifest", "", tmp_path / "m.csv", "all")
    assert split.labels.tolist() == [0, -1, 1, 1] and split.class_names == ["0", "3"]
    pd.DataFrame({"path": rows, "label": ["cat", "-1", "dog", ""]}).to_csv(tmp_path / "m.csv", index=False)
    split = load_split("manifest", "", tmp_path / "m.csv", "all")
    assert split.labels.tolist() == [0, -1, 1, -1] and split.class_names == ["cat", "dog"]
    pd.DataFrame({"path": rows, "label": [-1] * 4}).to_csv(tmp_path / "m.csv", index=False)
    assert load_split("manifest", "", tmp_path / "m.csv", "all").labels is None  # no label at all
    pd.DataFrame({"path": rows, "label": [0, -2, 1, 1]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(LaicError, match=r"m.csv: row 3 has label -2; class ids are >= 0, and -1 \(or an empty "
                                        r"cell\) means the image has no label$"):
        load_split("manifest", "", tmp_path / "m.csv", "all")


def test_a_manifest_row_naming_a_folder_says_so(tmp_path):
    """The probe: a row naming a folder said "does not exist"."""
    make_image_tree(tmp_path / "images", classes=1, per_class=1)
    pd.DataFrame({"path": ["images/class_0/img_0.png", "images/class_0"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(LaicError, match=r"m.csv: row 3 names images/class_0, which is a folder, not an image; list "
                                        r"image files, one per row \(or, for a folder, set dataset.kind: imagefolder\)$"):
        load_split("manifest", "", tmp_path / "m.csv", "all")


def test_images_given_to_a_command_are_a_folder_or_one_file(tmp_path):
    """predict's input: one image file works; the errors name the path given, not dataset.root."""
    from laic_core.data.datasets import images_at

    make_image_tree(tmp_path / "images", classes=2, per_class=2)
    one = images_at(tmp_path / "images" / "class_1" / "img_0.png")
    assert len(one) == 1 and one.sources() == [str(tmp_path / "images" / "class_1" / "img_0.png")]
    assert len(images_at(tmp_path / "images")) == 4
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(LaicError, match=r"docs: no images found .*ignored 1 other file\(s\)\); give a folder that "
                                        r"holds images, or an image file$") as err:
        images_at(tmp_path / "docs")
    assert "dataset.root" not in str(err.value)
    with pytest.raises(LaicError, match=r"a.txt: not an image file"):
        images_at(tmp_path / "docs" / "a.txt")
    with pytest.raises(LaicError, match=r"nowhere: no such folder or image file"):
        images_at(tmp_path / "nowhere")
