"""The validate stage: every setting checked on every run; listings that change only with the inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from laic_core.errors import LaicError
from tests.conftest import make_image_tree

LISTINGS = [Path("data/listing") / f"{name}.json" for name in ("dataset", "vocab", "model")]


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_config):
    monkeypatch.chdir(tmp_path)
    make_image_tree(tmp_path / "images", classes=2, per_class=3)
    Path("nouns.txt").write_text("dog\ncat\n")
    write_params(dataset={"kind": "imagefolder", "root": "images", "fit_split": "all", "eval_split": "all",
                          "num_clusters": 2},
                 model={"name": str(tiny_config), "pretrained": "none"}, vocab={"source": "nouns.txt"})
    return tmp_path


def write_params(**sections) -> None:
    Path("params.yaml").write_text(yaml.safe_dump(sections))


def edit_params(section: str, **values) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params.setdefault(section, {}).update(values)
    Path("params.yaml").write_text(yaml.safe_dump(params))


def validate() -> dict[Path, bytes]:
    from stages.validate import main

    main(Path("params.yaml"))
    return {path: path.read_bytes() for path in LISTINGS}


def changed(before: dict[Path, bytes], after: dict[Path, bytes]) -> set[str]:
    return {path.stem for path in before if before[path] != after[path]}


def test_unknown_keys_fail_even_where_no_stage_reads_them(project):
    edit_params("model", devcie="cpu")
    edit_params("embed", num_worker=2)
    edit_params("sed", x=1)
    with pytest.raises(LaicError) as err:
        validate()
    message = str(err.value)
    assert "3 invalid setting(s)" in message
    assert "model.devcie: unknown key" in message and "embed.num_worker: unknown key" in message
    assert "sed: must be a section" in message or "sed: unknown key" in message


def test_listings_change_only_when_their_inputs_do(project):
    first = validate()
    assert validate() == first  # nothing changed: byte-identical, so nothing downstream reruns
    # An image replaced in place (same name): only the dataset listing changes.
    (project / "images" / "class_0" / "img_0.png").write_bytes(
        (project / "images" / "class_1" / "img_0.png").read_bytes())
    second = validate()
    assert changed(first, second) == {"dataset"}
    # The noun file edited in place.
    Path("nouns.txt").write_text("dog\ncat\ncar\n")
    third = validate()
    assert changed(second, third) == {"vocab"}
    # A checkpoint replaced in place at the same path (same size, new content).
    torch.save({"w": torch.zeros(16)}, "ckpt.pt")
    edit_params("model", pretrained="ckpt.pt")
    fourth = validate()
    size = os.path.getsize("ckpt.pt")
    torch.save({"w": torch.ones(16)}, "ckpt.pt")
    assert os.path.getsize("ckpt.pt") == size
    os.utime("ckpt.pt", ns=(0, 10**18))
    assert changed(fourth, validate()) == {"model"}


def test_manifest_edited_in_place_changes_the_listing(project):
    rows = pd.DataFrame({"path": ["images/class_0/img_0.png", "images/class_1/img_0.png",
                                  "images/class_1/img_1.png"], "label": ["a", "b", "b"]})
    rows.to_csv("m.csv", index=False)
    edit_params("dataset", kind="manifest", root="m.csv")
    first = validate()
    rows.assign(label=["b", "a", "a"]).to_csv("m.csv", index=False)  # same files, labels swapped
    assert changed(first, validate()) == {"dataset"}
    rows.iloc[:2].to_csv("m.csv", index=False)  # one image fewer
    assert changed(first, validate()) == {"dataset"}


def test_dataset_problems_stop_the_run_at_the_first_stage(project):
    (project / "images" / "class_9").symlink_to(project / "unmounted")
    with pytest.raises(LaicError, match=r"broken symbolic link.*class_9"):
        validate()


def test_a_file_as_the_image_folder_is_one_line_naming_the_kind(project):
    """The probe: dataset.root a CSV file while kind is imagefolder gave a NotADirectoryError traceback."""
    pd.DataFrame({"path": ["images/class_0/img_0.png"]}).to_csv("images.csv", index=False)
    edit_params("dataset", root="images.csv")
    with pytest.raises(LaicError, match=r"^dataset.root: images.csv is a file, not a folder of images; "
                                        r"for a list of images set dataset.kind: manifest$"):
        validate()


def test_more_clusters_than_images_stops_validate_before_embed(project):
    edit_params("dataset", num_clusters=6)
    validate()  # as many clusters as images: allowed here (centers says why it cannot train)
    edit_params("dataset", num_clusters=7)
    with pytest.raises(LaicError, match=r"dataset.num_clusters: K=7 is larger than the 6 fit images"):
        validate()


def test_a_checkpoint_cut_short_stops_validate_naming_it(project):
    torch.save({"w": torch.zeros(64)}, "ckpt.pt")
    data = Path("ckpt.pt").read_bytes()
    Path("ckpt.pt").write_bytes(data[:len(data) // 2])
    edit_params("model", pretrained="ckpt.pt")
    with pytest.raises(LaicError, match=r"^model.pretrained: ckpt.pt is not a complete checkpoint \(a zip archive of "
                                        r"\d+ bytes whose end is missing"):
        validate()


def _replace_keeping_size_and_mtime(path: Path, other: Path) -> None:
    """What `cp -p other path` or a sync tool does: new bytes, the same size and modification time."""
    st = path.stat()
    data = other.read_bytes()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_content_listing_sees_an_image_replaced_with_its_size_and_mtime_kept(project, monkeypatch):
    """The probe: such a replacement left `embed` skipped (the listing trusts size and mtime)."""
    from PIL import Image

    from laic_core import provenance

    a, b = project / "images" / "class_0" / "img_0.png", project / "images" / "class_0" / "img_1.png"
    Image.new("RGB", (16, 16), "red").save(a, format="BMP")  # uncompressed: the same size whatever the colour
    Image.new("RGB", (16, 16), "blue").save(b, format="BMP")
    assert a.stat().st_size == b.stat().st_size
    first = validate()
    _replace_keeping_size_and_mtime(a, b)
    assert changed(first, validate()) == set()  # stat: documented, not seen

    edit_params("dataset", listing="content")
    hashed = []
    real = provenance._sha256_of
    monkeypatch.setattr(provenance, "_sha256_of", lambda p: hashed.append(p) or real(p))
    content = validate()
    assert changed(first, content) == {"dataset"}  # a new mode: a new listing (embed reruns once)
    assert len(hashed) == 6
    hashed.clear()
    assert validate() == content and hashed == []  # digests reused while nothing changed
    Image.new("RGB", (16, 16), "green").save(b, format="BMP")
    _replace_keeping_size_and_mtime(a, b)
    assert changed(content, validate()) == {"dataset"}
    assert len(hashed) == 2  # only the two files written
    assert '"listing": "content"' in Path("data/listing/dataset.json").read_text()


def test_a_relative_root_missing_from_a_dvc_experiment_copy_says_why(tmp_path, monkeypatch, tiny_config):
    """The probe: `dvc exp run --queue` with dataset.root a git-ignored folder said "dataset.root:
    images does not exist" (it does, in the workspace: the queue's copy is made from git)."""
    import subprocess

    project = tmp_path / "project"
    make_image_tree(project / "images", classes=2, per_class=2)
    (project / "outside").mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / ".gitignore").write_text("/images/\n")
    copy = project / ".dvc" / "tmp" / "exps" / "tmp8x2k"  # where DVC makes the copy
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    write_params(dataset={"kind": "imagefolder", "root": "images", "fit_split": "all", "eval_split": "all",
                          "num_clusters": 2}, model={"name": str(tiny_config), "pretrained": "none"})
    with pytest.raises(LaicError) as err:
        validate()
    assert str(err.value) == (
        f"dataset.root: images does not exist in this experiment's copy of the project ({copy}): `dvc exp run "
        "--queue` (and --temp) runs each experiment in a copy made from git, and images is ignored by git "
        f"(.gitignore); set dataset.root in params.yaml to an absolute path ({project / 'images'}), track it "
        "(`dvc add images` and commit the `.dvc` file, or commit it to git), or run the experiment in the "
        "workspace (`dvc exp run` without --queue or --temp)")
    edit_params("dataset", root="outside")  # not ignored, not committed
    with pytest.raises(LaicError, match=r"and outside is not committed to git; set dataset.root in params.yaml to "
                                        rf"an absolute path \({project / 'outside'}\), track it"):
        validate()
    edit_params("dataset", root="typo")  # in neither: the usual message
    with pytest.raises(LaicError, match=r"^dataset.root: typo does not exist; point it at your image folder$"):
        validate()
    edit_params("dataset", root=str(project / "images"))  # what the message says to do
    validate()
