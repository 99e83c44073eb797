"""export: the images of each cluster in a folder of their own, never touching the sources."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from laic_core.artifacts import save_json, save_parquet
from laic_core.data.export import folder_names, plan_export, safe_name, write_export
from laic_core.errors import LaicError
from tests.conftest import make_image_tree


def test_names_are_safe_on_every_file_system():
    assert safe_name('golden retriever: "best" dog?') == "golden_retriever_best_dog"
    assert safe_name("a/b\\c|d*e<f>g") == "a_b_c_d_e_f_g"
    assert safe_name("  ..hidden.  ") == "hidden"
    assert safe_name("CON") == "_CON" and safe_name("com1.txt") == "_com1.txt" and safe_name("console") == "console"
    assert safe_name("rock & roll; $HOME `x`") == "rock_roll_HOME_x"
    assert safe_name("café") == "caf\u00e9" and safe_name("cafe\u0301") == "caf\u00e9"  # one Unicode form
    assert len(safe_name("x" * 500)) == 60 and safe_name("\t\n") == ""
    assert folder_names([0, 12, -1, 3], ["dogs", "", "junk", "a b"]) == {
        0: "00-dogs", 12: "12", -1: "junk", 3: "03-a_b"}


def test_plan_puts_each_image_in_its_clusters_folder_under_a_unique_name():
    sources = ["/data/a/x.jpg", "/data/b/x.jpg", "/data/c/X.JPG", "/data/d/y.png", "cifar10:test[7]", "/e/z"]
    plan = plan_export(sources, [1, 1, 1, 0, 0, -1], ["cats", "cats", "cats", "dogs?", "dogs?", "junk"])
    assert plan["path"].tolist() == ["1-cats/x.jpg", "1-cats/x-1.jpg", "1-cats/X-2.JPG", "0-dogs/y.png",
                                     "0-dogs/cifar10_test_7.png", "junk/z"]
    assert plan["row"].tolist() == list(range(6)) and plan["name"].tolist()[3] == "dogs?"
    with pytest.raises(LaicError, match="one of each per image"):
        plan_export(sources, [0, 1], ["a", "b"])


@pytest.fixture
def images(tmp_path) -> tuple[list[str], dict[str, tuple[bytes, int]]]:
    """Twelve image files (absolute paths) and each one's bytes and modification time."""
    root = make_image_tree(tmp_path / "photos", classes=3, per_class=4)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    return paths, {p: (Path(p).read_bytes(), os.stat(p).st_mtime_ns) for p in paths}


def _unchanged(before: dict[str, tuple[bytes, int]]) -> bool:
    return all(Path(p).read_bytes() == data and os.stat(p).st_mtime_ns == mtime for p, (data, mtime) in before.items())


@pytest.mark.parametrize("mode", ["symlink", "copy", "hardlink"])
def test_every_mode_lays_out_the_plan_and_leaves_the_sources_alone(tmp_path, images, mode):
    paths, before = images
    clusters = np.arange(len(paths)) % 3
    plan = plan_export(paths, clusters, [["red", "green", "blue"][k] for k in clusters])
    done = write_export(plan, tmp_path / "out", mode=mode, progress=False)
    assert done["images"] == 12 and done["folders"] == 3
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["0-red", "1-green", "2-blue", "clusters.csv"]
    for path, source in zip(plan["path"], plan["source"]):
        made = out / path
        assert made.read_bytes() == Path(source).read_bytes()
        assert made.is_symlink() == (mode == "symlink")
        if mode == "symlink":
            assert os.readlink(made) == source  # absolute: the export folder can move
        if mode == "hardlink":
            assert os.path.samefile(made, source)
    listed = pd.read_csv(out / "clusters.csv")
    assert listed["path"].tolist() == plan["path"].tolist() and listed["cluster"].tolist() == clusters.tolist()
    assert not list(tmp_path.glob(".out.partial"))  # built beside, then renamed
    assert _unchanged(before)


def test_refuses_files_non_empty_folders_and_folders_holding_the_sources(tmp_path, images):
    paths, before = images
    plan = plan_export(paths, np.zeros(len(paths), int), ["all"] * len(paths))
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(LaicError, match="a_file is a file; give the folder"):
        write_export(plan, tmp_path / "a_file", progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(LaicError, match="busy is not empty.*--force"):
        write_export(plan, tmp_path / "busy", progress=False)
    with pytest.raises(LaicError, match="holds source images"):
        write_export(plan, tmp_path / "photos", force=True, progress=False)
    with pytest.raises(LaicError, match="--mode 'move'"):
        write_export(plan, tmp_path / "new", mode="move", progress=False)
    (tmp_path / "empty").mkdir()
    write_export(plan, tmp_path / "empty", progress=False)  # an empty folder is fine
    assert (tmp_path / "empty" / "clusters.csv").is_file()
    assert _unchanged(before)


def test_force_replaces_an_earlier_export_and_keeps_everything_else(tmp_path, images):
    paths, before = images
    out = tmp_path / "out"
    write_export(plan_export(paths, np.arange(12) % 2, ["a", "b"] * 6), out, progress=False)
    (out / "notes.txt").write_text("mine")
    plan = plan_export(paths, np.arange(12) % 3, ["x", "y", "z"] * 4)
    write_export(plan, out, mode="copy", force=True, progress=False)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() or p.is_symlink())
    assert files == sorted(plan["path"].tolist() + ["clusters.csv", "notes.txt"])  # nothing of the first export
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert _unchanged(before)
    (out / "9-q").mkdir()
    clash = plan_export(paths[:1], [9], ["q"])
    (out / "9-q" / Path(paths[0]).name).write_text("not an export's")
    with pytest.raises(LaicError, match="taken by other files"):
        write_export(clash, out, force=True, progress=False)


def test_images_that_are_not_files_are_written_as_png(tmp_path):
    colours = [(255, 0, 0), (0, 0, 255)]
    plan = plan_export(["toy:test[0]", "toy:test[1]"], [0, 1], ["r", "b"])
    write_export(plan, tmp_path / "out", mode="symlink", load_image=lambda i: Image.new("RGB", (5, 5), colours[i]),
                 progress=False)
    for path, colour in zip(plan["path"], colours):
        with Image.open(tmp_path / "out" / path) as img:
            assert img.format == "PNG" and img.getpixel((2, 2)) == colour


# ------------------------------------------------------------------ the command


def _project(root: Path, n: int, K: int = 10) -> pd.DataFrame:
    """A project whose per-image table assigns n image files to K clusters of ours (and clip_kmeans)."""
    import yaml

    tree = root / "images"
    tree.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sources = []
    for i in range(n):
        path = tree / f"c{i % 7}" / f"img_{i:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path, quality=90)
        sources.append(str(path.relative_to(root)))
    ours = rng.integers(0, K, n)
    table = pd.DataFrame({"row": np.arange(n), "source": sources, "clip_kmeans": rng.integers(0, K, n), "ours": ours,
                          "ours_name": [f"name {k}" for k in ours], "ours_confidence": rng.random(n)})
    save_parquet(root / "data/evaluate/assignments.parquet", table, {"corrections": {}})
    save_json(root / "data/centers/names.json", [{"cluster": k, "name": f"name {k}"} for k in range(K)])
    (root / "params.yaml").write_text(yaml.safe_dump({"dataset": {
        "kind": "imagefolder", "root": "images", "fit_split": "all", "eval_split": "all", "num_clusters": K}}))
    return table


def test_export_of_a_thousand_images_takes_seconds_and_matches_the_table(tmp_path, monkeypatch):
    from stages.export import main as export

    monkeypatch.chdir(tmp_path)
    table = _project(tmp_path, 1000)
    for mode in ("symlink", "copy"):
        start = time.perf_counter()
        export(Path(f"out_{mode}"), "ours", mode, False, Path("params.yaml"))
        assert time.perf_counter() - start < 20, "1,000 images should take seconds"
        # every folder holds exactly the images the table puts in that cluster
        found = {}
        for folder in Path(f"out_{mode}").iterdir():
            if folder.is_dir():
                for f in folder.iterdir():
                    found[f.name] = folder.name
        assert len(found) == 1000
        expected = {Path(s).name: f"{k}-name_{k}" for s, k in zip(table["source"], table["ours"])}
        assert found == expected
    export(Path("by_kmeans"), "clip_kmeans", "symlink", False, Path("params.yaml"))
    assert sorted(p.name for p in Path("by_kmeans").iterdir()) == [str(k) for k in range(10)] + ["clusters.csv"]


def _evaluated(table: pd.DataFrame, K: int) -> pd.DataFrame:
    """The per-image table as evaluate writes it: clusters.yaml resolved against its clusters of ours."""
    from laic_core.scoring.corrections import corrected_labels, corrections_record
    from stages.corrections import resolve_run

    fixes = resolve_run(table["source"].tolist(), {"ours": table["ours"].to_numpy()}, {"ours": K})
    fix = fixes.corrections.get("ours")
    if fix:
        table["ours_corrected"] = fixed = corrected_labels(table["ours"].to_numpy(), fix, K)
        table["ours_name"] = [f"name {k}" if k >= 0 else "junk" for k in fixed]  # as evaluate names them
    save_parquet("data/evaluate/assignments.parquet", table, {"corrections": corrections_record(fixes.corrections),
                                                              **fixes.meta()})
    return table


def test_export_follows_the_corrections_and_refuses_a_file_edited_since(tmp_path, monkeypatch):
    from stages.export import main as export

    monkeypatch.chdir(tmp_path)
    table = _project(tmp_path, 60, K=4)
    Path("clusters.yaml").write_text("- {merge: [1, 3]}\n- {junk: 2}\n")
    _evaluated(table, K=4)
    fixed = np.where(table["ours"] == 3, 1, np.where(table["ours"] == 2, -1, table["ours"]))
    export(Path("out"), "ours", "symlink", False, Path("params.yaml"))
    listed = pd.read_csv("out/clusters.csv")
    assert listed["cluster"].tolist() == fixed.tolist()
    assert {p.split("/")[0] for p in listed["path"]} == {"0-name_0", "1-name_1", "junk"}
    Path("clusters.yaml").write_text("- {merge: [1, 3]}\n")  # edited, no `dvc repro` since
    with pytest.raises(LaicError, match=r"clusters.yaml changed since .*assignments.parquet.*dvc repro"):
        export(Path("out2"), "ours", "symlink", False, Path("params.yaml"))
    with pytest.raises(LaicError, match=r"--method 'kmeans'.*it has clip_kmeans, ours"):
        export(Path("out2"), "kmeans", "symlink", False, Path("params.yaml"))
    Path("a_file").write_text("")
    with pytest.raises(LaicError, match="a_file is a file"):
        export(Path("a_file"), "ours", "symlink", False, Path("params.yaml"))
    assert not Path("out2").exists()


# ------------------------------------------------------------------ the probes


def test_export_refuses_a_folder_inside_the_images_being_clustered(tmp_path, monkeypatch):
    from stages.export import main as export

    monkeypatch.chdir(tmp_path)
    _project(tmp_path, 20)
    for out in ("images/c0/exported", "images/new", "images/../images/x"):
        with pytest.raises(LaicError, match=rf"^{re.escape(out)} is inside images, the images being clustered "
                                            r"\(dataset.root in params.yaml\): the next `dvc repro` would cluster"):
            export(Path(out), "ours", "symlink", False, Path("params.yaml"))
    assert sorted(p.name for p in Path("images/c0").iterdir() if not p.name.endswith(".jpg")) == []
    export(Path("images_exported"), "ours", "symlink", False, Path("params.yaml"))  # beside it is fine


def test_a_folder_that_cannot_be_made_is_one_line_and_leaves_nothing_behind(tmp_path, images, monkeypatch):
    import errno

    paths, _ = images
    plan = plan_export(paths, np.zeros(len(paths), int), ["all"] * len(paths))
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    with pytest.raises(LaicError, match=r"^cannot create the folder .*params.yaml/sub \(.*params.yaml is a file\); "
                                        r"export into a folder you can write$") as err:
        write_export(plan, tmp_path / "params.yaml" / "sub", progress=False)
    assert err.value.__suppress_context__
    with pytest.raises(LaicError, match=r"^cannot create the folder /proc/laic_x \("):
        write_export(plan, Path("/proc/laic_x"), progress=False)

    def hidden() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))

    # a refusal half-way (hard links across file systems, an image gone) leaves no hidden .partial
    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    with monkeypatch.context() as patch:
        patch.setattr(os, "link", cross_device)
        with pytest.raises(LaicError, match="cannot hard-link .* hard links need one file system"):
            write_export(plan, tmp_path / "out", mode="hardlink", progress=False)
    assert hidden() == [] and not (tmp_path / "out").exists()
    gone = plan_export(paths + [str(tmp_path / "gone.png")], np.zeros(len(paths) + 1, int), ["all"] * (len(paths) + 1))
    with pytest.raises(LaicError, match="gone.png: no such image file"):
        write_export(gone, tmp_path / "out", progress=False)
    assert hidden() == [] and not (tmp_path / "out").exists()
    # ... and with --force, the earlier export stays as it was
    write_export(plan, tmp_path / "out", progress=False)
    before = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "out").rglob("*"))
    with pytest.raises(LaicError, match="gone.png: no such image file"):
        write_export(gone, tmp_path / "out", force=True, progress=False)
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "out").rglob("*")) == before
    assert hidden() == []


def test_force_removes_the_folders_of_the_earlier_export(tmp_path, images):
    paths, _ = images
    out = tmp_path / "out"
    write_export(plan_export(paths, np.arange(12) % 3, ["a", "b", "c"] * 4), out, progress=False)
    (out / "2-c" / "mine.txt").write_text("a person's file")  # kept, and so its folder
    write_export(plan_export(paths, np.arange(12) % 2 * 4, ["x", "y"] * 6), out, force=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["0-x", "2-c", "4-y", "clusters.csv"]
    assert [p.name for p in (out / "2-c").iterdir()] == ["mine.txt"]
