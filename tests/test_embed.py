"""The embed stage: shapes, order, determinism, resumption and bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from laic_core.artifacts import ChunkedArray, load_parquet_meta
from laic_core.data.images import to_rgb
from laic_core.errors import LaicError
from tests.conftest import make_image_tree


def write_params(folder: Path, config: Path, **dataset) -> Path:
    params = {
        "dataset": {"kind": "imagefolder", "root": "images", "fit_split": "all",
                    "eval_split": "all", "num_clusters": 3, **dataset},
        "model": {"name": str(config), "pretrained": "none", "device": "cpu", "batch_size": 5},
        "embed": {"num_workers": 0, "chunk_size": 4},
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_config):
    """A working folder with an image tree and params for the tiny model."""
    monkeypatch.chdir(tmp_path)
    make_image_tree(tmp_path / "images", classes=3, per_class=5)
    write_params(tmp_path, tiny_config)
    return tmp_path


def run_embed():
    from stages.embed import main

    main(Path("params.yaml"))


def test_embed_shapes_norms_order_and_determinism(project, tiny_bundle):
    run_embed()
    feats = np.load("data/features/fit.npy")
    meta = pd.read_parquet("data/features/fit.parquet")
    assert feats.shape == (15, 32) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert list(meta["row"]) == list(range(15))
    assert list(meta["label"]) == [0] * 5 + [1] * 5 + [2] * 5
    # Row i is the embedding of the file named in row i of the metadata.
    for i in (0, 7, 14):
        img = tiny_bundle.preprocess(to_rgb(Image.open(meta["source"][i])))[None]
        with torch.inference_mode():
            ref = torch.nn.functional.normalize(tiny_bundle.model.encode_image(img), dim=-1)
        np.testing.assert_allclose(feats[i], ref[0].numpy(), atol=1e-5)
    # fit == eval split: the eval files are the same rows.
    np.testing.assert_array_equal(np.load("data/features/eval.npy"), feats)
    # A second run gives identical output.
    run_embed()
    np.testing.assert_array_equal(np.load("data/features/fit.npy"), feats)
    assert not list(Path("data/features").glob("*.partial"))


def test_interrupted_embed_resumes_only_the_remainder(project, monkeypatch):
    run_embed()
    reference = np.load("data/features/fit.npy")
    for f in Path("data/features").iterdir():
        f.unlink()

    original_write = ChunkedArray.write_chunk
    written = []

    def crash_after_two(self, i, rows):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(i)
        original_write(self, i, rows)

    monkeypatch.setattr(ChunkedArray, "write_chunk", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_embed()
    # Nothing that looks complete was left behind.
    assert not Path("data/features/fit.npy").exists()
    assert written == [0, 1]

    monkeypatch.setattr(ChunkedArray, "write_chunk", original_write)
    from laic_core.data import images

    loaded = []
    original_load = images.FileSplit.load_image

    def counting_load(self, i):
        loaded.append(i)
        return original_load(self, i)

    monkeypatch.setattr(images.FileSplit, "load_image", counting_load)
    run_embed()
    # Chunks 0 and 1 (rows 0-7) were on disk; only rows 8-14 were encoded again.
    assert sorted(loaded) == list(range(8, 15))
    resumed = np.load("data/features/fit.npy")
    # The reused chunks are the very bytes written before the crash.
    np.testing.assert_array_equal(resumed[:8], reference[:8])
    # The remainder was encoded in other batches than the first run's; batched
    # matmuls may round differently in the last bit, so only a tolerance is guaranteed.
    np.testing.assert_allclose(resumed[8:], reference[8:], rtol=0, atol=1e-5)


def run_embed_command(monkeypatch, capsys) -> tuple[int, str]:
    """`python -m stages.embed` in this process: (exit code, what it printed on stderr)."""
    from stages import embed, runner

    monkeypatch.setattr("sys.argv", ["stages.embed"])
    monkeypatch.setattr(runner, "handle_interrupts", lambda: None)  # pytest keeps its own Ctrl-C
    with pytest.raises(SystemExit) as done:
        runner.run(embed.app, record_cost=False)
    return done.value.code, capsys.readouterr().err


def test_a_full_disk_is_one_line_and_the_run_resumes_exactly(project, monkeypatch, capsys):
    import errno

    real_save = np.save
    saved = []

    def disk_fills_after_two_chunks(fh, array, *args, **kwargs):
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(array.shape)
        real_save(fh, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", disk_fills_after_two_chunks)
    code, err = run_embed_command(monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert re.fullmatch(r"error: no space left on the device while writing "
                        r"data/features/fit.npy.partial/chunk_000002.npy \(it needs 512 bytes; .* free there\): "
                        r"free space and rerun to resume", line), line
    partial = Path("data/features/fit.npy.partial")
    assert sorted(p.name for p in partial.glob("*.npy")) == ["chunk_000000.npy", "chunk_000001.npy"]
    assert not list(partial.glob(".*"))  # no temporary file left beside them
    kept = np.concatenate([np.load(partial / f"chunk_00000{i}.npy") for i in (0, 1)])
    monkeypatch.setattr(np, "save", real_save)
    run_embed()  # resumes: the kept chunks are the first rows, as they were
    np.testing.assert_array_equal(np.load("data/features/fit.npy")[:8], kept)


def test_embed_stops_before_encoding_when_its_outputs_cannot_fit(project, monkeypatch):
    import shutil

    from laic_core.data import encode

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))
    monkeypatch.setattr(encode, "encode_images", lambda *a, **k: pytest.fail("encoded on a full disk"))
    with pytest.raises(LaicError, match=r"^data/features: embedding the 15 fit images needs about 3.8 KiB, "
                                        r"but only 100 bytes are free there; free space, then rerun$"):
        run_embed()


def test_stale_chunks_from_another_model_are_discarded(tmp_path):
    a = ChunkedArray(tmp_path / "x.npy", 10, 4, key="model-a")
    a.write_chunk(0, np.ones((4, 2), np.float32))
    assert a.missing() == [1, 2]
    b = ChunkedArray(tmp_path / "x.npy", 10, 4, key="model-b")
    assert b.missing() == [0, 1, 2]


def _bad_files():
    png = Path(__file__)  # any text file serves as a non-image
    return {
        "zero.png": b"",
        "notes.jpg": png.read_bytes()[:200],
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    }


@pytest.mark.parametrize("name", ["zero.png", "notes.jpg", "corrupt.png", "truncated.jpg"])
def test_unreadable_image_fails_with_its_name(project, name):
    target = project / "images" / "class_1" / name
    if name == "truncated.jpg":
        buf = project / "full.jpg"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf)
        target.write_bytes(buf.read_bytes()[:600])
    else:
        target.write_bytes(_bad_files()[name])
    with pytest.raises(LaicError) as err:
        run_embed()
    assert name in str(err.value)
    assert "embed.on_error: skip" in str(err.value)
    assert not Path("data/features/fit.npy").exists()


def test_every_unreadable_image_is_named_in_one_error(project):
    bad = [project / "images" / f"class_{c}" / f"bad_{c}.png" for c in (0, 1, 2)]
    for path in bad:
        path.write_bytes(b"")
    with pytest.raises(LaicError) as err:
        run_embed()
    message = str(err.value)
    assert message.startswith("cannot read 3 image(s)")
    assert all(str(path.relative_to(project)) in message for path in bad)
    assert "embed.on_error: skip" in message
    assert not Path("data/features/fit.npy").exists()


def test_many_unreadable_images_are_listed_then_counted(tiny_bundle, tmp_path):
    from laic_core.data.datasets import load_split
    from laic_core.data.encode import encode_images

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(25):
        (folder / f"broken_{i:02d}.jpg").write_bytes(b"not a jpeg")
    split = load_split("imagefolder", "", folder, "all")
    out = ChunkedArray(tmp_path / "f.npy", len(split), 8, key="k")
    with pytest.raises(LaicError) as err:
        encode_images(tiny_bundle, split, out, batch_size=4, num_workers=0, skip_hint="do X")
    message = str(err.value)
    assert message.startswith("cannot read 25 image(s)")
    assert "broken_19.jpg" in message and "broken_20.jpg" not in message
    assert "... and 5 more" in message and "or do X to record and skip" in message


def test_skip_records_unreadable_images_and_goes_on(project, tiny_config):
    (project / "images" / "class_0" / "zero.png").write_bytes(b"")
    write_params(project, tiny_config)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["embed"]["on_error"] = "skip"
    Path("params.yaml").write_text(yaml.safe_dump(params))
    run_embed()
    feats = np.load("data/features/fit.npy")
    meta = pd.read_parquet("data/features/fit.parquet")
    assert feats.shape[0] == len(meta) == 15
    assert np.isfinite(feats).all()
    skipped = load_parquet_meta("data/features/fit.parquet")["skipped"]
    assert len(skipped) == 1 and skipped[0].endswith("zero.png")
    assert not any(s.endswith("zero.png") for s in meta["source"])


def test_notes_on_the_tree_are_printed_and_recorded(project, capsys):
    (project / "images" / "class_0" / "img_0.png").rename(project / "images" / "stray.png")
    run_embed()
    meta = pd.read_parquet("data/features/fit.parquet")
    assert sorted(meta["label"].tolist()) == [-1] + [0] * 4 + [1] * 5 + [2] * 5
    notes = load_parquet_meta("data/features/fit.parquet")["notes"]
    assert len(notes) == 1 and "stray.png" in notes[0] and "label -1" in notes[0]
    assert "fit: note: 1 image(s) lie directly in" in capsys.readouterr().err


def test_unusual_modes_are_converted_not_rejected(project):
    folder = project / "images" / "class_2"
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8))
    rgb.convert("L").save(folder / "gray.png")
    rgb.convert("P").save(folder / "palette.png")
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    rgb.convert("RGBA").save(folder / "alpha.png")
    rgb.convert("LA").save(folder / "gray_alpha.png")
    Image.fromarray(rng.integers(0, 65535, (24, 24), np.uint16)).save(folder / "deep16.png")
    run_embed()
    meta = pd.read_parquet("data/features/fit.parquet")
    assert len(meta) == 21
    assert np.isfinite(np.load("data/features/fit.npy")).all()


def phone_photo(folder: Path, seed: int = 3) -> np.ndarray:
    """upright.jpg, and sideways.jpg: the same photo stored as a phone stores a portrait one (its
    pixels turned a quarter, EXIF Orientation 6 saying so). Returns the upright pixels."""
    rng = np.random.default_rng(seed)
    pixels = np.kron(rng.integers(0, 255, (6, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 48 x 32
    upright = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to display
    lossless = {"quality": 100, "subsampling": 0}
    upright.save(folder / "upright.jpg", **lossless)
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "sideways.jpg", exif=exif, **lossless)
    return pixels


def test_exif_orientation_is_applied_wherever_an_image_is_read(project):
    from laic_core.data.images import open_image
    from laic_core.views.gallery import load_thumbnails, source_loader

    folder = project / "images" / "class_0"
    pixels = phone_photo(folder)
    for name in ("upright.jpg", "sideways.jpg"):
        opened = np.asarray(open_image(folder / name), dtype=float)
        assert opened.shape == pixels.shape and np.abs(opened - pixels).mean() < 3
    run_embed()  # predict reads its folder through the same split
    sources = pd.read_parquet("data/features/fit.parquet")["source"].tolist()
    feats = np.load("data/features/fit.npy")
    up, side = (feats[sources.index(str(Path("images/class_0") / n))] for n in ("upright.jpg", "sideways.jpg"))
    assert float(up @ side) > 0.999
    thumbs = load_thumbnails(source_loader(sources), [sources.index(s) for s in sources if s.endswith(".jpg")])
    assert np.abs(np.asarray(thumbs[0], float) - np.asarray(thumbs[1], float)).mean() < 3


def test_a_huge_image_warning_names_its_file(tmp_path, monkeypatch):
    from laic_core.data.images import open_image

    Image.new("RGB", (40, 30)).save(tmp_path / "panorama.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,200 pixels: over the limit, under twice it
    with pytest.warns(Image.DecompressionBombWarning, match=r"panorama.png: Image size \(1200 pixels\)"):
        assert open_image(tmp_path / "panorama.png").size == (40, 30)


def test_to_rgb_rescales_16_bit_and_composites_alpha():
    deep = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    assert np.asarray(to_rgb(deep)).min() == 255
    half = Image.fromarray(np.full((2, 2), 32896, np.uint16))
    assert abs(int(np.asarray(to_rgb(half))[0, 0, 0]) - 128) <= 1
    clear = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert np.asarray(to_rgb(clear)).min() == 255  # transparent -> white background
    for mode in ("L", "P", "CMYK", "LA", "1"):
        assert to_rgb(Image.new(mode, (3, 3))).mode == "RGB"


def test_empty_folder_and_missing_root(tmp_path, monkeypatch, tiny_config):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "README.txt").write_text("not an image")
    write_params(tmp_path, tiny_config)
    with pytest.raises(LaicError, match=r"images: no images found.*ignored 1 other file"):
        run_embed()
    write_params(tmp_path, tiny_config, root="nowhere")
    with pytest.raises(LaicError, match=r"dataset.root: nowhere does not exist"):
        run_embed()


def test_unknown_dataset_name(tmp_path, monkeypatch, tiny_config):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_config, kind="torchvision", name="cifar11")
    with pytest.raises(LaicError, match=r"dataset.name: unknown dataset 'cifar11'.*cifar10"):
        run_embed()


def test_manifest_with_missing_path(project, tiny_config):
    rows = [{"path": "images/class_0/img_0.png", "label": "a"},
            {"path": "images/class_0/gone.png", "label": "b"}]
    pd.DataFrame(rows).to_csv(project / "manifest.csv", index=False)
    write_params(project, tiny_config, kind="manifest", root="manifest.csv")
    with pytest.raises(LaicError) as err:
        run_embed()
    assert "manifest.csv" in str(err.value) and "gone.png" in str(err.value) and "row 3" in str(err.value)


def test_features_and_noun_embeddings_record_the_model_that_made_them(project, tiny_config):
    from laic_core.provenance import check_same_model, model_identity
    from stages.vocab import main as vocab

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["vocab"] = {"source": "nouns.txt", "templates": ["a photo of a {}."]}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    Path("nouns.txt").write_text("dog\ncat\ncar\n")
    run_embed()
    vocab(Path("params.yaml"))
    prov = load_parquet_meta("data/features/fit.parquet")["provenance"]
    assert prov["embed_dim"] == 32 and "Resize" in prov["preprocess"] and prov["dtype"] == "torch.float32"
    assert prov["model"] == model_identity(str(tiny_config), "none")
    assert len(prov["model"]["config_sha256"]) == 64
    text = load_parquet_meta("data/vocab/nouns.parquet")["provenance"]
    assert text["model"] == prov["model"] and text["embed_dim"] == 32
    check_same_model(["data/features/fit.parquet", "data/features/eval.parquet", "data/vocab/nouns.parquet"],
                     model_identity(str(tiny_config), "none"))
    # and the dataset settings that chose the images (what choose_k checks params.yaml against)
    for role in ("fit", "eval"):
        assert load_parquet_meta(f"data/features/{role}.parquet")["dataset_settings"] == {
            "kind": "imagefolder", "name": "cifar10", "root": "images", "split": "all"}


def test_chunk_assembler_writes_only_complete_chunks_in_any_order(tmp_path):
    from laic_core.artifacts import ChunkAssembler

    out = ChunkedArray(tmp_path / "x.npy", 10, 4, key="k")  # chunks: rows 0-3, 4-7, 8-9
    out.write_chunk(1, np.full((4, 2), 7, np.float32))  # already on disk from an earlier run
    values = np.arange(20, dtype=np.float32).reshape(10, 2)
    asm = ChunkAssembler(out)
    assert asm.add([9, 0, 2], values[[9, 0, 2]]) == []
    assert asm.pending == [0, 2]
    assert asm.add([8, 5], values[[8, 5]]) == [2]  # row 5 belongs to a finished chunk: ignored
    assert asm.add([1, 1], values[[1, 1]]) == []  # a repeated row (a retried batch) counts once
    assert out.missing() == [0]
    assert asm.add([3], values[[3]]) == [0]
    assert asm.pending == [] and out.missing() == []
    np.testing.assert_array_equal(out.read_chunk(0), values[0:4])
    np.testing.assert_array_equal(out.read_chunk(1), np.full((4, 2), 7, np.float32))
    np.testing.assert_array_equal(out.read_chunk(2), values[8:10])
    with pytest.raises(ValueError):
        asm.add([0, 1], values[:1])


# ------------------------------------------------------------ file names that are not UTF-8; nothing readable


def test_a_file_name_that_is_not_utf8_is_kept_losslessly(project, tiny_config, monkeypatch, capsys):
    """The probe: `caf\\xe9.png` (Latin-1 bytes, as old cameras and zip files write them) gave a
    UnicodeEncodeError traceback in embed and predict."""
    import os

    from laic_core.data.export import plan_export, write_export
    from laic_core.data.images import open_image, source_file, source_parts

    raw = os.fsencode(project / "images" / "class_0") + b"/caf\xe9.png"
    os.rename(project / "images" / "class_0" / "img_0.png", raw)
    os.symlink(b"gone\xff.png", os.fsencode(project / "images" / "class_1") + b"/lien\xe9.png")  # broken, not UTF-8
    with pytest.raises(LaicError) as err:
        run_embed()
    message = str(err.value)
    assert "images/class_1/lien\\xe9.png: " in message and "broken symbolic link to gone" in message
    message.encode("utf-8")  # printable as it is: no lone surrogate left in it
    os.unlink(os.fsencode(project / "images" / "class_1") + b"/lien\xe9.png")

    code, err_text = run_embed_command(monkeypatch, capsys)
    assert code == 0, err_text
    sources = pd.read_parquet("data/features/fit.parquet")["source"].tolist()
    assert "images/class_0/caf\\xe9.png" in sources
    stored = "images/class_0/caf\\xe9.png"
    assert os.fsencode(source_file(stored)) == b"images/class_0/caf\xe9.png"  # the very file, read back
    assert source_parts(stored) == ("images/class_0", "caf\\xe9.png")
    assert open_image(stored).size == (20, 20)
    assert source_file("images/class_0/img_1.png") == "images/class_0/img_1.png"

    plan = plan_export(sources, np.zeros(len(sources), np.int64), ["all"] * len(sources))
    write_export(plan, project / "exported", progress=False)
    link = project / "exported" / plan["path"][sources.index(stored)]
    assert os.fsencode(os.readlink(link)).endswith(b"/images/class_0/caf\xe9.png")


def test_skip_with_no_readable_image_stops_embed(project, tiny_config, capsys):
    """The probe: `on_error: skip` with every image unreadable printed "encoded 5 images" and wrote
    empty features; `nouns` then failed on an empty array."""
    import shutil

    shutil.rmtree(project / "images")
    (project / "images").mkdir()
    for i in range(5):
        (project / "images" / f"bad_{i}.png").write_bytes(b"not a png")
    write_params(project, tiny_config, on_error=None)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["dataset"].pop("on_error")
    params["embed"]["on_error"] = "skip"
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(LaicError, match=r"^fit: none of the 5 images of images could be read \(embed.on_error: "
                                        r"skip skipped every one: images/bad_0.png, .*images/bad_4.png\); fix or "
                                        r"replace these files, or point dataset.root at your images$"):
        run_embed()
    assert "encoded 0 images, skipped 5 unreadable" in capsys.readouterr().err
    assert not Path("data/features/fit.parquet").exists() and not Path("data/features/fit.npy").exists()
    # Fewer readable images than clusters: stopped here too, with the count.
    Image.new("RGB", (20, 20), "red").save(project / "images" / "good_0.png")
    Image.new("RGB", (20, 20), "blue").save(project / "images" / "good_1.png")
    with pytest.raises(LaicError, match=r"^fit: only 2 of the 7 images of images could be read, fewer than "
                                        r"dataset.num_clusters: 3"):
        run_embed()


def test_a_stage_run_by_hand_checks_the_images_against_what_embed_read(project, monkeypatch):
    """The probe: an image deleted, then `python -m stages.evaluate` / `browse` by hand: rc 0, the
    per-image table still listed it. `dvc repro` sees it through the listing; by hand, the stage does."""
    from stages import browse, evaluate
    from stages.inputs import open_stage
    from stages.layout import FEATURES_META

    run_embed()
    open_stage("params.yaml", FEATURES_META)  # nothing changed: no complaint
    gone = project / "images" / "class_1" / "img_3.png"
    data = gone.read_bytes()
    gone.unlink()
    for stage in (evaluate, browse):
        with pytest.raises(LaicError, match=r"^data/features/(fit|eval).parquet: the images under images have "
                                            r"changed since embed read them \(1 gone: images/class_1/img_3.png\); "
                                            r"run `dvc repro`, which embeds them again and reruns what follows"):
            stage.main(Path("params.yaml"))
    (project / "images" / "class_1" / "new.png").write_bytes(data)
    with pytest.raises(LaicError, match=r"1 gone: images/class_1/img_3.png; 1 new: images/class_1/new.png\)"):
        open_stage("params.yaml", FEATURES_META)
    (project / "images" / "class_1" / "new.png").rename(gone)  # back, but with a new modification time
    with pytest.raises(LaicError, match=r"\(none gone or new: some were replaced in place, or their labels changed\)"):
        open_stage("params.yaml", FEATURES_META)
    monkeypatch.setenv("DVC_STAGE", "evaluate")  # under dvc repro, the listing has done this already
    open_stage("params.yaml", FEATURES_META)
