"""The validate stage: every setting checked on every run; listings that change only with the inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
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
    Path("ckpt.pt").write_bytes(b"a" * 64)
    edit_params("model", pretrained="ckpt.pt")
    fourth = validate()
    Path("ckpt.pt").write_bytes(b"b" * 64)
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
