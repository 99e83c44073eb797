"""embed on Ray Data: same features as the single-process path, fault tolerance, resumption.

The tests marked `ray` start one local Ray instance with two workers for the
whole session (seconds to start, seconds per pipeline for the replicas to
load torch), so they are `slow` too. The others are fast and need no Ray.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from laic_core.artifacts import ChunkedArray, load_parquet_meta
from laic_core.config import params_from_dict
from laic_core.data.ray_embed import local_cpus, plan_blocks
from laic_core.errors import LaicError
from tests.conftest import make_image_tree


def write_params(folder: Path, config: Path, **embed) -> Path:
    params = {
        "dataset": {"kind": "imagefolder", "root": "images", "fit_split": "all",
                    "eval_split": "all", "num_clusters": 3},
        "model": {"name": str(config), "pretrained": "none", "device": "cpu", "batch_size": 5},
        "embed": {"num_workers": 0, "chunk_size": 4, "ray_workers": 2, **embed},
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_embed():
    from stages.embed import main

    main(Path("params.yaml"))


def clear_features():
    for f in Path("data/features").iterdir():
        if f.is_dir():
            for g in f.iterdir():
                g.unlink()
            f.rmdir()
        else:
            f.unlink()


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_config):
    """An image tree of 21 images (6 chunks of 4 rows, batches of 5) and params for the tiny model."""
    monkeypatch.chdir(tmp_path)
    make_image_tree(tmp_path / "images", classes=3, per_class=7)
    write_params(tmp_path, tiny_config)
    return tmp_path


def set_embed(**embed):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["embed"].update(embed)
    Path("params.yaml").write_text(yaml.safe_dump(params))


# ---------------------------------------------------------------- fast, no Ray


def test_blocks_cover_exactly_the_rows_of_missing_chunks(tmp_path):
    out = ChunkedArray(tmp_path / "x.npy", 11, 4, key="k")  # chunks: 0-3, 4-7, 8-10
    out.write_chunk(1, np.zeros((4, 2), np.float32))
    rows = out.missing_rows()
    assert rows == [0, 1, 2, 3, 8, 9, 10]
    blocks = plan_blocks(rows, 3)
    assert [b.tolist() for b in blocks] == [[0, 1, 2], [3, 8, 9], [10]]
    assert all(b.dtype == np.int64 for b in blocks)
    assert plan_blocks([], 3) == []
    with pytest.raises(ValueError):
        plan_blocks(rows, 0)


def test_a_local_instance_always_has_a_cpu_for_decoding():
    for workers in (1, 2, 64):
        assert local_cpus(workers) >= workers + 1


def test_engine_params_are_validated():
    embed = params_from_dict({"embed": {"engine": "ray", "ray_address": "ray://head:10001",
                                        "ray_workers": 4}}).embed
    assert (embed.engine, embed.ray_address, embed.ray_workers) == ("ray", "ray://head:10001", 4)
    assert params_from_dict({}).embed.engine == "local"
    for address in ("", "local", "auto", "10.0.0.5:6379"):
        assert params_from_dict({"embed": {"ray_address": address}}).embed.ray_address == address
    with pytest.raises(LaicError) as err:
        params_from_dict({"embed": {"engine": "spark", "ray_address": "head", "ray_workers": 0}})
    text = str(err.value)
    assert "3 invalid" in text
    assert "embed.engine: 'spark'" in text
    assert "embed.ray_address: 'head'" in text and "ray://" in text
    assert "embed.ray_workers: 0" in text


def test_engine_ray_without_ray_says_how_to_install(project, monkeypatch):
    set_embed(engine="ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(LaicError) as err:
        run_embed()
    assert 'pip install -e ".[ray]"' in str(err.value)
    assert "embed.engine: local" in str(err.value)
    assert not Path("data/features/fit.npy").exists()


def test_errors_raised_on_workers_are_found_inside_rays_wrappers():
    from laic_core.data.ray_embed import _laic_error_inside

    class Wrapper(Exception):
        def __init__(self, cause):
            super().__init__("task failed")
            self.cause = cause

    assert _laic_error_inside(Wrapper(LaicError("model.pretrained: no such file"))) == \
        "model.pretrained: no such file"
    try:
        try:
            raise LaicError("dataset.root: gone")
        except LaicError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert _laic_error_inside(outer) == "dataset.root: gone"
    text_only = RuntimeError("actor died in its creation task\n  ...\n"
                             "laic_core.errors.LaicError: model.pretrained: checkpoint /x.pt does not exist\n")
    assert _laic_error_inside(text_only) == "model.pretrained: checkpoint /x.pt does not exist"
    assert _laic_error_inside(RuntimeError("out of memory")) is None


# ---------------------------------------------------------------- on a local Ray instance


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance with two model replicas' worth of CPUs for every test."""
    pytest.importorskip("ray")
    from laic_core.data.ray_embed import ray_session

    with ray_session("local", workers=2):
        yield


def local_reference(skip: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
    """The single-process engine's features and metadata for the project (then cleared)."""
    set_embed(engine="local", on_error="skip" if skip else "fail")
    run_embed()
    feats, meta = np.load("data/features/fit.npy"), pd.read_parquet("data/features/fit.parquet")
    clear_features()
    return feats, meta


@pytest.mark.ray
@pytest.mark.slow
def test_ray_stage_gives_the_single_process_features(project, ray_local):
    (project / "images" / "class_1" / "broken.png").write_bytes(b"")  # 22 files, one unreadable
    ref, ref_meta = local_reference(skip=True)
    assert ref.shape == (21, 32)

    set_embed(engine="ray", on_error="skip")
    run_embed()
    feats = np.load("data/features/fit.npy")
    meta = pd.read_parquet("data/features/fit.parquet")
    assert feats.shape == ref.shape and feats.dtype == np.float32
    np.testing.assert_allclose(feats, ref, rtol=0, atol=1e-5)
    pd.testing.assert_frame_equal(meta, ref_meta)
    skipped = load_parquet_meta("data/features/fit.parquet")["skipped"]
    assert len(skipped) == 1 and skipped[0].endswith("broken.png")
    np.testing.assert_array_equal(np.load("data/features/eval.npy"), feats)
    assert not list(Path("data/features").glob("*.partial"))


@pytest.mark.ray
@pytest.mark.slow
def test_ray_unreadable_image_fails_with_its_name(project, ray_local):
    (project / "images" / "class_2" / "notes.jpg").write_bytes(b"not a jpeg at all")
    set_embed(engine="ray")
    with pytest.raises(LaicError) as err:
        run_embed()
    assert "notes.jpg" in str(err.value) and "embed.on_error: skip" in str(err.value)
    assert not Path("data/features/fit.npy").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_its_batch_redone(project, ray_local, tiny_bundle):
    from PIL import Image

    from laic_core.data.datasets import TorchvisionSplit
    from laic_core.data.encode import encode_images
    from laic_core.data.ray_embed import ImageEncoder, encode_images_ray

    # An in-memory dataset (as torchvision's CIFAR is): the split itself travels to the workers.
    rng = np.random.default_rng(3)
    images = [(Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)), 0) for _ in range(21)]
    split = TorchvisionSplit("memory", "test", images, None, None)
    ref_out = ChunkedArray(project / "ref.npy", len(split), 4, key="k")
    encode_images(tiny_bundle, split, ref_out, batch_size=5, num_workers=0)
    ref = ref_out.finalize()

    marker = project / "worker-died"

    class DiesOnce(ImageEncoder):
        """The first replica to get a batch kills its own process, mid-run, without cleanup."""

        def __call__(self, batch):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return super().__call__(batch)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)

    out = ChunkedArray(project / "ray.npy", len(split), 4, key="k")
    encode_images_ray(tiny_bundle, split, out, batch_size=5, workers=2, device="cpu",
                      encoder_cls=DiesOnce)
    assert marker.is_file(), "no worker died: the test tested nothing"
    assert int(marker.read_text()) != os.getpid()
    np.testing.assert_allclose(out.finalize(), ref, rtol=0, atol=1e-5)


@pytest.mark.ray
@pytest.mark.slow
def test_interrupted_runs_resume_across_engines(project, ray_local, monkeypatch):
    ref, _ = local_reference()
    original_write = ChunkedArray.write_chunk

    def interrupt_after(n, log):
        def write(self, i, rows):
            if len(log) == n:
                raise KeyboardInterrupt
            log.append(i)
            original_write(self, i, rows)
        return write

    # 1. The Ray driver is interrupted after two chunks: only complete chunks are on disk.
    set_embed(engine="ray")
    first: list[int] = []
    monkeypatch.setattr(ChunkedArray, "write_chunk", interrupt_after(2, first))
    with pytest.raises(KeyboardInterrupt):
        run_embed()
    assert not Path("data/features/fit.npy").exists()
    partial = Path("data/features/fit.npy.partial")
    assert sorted(int(p.stem.split("_")[1]) for p in partial.glob("chunk_*.npy")) == sorted(first)
    kept = {i: np.load(partial / f"chunk_{i:06d}.npy") for i in first}

    # 2. The single-process engine finishes it, encoding only the other chunks.
    set_embed(engine="local")
    second: list[int] = []
    monkeypatch.setattr(ChunkedArray, "write_chunk", interrupt_after(99, second))
    run_embed()
    assert sorted(second) == sorted(set(range(6)) - set(first))
    resumed = np.load("data/features/fit.npy")
    for i, rows in kept.items():
        np.testing.assert_array_equal(resumed[i * 4:(i + 1) * 4], rows)  # the very bytes
    np.testing.assert_allclose(resumed, ref, rtol=0, atol=1e-5)

    # 3. And the other way round: a single-process run cut short, finished on Ray.
    clear_features()
    third: list[int] = []
    monkeypatch.setattr(ChunkedArray, "write_chunk", interrupt_after(3, third))
    with pytest.raises(KeyboardInterrupt):
        run_embed()
    assert third == [0, 1, 2]
    set_embed(engine="ray")
    fourth: list[int] = []
    monkeypatch.setattr(ChunkedArray, "write_chunk", interrupt_after(99, fourth))
    run_embed()
    assert sorted(fourth) == [3, 4, 5]
    np.testing.assert_allclose(np.load("data/features/fit.npy"), ref, rtol=0, atol=1e-5)
