"""The registry of clustering methods: what each is, and which stage's table holds its clusters.

Adding a method is one `register_method(...)` here plus the stage that
computes it: evaluate scores every registered method whose assignments
exist, the report and the many-dataset table list them in this order, and
dvc.yaml's evaluate stage depends on their tables (checked by
tests/test_layout.py).

A method's clusters live in column `column` of the stage's
``data/<stage>/assign_<role>.parquet`` (laic_core knows the stage's name,
not the path: stages/layout.py turns the two into a file).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # the key in metrics/scores.json and in `dvc exp show`
    title: str  # how tables print it
    stage: str  # the DVC stage that writes its assignments
    column: str  # the column of that stage's assignment tables
    description: str
    roles: tuple[str, ...] = ("fit", "eval")  # splits it assigns
    trained: bool = False  # learns parameters (seeded) rather than running k-means alone
    uses_text: bool = True  # reads noun or class-name embeddings
    reference: bool = False  # an upper reference that reads class names, not a clustering method
    confidence: str | None = None  # the column of its max_k p(k | i), when it has one


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")  # a bug here, not user input
    METHODS[method.name] = method
    return method


def ordered(names) -> list[str]:
    """Registered methods in registry order, then any others alphabetically."""
    names = list(dict.fromkeys(names))
    return [m for m in METHODS if m in names] + sorted(n for n in names if n not in METHODS)


def title(name: str) -> str:
    return METHODS[name].title if name in METHODS else name


register_method(Method(
    "clip_kmeans", "CLIP k-means", "relation", "clip_kmeans",
    "k-means on the CLIP image embeddings", uses_text=False))
register_method(Method(
    "tac_notrain", "TAC (no train)", "relation", "tac_notrain",
    "k-means on TAC's concatenation of each image embedding and its retrieved noun mixture"))
register_method(Method(
    "ours_notrain", "ours (no train)", "relation", "ours_notrain",
    "k-means on the normalised rows of the relation matrix C (the pseudo-labels of `ours`)"))
register_method(Method(
    "scan", "SCAN", "scan", "scan",
    "SCAN's neighbour-consistency and entropy loss, a clustering head on CLIP image features",
    trained=True, uses_text=False, confidence="scan_confidence"))
register_method(Method(
    "tac", "TAC", "tac", "tac",
    "TAC (ICML 2024): image and text heads trained by cross-modal mutual distillation",
    trained=True, confidence="tac_confidence"))
register_method(Method(
    "ours_init", "ours (initial centers)", "centers", "init_cluster",
    "the semantic centers before training: the text of each cluster's top noun"))
register_method(Method(
    "ours", "ours", "centers", "cluster",
    "adaptive semantic centers learned by prompt learning from relational neighbours",
    trained=True, confidence="confidence"))
register_method(Method(
    "zeroshot", "zero-shot (class names)", "zeroshot", "cluster",
    "CLIP zero-shot classification with the true class names: an upper reference, not clustering",
    roles=("eval",), reference=True))
