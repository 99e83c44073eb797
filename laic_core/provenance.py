"""What made an artifact: the model identity recorded with every embedding, and its checks.

Image features and noun embeddings are only comparable when one model made
both. Comparing their widths is not enough: two models with the same
`embed_dim` (a retrained checkpoint, another tag of the same architecture)
give vectors of the same shape that mean different things. So the features
(data/features/*.parquet) and the text embeddings (data/vocab/nouns.parquet,
data/nouns/selected.parquet) record in their metadata

    {"provenance": {"model": model_identity(...), "embed_dim": d,
                    "preprocess": repr of the image transform, "dtype": ...,
                    "logit_scale": the model's exp(logit_scale)}}

and every stage that combines them calls `check_same_model`: the recorded
models must be one model, and the one params.yaml names now.

A model's identity is by content where it is a local file: the sha256 of a
model-config JSON given as `model.name` and of a checkpoint given as
`model.pretrained` (a checkpoint replaced in place at the same path is
another model), else the open_clip name and pretrained tag. Hashing a large
checkpoint takes seconds, so digests are cached by (path, size, mtime) in a
small JSON file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from laic_core.errors import LaicError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def looks_like_path(value: str) -> bool:
    """A setting that names a file rather than an open_clip model name or tag."""
    return value.endswith(".json") or "/" in value or "\\" in value


HF_CONFIG_NAME = "open_clip_config.json"  # what a Hugging Face download of an open_clip model holds


def model_config_file(name: str) -> Path:
    """The model-config JSON that `model.name` points at: the file itself, or a folder's open_clip_config.json."""
    path = Path(name)
    if path.is_dir():
        if not (path / HF_CONFIG_NAME).is_file():
            raise LaicError(f"model.name: the folder {path} holds no {HF_CONFIG_NAME}; point model.name at an "
                            f"open_clip model-config JSON, or at a folder holding {HF_CONFIG_NAME} "
                            "(a Hugging Face download of an open_clip model)")
        return path / HF_CONFIG_NAME
    if not path.is_file():
        raise LaicError(f"model.name: config file {name} does not exist")
    return path


def _read_cache(cache: Path) -> dict:
    try:
        entries = json.loads(cache.read_text())
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):  # absent or damaged: it is only a cache
        return {}


def file_sha256(path: str | Path, cache: str | Path | None = None) -> str:
    """Hex sha256 of a file's bytes; reused from `cache` while its size and mtime are unchanged."""
    path = Path(path)
    st = path.stat()
    key = str(path.resolve())
    stamp = [st.st_size, st.st_mtime_ns]
    entries = _read_cache(Path(cache)) if cache else {}
    hit = entries.get(key)
    if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    hexdigest = _sha256_of(str(path))
    if cache:
        entries[key] = {"stamp": stamp, "sha256": hexdigest}
        _write_cache(Path(cache), entries)
    return hexdigest


def _write_cache(cache: Path, entries: dict) -> None:
    from laic_core.artifacts import save_json

    try:
        save_json(cache, entries)
        ignore = cache.parent / ".gitignore"
        if not ignore.exists():  # a cache, never to be committed, in whatever repo it lands
            ignore.write_text("# laic's cache of file digests\n*\n")
    except OSError:  # a read-only project still works, only slower
        pass


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(paths: Sequence[str | Path], cache: str | Path | None = None) -> list[str | None]:
    """sha256 of each file's bytes (None for one that cannot be read: a broken link, say).

    For many files (a `dataset.listing: content` of a photo folder): the cache is read and
    written once, and a digest is reused while the file's size, modification time, change
    time and inode are all unchanged. The change time (ctime) is the one no tool can set
    back: a file rewritten in place with its size and mtime kept still gets a new one.
    """
    entries = _read_cache(Path(cache)) if cache else {}
    out: list[str | None] = []
    fresh = 0
    for p in map(str, paths):
        try:
            st = os.stat(p)
        except OSError:
            out.append(None)
            continue
        key = os.path.abspath(p)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        hit = entries.get(key)
        if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("sha256"), str):
            out.append(hit["sha256"])
            continue
        try:
            out.append(_sha256_of(p))
        except OSError:
            out.append(None)
            continue
        entries[key] = {"stamp": stamp, "sha256": out[-1]}
        fresh += 1
    if cache and fresh:
        _write_cache(Path(cache), entries)
    return out


def model_identity(name: str, pretrained: str, cache: str | Path | None = None) -> dict[str, Any]:
    """What embeddings depend on: the architecture and the weights, local files by content.

    name: an open_clip model name or a model-config JSON path; pretrained: a
    tag, a checkpoint path, or "none" (seeded random weights).
    """
    ident: dict[str, Any] = {"name": name, "pretrained": pretrained}
    if looks_like_path(name):
        ident["config_sha256"] = file_sha256(model_config_file(name), cache)
    if pretrained not in ("none", ""):
        if Path(pretrained).is_file():
            ident["checkpoint_sha256"] = file_sha256(pretrained, cache)
        elif looks_like_path(pretrained) or pretrained.endswith(CHECKPOINT_SUFFIXES):
            raise LaicError(f"model.pretrained: checkpoint file {pretrained} does not exist")
    return ident


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the file `path` cannot be a complete checkpoint (None when it may be one), without loading it.

    Cheap: a zip archive (PyTorch's format since 1.6, TorchScript, .npz) must end in its
    directory, a safetensors file must be as long as its header says; a pickle (PyTorch's
    old format) or .npy file is taken as it is. torch's own errors for a cut-short or
    wrong file ("[Errno 22] Invalid argument", "weights_only ... file an issue") name
    neither the file nor the problem.
    """
    import struct
    import zipfile

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head:
        return "it is empty (0 bytes)"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        if not zipfile.is_zipfile(path):
            return f"a zip archive of {size} bytes whose end is missing: cut short, by a download or a copy?"
        return None
    if head.startswith((b"\x80", b"\x93NUMPY")):
        return None
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the weights: fetch them with `git lfs pull`"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then the JSON header
        header_len = struct.unpack("<Q", head[:8])[0]
        try:
            with open(path, "rb") as fh:
                fh.seek(8)
                header = json.loads(fh.read(header_len))
            end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, OverflowError):
            return "a safetensors file whose header cannot be read: cut short or damaged?"
        expected = 8 + header_len + end
        if size < expected:
            return f"a safetensors file of {size} bytes whose header promises {expected}: cut short?"
        return None
    text = head.decode("utf-8", "replace").split("\n")[0].strip()
    return (f"neither a PyTorch checkpoint (a zip or pickle file) nor safetensors; it begins "
            f"{text[:40]!r}" if text.isprintable() and text else
            "neither a PyTorch checkpoint (a zip or pickle file) nor safetensors")


def check_checkpoint(pretrained: str) -> None:
    """A LaicError naming `model.pretrained` when it is a local file that is not a complete checkpoint."""
    if pretrained in ("none", "") or not Path(pretrained).is_file():
        return
    problem = checkpoint_problem(pretrained)
    if problem:
        raise LaicError(f"model.pretrained: {pretrained} is not a complete checkpoint ({problem}); download it "
                        "again, or point model.pretrained at a complete checkpoint file (or 'none')")


def model_key(ident: dict) -> tuple:
    """Two identities are one model when these agree (paths may differ, contents may not)."""
    weights = ident.get("checkpoint_sha256") or ident.get("pretrained")
    return (ident.get("config_sha256") or ident.get("name"), "none" if weights in ("", None) else weights)


def same_model(a: dict, b: dict) -> bool:
    return model_key(a) == model_key(b)


def describe(ident: dict) -> str:
    """'ViT-B-32 (openai)' or 'tiny.json [config sha256 1a2b3c4d] (ckpt.pt [sha256 5e6f7a8b])'."""
    name = str(ident.get("name"))
    if ident.get("config_sha256"):
        name += f" [config sha256 {ident['config_sha256'][:12]}]"
    weights = str(ident.get("pretrained"))
    if ident.get("checkpoint_sha256"):
        weights += f" [sha256 {ident['checkpoint_sha256'][:12]}]"
    return f"model {name} ({weights})"


def record(ident: dict, embed_dim: int, preprocess: str = "", dtype: str = "",
           logit_scale: float | None = None) -> dict[str, Any]:
    """The provenance stored with an embedding artifact (its metadata key "provenance").

    logit_scale: the model's exp(logit_scale), which the temperatures of later
    stages are relative to (laic_core.method.temperature).
    """
    return {"model": ident, "embed_dim": int(embed_dim), "preprocess": preprocess, "dtype": dtype,
            "logit_scale": None if logit_scale is None else float(logit_scale)}


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance a Parquet artifact records; an error when it records none."""
    from laic_core.artifacts import load_parquet_meta

    path = Path(path)
    if not path.is_file():
        raise LaicError(f"{path}: missing; run the stage that produces it (`dvc repro`)")
    prov = load_parquet_meta(path).get("provenance")
    if not isinstance(prov, dict) or not isinstance(prov.get("model"), dict):
        raise LaicError(f"{path}: does not record which model made it (written by an older laic); "
                        "run `dvc repro` to remake it")
    return prov


def check_same_model(artifacts: Sequence[str | Path], current: dict | None = None,
                     params_source: str | Path = "params.yaml") -> dict[str, Any]:
    """The provenance of `artifacts` (Parquet files), after checking they agree with each other and `current`.

    Raises a LaicError naming the two files (or the file and the params
    file) that disagree, and the fix.
    """
    recorded = [(Path(p), read_provenance(p)) for p in artifacts]
    first_path, first = recorded[0]
    for path, prov in recorded[1:]:
        if not same_model(prov["model"], first["model"]) or prov.get("embed_dim") != first.get("embed_dim"):
            raise LaicError(
                f"{first_path} was made with {describe(first['model'])} (d={first.get('embed_dim')}) but "
                f"{path} with {describe(prov['model'])} (d={prov.get('embed_dim')}): embeddings of two models "
                "cannot be compared; run `dvc repro` so that every stage uses the model in params.yaml"
            )
    if current is not None and not same_model(first["model"], current):
        raise LaicError(
            f"{first_path} was made with {describe(first['model'])} but {params_source} now says "
            f"{describe(current)}; run `dvc repro` to remake it and what follows with this model, "
            "or restore model.name / model.pretrained"
        )
    return first


def check_against_params(artifacts: Sequence[str | Path], model_params: Any,
                         params_source: str | Path = "params.yaml",
                         cache: str | Path | None = None) -> dict[str, Any]:
    """`check_same_model` against the model that params (`params.model`) name now."""
    current = model_identity(model_params.name, model_params.pretrained, cache)
    return check_same_model(artifacts, current, params_source)


def dataset_settings(dataset: Any, role: str) -> dict[str, Any]:
    """The settings of params.yaml (`params.dataset`) that choose the images of the fit or eval split.

    embed records them with the features. DVC reruns embed when they change,
    but a command outside DVC (choose_k) or a stage run by hand would read
    features of other images without a word; `check_dataset` stops them.
    """
    return {"kind": dataset.kind, "name": dataset.name, "root": os.path.normpath(dataset.root),
            "split": dataset.fit_split if role == "fit" else dataset.eval_split}


def check_dataset(artifact: str | Path, role: str, dataset: Any, params_source: str | Path = "params.yaml") -> None:
    """A LaicError when the features `artifact` (of the fit or eval split) were made from other images
    than params.yaml's dataset settings choose now. Features that record no settings (made by an
    older laic) are not checked."""
    from laic_core.artifacts import load_parquet_meta

    recorded = load_parquet_meta(artifact).get("dataset_settings")
    if not isinstance(recorded, dict):
        return
    now = dataset_settings(dataset, role)
    changed = [key for key in now if recorded.get(key) != now[key]]
    if changed:
        keys = {"split": f"{role}_split"}
        was = ", ".join(f"dataset.{keys.get(k, k)}: {recorded.get(k)}" for k in changed)
        says = ", ".join(f"dataset.{keys.get(k, k)}: {now[k]}" for k in changed)
        raise LaicError(f"{artifact} holds the features of other images ({was}) than {params_source} now "
                        f"chooses ({says}); run `dvc repro embed` to embed these, or restore the dataset settings")


def digest(obj: Any) -> str:
    """sha256 of a JSON-serialisable value (sorted keys): a stable fingerprint of a listing."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def vocab_listing(source: str, cache: str | Path | None = None, exclude: str = "none") -> dict[str, Any]:
    """What the vocab stage reads besides params: the digests of the noun file and of the exclusion file."""
    from laic_core.text.vocab import NO_EXCLUDE_FILE, WORDNET_SOURCE

    listing: dict[str, Any] = {"source": source}  # the shipped list is a dependency of the stage itself
    if source != WORDNET_SOURCE:
        path = Path(source)
        if not path.is_file():
            raise LaicError(f"vocab.source: {source} is not a file; give 'wordnet' or the path of a noun file")
        listing["sha256"] = file_sha256(path, cache)
    if exclude != NO_EXCLUDE_FILE:
        path = Path(exclude)
        if not path.is_file():
            raise LaicError(f"vocab.exclude: {exclude} is not a file; give 'none' or the path of a text file "
                            "with one noun to leave out per line")
        listing["exclude"] = {"path": exclude, "sha256": file_sha256(path, cache)}
    return listing

