"""params.yaml -> typed, validated settings.

`load_params` checks every key it knows and reports *all* problems in one
error, so a user fixing a params file sees the whole list at once. Keys it
does not know are errors too: a typo such as `relaton.tau` would otherwise
silently fall back to the default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints, Literal, Union

import yaml

from laic_core.errors import LaicError
from laic_core.method.temperature import MIN_TEMPERATURE
from laic_core.text.vocab import DEFAULT_TEMPLATES
from laic_core.validation import MAX_SEED



@dataclass(frozen=True)
class DatasetParams:
    kind: Literal["torchvision", "imagefolder", "manifest"] = "torchvision"
    name: str = "cifar10"
    root: str = "data/raw/cifar10"
    fit_split: str = "train"
    eval_split: str = "test"
    num_clusters: int = 10
    download: bool = True
    # What the listing (stage validate) trusts to see that an image changed: "stat" its path, size
    # and modification time; "content" the sha256 of its bytes (laic_core.data.datasets.dataset_listing).
    listing: Literal["stat", "content"] = "stat"


@dataclass(frozen=True)
class ModelParams:
    name: str = "ViT-B-32"
    pretrained: str = "openai"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    batch_size: int = 256


@dataclass(frozen=True)
class EmbedParams:
    # "auto" = min(4, usable CPUs - 1): a fixed 4 made the DataLoader warn on
    # every run of a 2-core machine (see laic_core.data.encode.resolve_num_workers).
    num_workers: int | Literal["auto"] = "auto"
    chunk_size: int = 4096
    on_error: Literal["fail", "skip"] = "fail"
    engine: Literal["local", "ray"] = "local"
    ray_address: str = "local"
    ray_workers: int = 2


@dataclass(frozen=True)
class VocabParams:
    source: str = "wordnet"
    templates: list = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    batch_size: int = 1024
    chunk_size: int = 8192
    prefix_cache: bool = True  # encode each template's shared leading tokens once (exact; see prefix_cache.py)
    exclude_offensive: bool = True  # drop slurs, obscenities, words for wrongdoers (text/vocab.EXCLUDED_FLAGS)
    exclude: str = "none"  # or a text file of more nouns to drop, one per line


# A temperature is "auto" (relative / the model's logit scale; laic_core.method.temperature)
# or an absolute number.
Temperature = Union[float, Literal["auto"]]


@dataclass(frozen=True)
class NounsParams:
    filter: Literal["tac", "none"] = "tac"
    gamma: int = 5
    images_per_group: int = 300
    tau: Temperature = "auto"
    tau_relative: float = 100.0  # TAC's plain softmax of cosines (tau 1) for CLIP's scale of 100


@dataclass(frozen=True)
class RelationParams:
    kind: Literal["softmax", "ridge"] = "ridge"
    tau: Temperature = "auto"
    tau_relative: float = 0.5  # TAC's 0.005 for CLIP's scale of 100
    ridge_lambda: float = 1.0  # relative to the mean eigenvalue of T^T T
    topk: int = 0
    kmeans_n_init: int = 10


@dataclass(frozen=True)
class NeighborsParams:
    k: int = 5
    min_agreement: float = 1.0
    method: Literal["auto", "exact", "faiss"] = "auto"
    image_k: int = 50  # neighbours in image-feature space, for the TAC and SCAN baselines
    # Ablation switches (the paper's claims; defaults are the method):
    space: Literal["relation", "image"] = "relation"  # where neighbours and pseudo-labels come from
    filter: Literal["consistency", "none"] = "consistency"  # none: every fit image is reliable


@dataclass(frozen=True)
class CentersParams:
    n_ctx: int = 4
    tau: Temperature = "auto"
    tau_relative: float = 1.0  # 0.01 for CLIP's scale of 100
    steps: int = 1000  # the ceiling: training stops earlier once converged (stop_*)
    epochs: int = 0  # > 0: that many passes over the fit images instead of `steps` (cost grows with N)
    stop_tolerance: float = 0.001  # converged: fewer than this share of the fit images moved for good ...
    stop_window: int = 50  # ... over 2 x this many steps (laic_core.method.convergence); tolerance 0 = never
    prompt_chunk: int = 128  # prompts per text-tower pass; above it, checkpointed chunks (bounded memory)
    entropy_weight: float = 5.0
    ce_weight: float = 0.3
    lr: float = 0.002
    batch_size: int = 1024
    init_template: str = "a photo of a {}."
    init: Literal["nouns", "random"] = "nouns"  # random: random context vectors and no noun (ablation)
    name_proper_nouns: bool = False  # may WordNet's proper nouns (people, places) name a cluster?
    name_taxonomic: bool = False  # may taxonomic names ("genus Oryx", "Oryx gazella") name one? (else their
    #                               common name does, where WordNet has one: "gemsbok")
    name_rare: bool = True  # may nouns SemCor never tagged (nor their head word) name one?


@dataclass(frozen=True)
class TacParams:
    # "auto": TAC's published values for this K (laic_core.baselines.tac.TacSettings.published)
    epochs: Union[int, Literal["auto"]] = "auto"
    batch_size: Union[int, Literal["auto"]] = "auto"
    temperature: Union[float, Literal["auto"]] = "auto"
    entropy_weight: float = 5.0
    lr: float = 0.001
    stop_tolerance: float = 0.001  # as centers', per epoch (the epochs are the ceiling); 0 = every epoch
    stop_window: int = 2


@dataclass(frozen=True)
class ScanParams:
    """SCAN's published frozen-backbone settings (scan_imagenet_50.yml) and our label-free stop;
    `baselines.scan.ScanSettings` adds the fixed ones."""

    epochs: int = 100
    batch_size: int = 512
    lr: float = 5.0
    heads: int = 10
    entropy_weight: float = 5.0
    stop_tolerance: float = 0.001  # as tac's, over every head's clusters
    stop_window: int = 5


@dataclass(frozen=True)
class EvaluateParams:
    purity_ks: list = field(default_factory=lambda: [1, 5, 10, 20, 50])
    purity_sample: int = 50000  # fit images the purity curve is measured on (a seeded subset); 0 = all
    internal_sample: int = 10000  # eval images the label-free scores are measured on (seeded); 0 = all


@dataclass(frozen=True)
class BrowserParams:
    # "all": every method of the per-image table, ours first; or a list such as [ours, clip_kmeans]
    methods: Union[Literal["all"], list] = "all"
    thumbnail_px: int = 96
    thumbnails_per_cluster: int = 120  # per cluster of each method: its most confident and least confident
    check: int = 24  # least confident members of each cluster, marked as the ones to check
    max_thumbnails: int = 40000  # in all (one per image whatever the methods): bounds the folder's size
    page_size: int = 100  # members per page of a cluster


@dataclass(frozen=True)
class Params:
    seed: int = 0
    dataset: DatasetParams = field(default_factory=DatasetParams)
    model: ModelParams = field(default_factory=ModelParams)
    embed: EmbedParams = field(default_factory=EmbedParams)
    vocab: VocabParams = field(default_factory=VocabParams)
    nouns: NounsParams = field(default_factory=NounsParams)
    relation: RelationParams = field(default_factory=RelationParams)
    neighbors: NeighborsParams = field(default_factory=NeighborsParams)
    centers: CentersParams = field(default_factory=CentersParams)
    tac: TacParams = field(default_factory=TacParams)
    scan: ScanParams = field(default_factory=ScanParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    browser: BrowserParams = field(default_factory=BrowserParams)


def _is_ray_address(value: str) -> bool:
    if value in ("", "local", "auto"):
        return True
    rest = value[len("ray://"):] if value.startswith("ray://") else value
    host, sep, port = rest.rpartition(":")
    return bool(sep and host and port.isdigit()) and not any(c.isspace() for c in host)


TEMPERATURE_RANGE = f"'auto' or a number >= {MIN_TEMPERATURE:g}"

# Range checks beyond the type: (section, key) -> (predicate, what is allowed).
_RANGES = {
    ("", "seed"): (lambda v: 0 <= v <= MAX_SEED, f"an integer in 0..{MAX_SEED} (2**32 - 1, the largest seed "
                                                 "numpy and scikit-learn take)"),
    ("dataset", "num_clusters"): (lambda v: v >= 2, "an integer >= 2"),
    ("model", "batch_size"): (lambda v: v >= 1, "an integer >= 1"),
    ("embed", "num_workers"): (lambda v: v == "auto" or v >= 0, "'auto' or an integer >= 0"),
    ("embed", "chunk_size"): (lambda v: v >= 1, "an integer >= 1"),
    ("embed", "ray_address"): (
        lambda v: _is_ray_address(v),
        "'local' (or empty) to start a local Ray instance, 'auto' for the cluster this machine "
        "belongs to, or an address such as ray://head:10001 or head:6379",
    ),
    ("embed", "ray_workers"): (lambda v: v >= 1, "an integer >= 1 (model replicas)"),
    ("vocab", "batch_size"): (lambda v: v >= 1, "an integer >= 1"),
    ("vocab", "chunk_size"): (lambda v: v >= 1, "an integer >= 1"),
    ("vocab", "templates"): (
        lambda v: len(v) > 0 and all(isinstance(t, str) and t.count("{}") == 1 for t in v),
        "a non-empty list of strings, each with exactly one '{}' where the noun goes",
    ),
    ("nouns", "gamma"): (lambda v: v >= 1, "an integer >= 1"),
    ("nouns", "images_per_group"): (lambda v: v >= 1, "an integer >= 1"),
    ("nouns", "tau"): (lambda v: v == "auto" or v >= MIN_TEMPERATURE, TEMPERATURE_RANGE),
    ("nouns", "tau_relative"): (lambda v: v > 0, "a number > 0"),
    ("relation", "tau"): (lambda v: v == "auto" or v >= MIN_TEMPERATURE, TEMPERATURE_RANGE),
    ("relation", "tau_relative"): (lambda v: v > 0, "a number > 0"),
    ("relation", "ridge_lambda"): (lambda v: v > 0, "a number > 0 (relative to the mean eigenvalue of T^T T)"),
    ("relation", "topk"): (lambda v: v >= 0, "an integer >= 0 (0 chooses automatically)"),
    ("relation", "kmeans_n_init"): (lambda v: v >= 1, "an integer >= 1"),
    ("neighbors", "k"): (lambda v: v >= 1, "an integer >= 1"),
    ("neighbors", "min_agreement"): (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("centers", "n_ctx"): (lambda v: v >= 1, "an integer >= 1"),
    ("centers", "tau"): (lambda v: v == "auto" or v >= MIN_TEMPERATURE, TEMPERATURE_RANGE),
    ("centers", "tau_relative"): (lambda v: v > 0, "a number > 0"),
    ("centers", "steps"): (lambda v: v >= 1, "an integer >= 1"),
    ("centers", "epochs"): (lambda v: v >= 0, "an integer >= 0 (0 = use centers.steps)"),
    ("centers", "stop_tolerance"): (lambda v: 0 <= v < 1, "a number in [0, 1) (a share of the fit images; "
                                                          "0 = always train to the ceiling)"),
    ("centers", "stop_window"): (lambda v: v >= 1, "an integer >= 1 (optimiser steps)"),
    ("centers", "prompt_chunk"): (lambda v: v >= 1, "an integer >= 1 (prompts per text-tower pass)"),
    ("centers", "entropy_weight"): (lambda v: v >= 0, "a number >= 0"),
    ("centers", "ce_weight"): (lambda v: 0 <= v <= 1, "a number in [0, 1] (the pseudo-label's share of a "
                                                       "reliable image's target)"),
    ("centers", "lr"): (lambda v: v > 0, "a number > 0"),
    ("centers", "batch_size"): (lambda v: v >= 1, "an integer >= 1"),
    ("centers", "init_template"): (lambda v: v.count("{}") == 1, "a string with exactly one '{}'"),
    ("neighbors", "image_k"): (lambda v: v >= 1, "an integer >= 1"),
    ("tac", "epochs"): (lambda v: v == "auto" or v >= 1, "'auto' or an integer >= 1"),
    ("tac", "batch_size"): (lambda v: v == "auto" or v >= 2, "'auto' or an integer >= 2"),
    ("tac", "temperature"): (lambda v: v == "auto" or v >= MIN_TEMPERATURE, TEMPERATURE_RANGE),
    ("tac", "entropy_weight"): (lambda v: v >= 0, "a number >= 0"),
    ("tac", "lr"): (lambda v: v > 0, "a number > 0"),
    ("tac", "stop_tolerance"): (lambda v: 0 <= v < 1, "a number in [0, 1) (0 = train every epoch)"),
    ("tac", "stop_window"): (lambda v: v >= 1, "an integer >= 1 (epochs)"),
    ("scan", "epochs"): (lambda v: v >= 1, "an integer >= 1"),
    ("scan", "batch_size"): (lambda v: v >= 1, "an integer >= 1"),
    ("scan", "lr"): (lambda v: v > 0, "a number > 0"),
    ("scan", "heads"): (lambda v: v >= 1, "an integer >= 1"),
    ("scan", "entropy_weight"): (lambda v: v >= 0, "a number >= 0"),
    ("scan", "stop_tolerance"): (lambda v: 0 <= v < 1, "a number in [0, 1) (0 = train every epoch)"),
    ("scan", "stop_window"): (lambda v: v >= 1, "an integer >= 1 (epochs)"),
    ("evaluate", "purity_ks"): (
        lambda v: len(v) > 0 and all(isinstance(k, int) and k >= 1 for k in v),
        "a non-empty list of integers >= 1",
    ),
    ("evaluate", "purity_sample"): (lambda v: v == 0 or v >= 2, "0 (all fit images) or an integer >= 2"),
    ("evaluate", "internal_sample"): (lambda v: v == 0 or v >= 2, "0 (all eval images) or an integer >= 2"),
    ("browser", "methods"): (lambda v: v == "all" or (len(v) > 0 and all(isinstance(m, str) for m in v)),
                             "'all' or a non-empty list of method names"),
    ("browser", "thumbnail_px"): (lambda v: 16 <= v <= 512, "an integer in 16..512"),
    ("browser", "thumbnails_per_cluster"): (lambda v: v >= 8, "an integer >= 8 (a card shows 8)"),
    ("browser", "check"): (lambda v: v >= 0, "an integer >= 0"),
    ("browser", "max_thumbnails"): (lambda v: v >= 0, "an integer >= 0"),
    ("browser", "page_size"): (lambda v: 10 <= v <= 2000, "an integer in 10..2000"),
}


def _check_value(where: str, value: Any, hint: Any, errors: list[str]) -> Any:
    """Coerce one YAML value to its declared type, or record why it cannot be."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        # The first alternative the value fits; otherwise one error naming them all.
        for alternative in get_args(hint):
            attempt: list[str] = []
            coerced = _check_value(where, value, alternative, attempt)
            if not attempt:
                return coerced
        allowed = " or ".join(_describe(a) for a in get_args(hint))
        errors.append(f"{where}: {value!r} must be {allowed}")
        return value
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            errors.append(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            errors.append(f"{where}: {value!r} must be true or false")
        return value
    if hint is int:
        number = _plain_number(value)
        if isinstance(number, float) and number.is_integer():
            number = int(number)  # 1e3, 10.0
        if not isinstance(number, int):
            errors.append(f"{where}: {value!r} must be an integer")
            return value
        return number
    if hint is float:
        number = _plain_number(value)
        if number is None:
            errors.append(f"{where}: {value!r} must be a number")
            return value
        return float(number)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            errors.append(f"{where}: {value!r} must be a string")
            return value
        return str(value)
    if hint is list:
        if not isinstance(value, list):
            errors.append(f"{where}: {value!r} must be a list")
        return value
    raise TypeError(f"unsupported config type {hint!r}")  # a bug in this module, not user input


# A number as YAML 1.2 and every reader would take it. PyYAML follows YAML 1.1,
# where a float needs a dot: `2e-3` and `1e3` come back as strings.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _plain_number(value: Any) -> int | float | None:
    """`value` as the number it plainly is (an int or float, or a string such as "2e-3"); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    return value if isinstance(value, float) and math.isfinite(value) else None


def _describe(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return " or ".join(map(repr, get_args(hint)))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            list: "a list"}.get(hint, str(hint))


def _build(cls: type, raw: dict, section: str, errors: list[str]) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            where = f"{section}.{key}" if section else key
            errors.append(f"{where}: unknown key (known: {', '.join(sorted(names))})")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        where = f"{section}.{f.name}" if section else f.name
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            sub = raw[f.name]
            if not isinstance(sub, dict):
                errors.append(f"{where}: must be a section (a mapping of keys), got {sub!r}")
                continue
            values[f.name] = _build(hint, sub, f.name, errors)
            continue
        n_before = len(errors)
        value = _check_value(where, raw[f.name], hint, errors)
        check = _RANGES.get((section, f.name))
        if check and len(errors) == n_before and not check[0](value):
            errors.append(f"{where}: {value!r} must be {check[1]}")
        values[f.name] = value
    return cls(**values)


def params_from_dict(raw: dict | None, source: str = "params") -> Params:
    """Validate a params mapping; one LaicError lists every bad key."""
    errors: list[str] = []
    params = _build(Params, raw or {}, "", errors)
    if errors:
        raise LaicError(
            f"{source} has {len(errors)} invalid setting(s):\n  - " + "\n  - ".join(errors)
        )
    return _expand_home(params)


def _expand_home(params: Params) -> Params:
    """`~` in the settings that name files means the home folder, as in a shell.

    (Tags such as `openai` and names such as `ViT-B-32` never start with `~`.)
    """
    home = os.path.expanduser
    return dataclasses.replace(
        params,
        dataset=dataclasses.replace(params.dataset, root=home(params.dataset.root)),
        model=dataclasses.replace(params.model, name=home(params.model.name),
                                  pretrained=home(params.model.pretrained)),
        vocab=dataclasses.replace(params.vocab, source=home(params.vocab.source), exclude=home(params.vocab.exclude)),
    )


def repeated_keys(node: yaml.Node | None, where: str = "") -> list[str]:
    """'dataset.root (lines 5 and 9)' for every key a YAML mapping (at any depth) gives twice.

    PyYAML keeps the last value of a repeated key without a word, while DVC refuses such a
    params file: a stage run by hand would silently use a value `dvc repro` never accepted.
    """
    found: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            name = f"{where}.{key_node.value}" if where else key_node.value
            line = key_node.start_mark.line + 1
            if key_node.value in first:
                found.append(f"{name} (lines {first[key_node.value]} and {line})")
            else:
                first[key_node.value] = line
            found += repeated_keys(value_node, name)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += repeated_keys(item, where)
    return found


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.is_file():
        raise LaicError(f"{path}: parameters file not found; run from the project root or pass --params")
    try:
        text = path.read_text()
        repeated = repeated_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LaicError(f"{path}: not valid YAML ({exc})") from exc
    if repeated:
        raise LaicError(f"{path} gives {len(repeated)} key(s) twice, and only the last would count (`dvc repro` "
                        f"refuses the file): {'; '.join(repeated)}; keep one of each")
    if raw is not None and not isinstance(raw, dict):
        raise LaicError(f"{path}: must be a mapping of sections, got {type(raw).__name__}")
    return params_from_dict(raw, str(path))


def params_to_dict(params: Params) -> dict:
    return dataclasses.asdict(params)
