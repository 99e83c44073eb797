"""Where every artifact lives, and which stage reads and writes which: the one source of truth.

Stages take their paths from here, never from string literals, and
`STAGES` declares each stage's data inputs and outputs; dvc.yaml mirrors it
(tests/test_layout.py checks that every stage's deps and outs in dvc.yaml
are exactly these, and that its code deps name every project module it
imports). Row i of every per-image artifact is the image in row i of
`features_meta(role)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DATA = Path("data")
LISTING = DATA / "listing"  # what DVC cannot see: image files, noun file, model files (stage validate)
HASH_CACHE = DATA / ".cache" / "sha256.json"  # digests of model and noun files; a cache, not an artifact
IMAGE_HASH_CACHE = DATA / ".cache" / "images_sha256.json"  # image digests of `dataset.listing: content`
FEATURES = DATA / "features"
VOCAB = DATA / "vocab"
NOUNS = DATA / "nouns"
RELATION = DATA / "relation"
NEIGHBORS = DATA / "neighbors"
CENTERS = DATA / "centers"
TAC = DATA / "tac"
SCAN = DATA / "scan"
ZEROSHOT = DATA / "zeroshot"
EVALUATE = DATA / "evaluate"
METRICS = Path("metrics")
PLOTS = METRICS / "plots"
COST = METRICS / "cost"  # per-stage wall time and memory; neither a DVC metric nor tracked by git
ROLES = ("fit", "eval")
# A person's renames, merges and junk marks (laic_core.scoring.corrections): tracked by git, read by
# evaluate (the per-image table, scores and report, hence the browser), predict and export.
CORRECTIONS = Path("clusters.yaml")

# ------------------------------------------------------------------ validate
LISTINGS = {name: LISTING / f"{name}.json" for name in ("dataset", "vocab", "model")}

# ------------------------------------------------------------------ embed


def features(role: str) -> Path:
    """(N, d) float32 L2-normalised image embeddings of the fit or eval split."""
    return FEATURES / f"{role}.npy"


def features_meta(role: str) -> Path:
    """One row per embedded image: row, source, label (when known); provenance in its metadata."""
    return FEATURES / f"{role}.parquet"


FEATURES_META = tuple(features_meta(role) for role in ROLES)  # where every stage reads the model from
EMBED_METRICS = METRICS / "embed.json"

# ------------------------------------------------------------------ vocab, nouns
VOCAB_NOUNS = VOCAB / "nouns.parquet"  # noun per row; provenance in its metadata
VOCAB_TEXT = VOCAB / "text.npy"  # (M, d) float32 unit noun embeddings
SELECTED_NOUNS = NOUNS / "selected.parquet"  # noun, vocab_index, group, score per selected noun
SELECTED_TEXT = NOUNS / "text.npy"  # (M', d) float32: the rows of VOCAB_TEXT kept

# ------------------------------------------------------------------ relation


def relation_rows(role: str) -> Path:
    """(N, D) normalised relation rows (.npz, dense or CSR): dot products are cosines of rows of C."""
    return RELATION / f"rows_{role}.npz"


RELATION_SPEC = RELATION / "relation.json"  # kind, resolved temperature and penalty: how to recompute C

# ------------------------------------------------------------------ neighbors
KNN = NEIGHBORS / "knn.npy"  # (N_fit, k) int64 neighbours in relation space
RELIABLE = NEIGHBORS / "reliable.npy"  # (N_fit,) bool
PSEUDO = NEIGHBORS / "pseudo.npy"  # (N_fit,) int64: ours_notrain on the fit split
IMAGE_KNN = NEIGHBORS / "knn_image.npy"  # (N_fit, k_image) int64 neighbours in image space (TAC, SCAN)
NEIGHBORS_METRICS = METRICS / "neighbors.json"

# ------------------------------------------------------------------ centers
PROMPTS = CENTERS / "prompts.pt"
CENTER_VECTORS = CENTERS / "centers.npy"  # (K, d) float32
NAMES = CENTERS / "names.json"
CENTERS_HISTORY = METRICS / "centers_history.csv"
CENTERS_METRICS = METRICS / "centers.json"

# ------------------------------------------------------------------ tac, scan
TAC_HISTORY = METRICS / "tac_history.csv"
SCAN_HISTORY = METRICS / "scan_history.csv"

# ------------------------------------------------------------------ assignments


def assignments(stage: str, role: str) -> Path:
    """The cluster of every image of one split from one stage: a `row` column, then one column
    per method the stage produces (laic_core.methods says which stage and column hold a method)."""
    return DATA / stage / f"assign_{role}.parquet"


# ------------------------------------------------------------------ evaluate
SCORES = METRICS / "scores.json"
SCORES_FIT = METRICS / "scores_fit.json"
SCORES_CORRECTED = METRICS / "scores_corrected.json"  # the corrected methods' clusters, junk and scores
INTERNAL = METRICS / "internal.json"
DIAGNOSTICS = METRICS / "diagnostics.json"
SUMMARY = METRICS / "summary.json"
REPORT = METRICS / "report.md"
ASSIGNMENTS_CSV = EVALUATE / "assignments.csv"
ASSIGNMENTS_PARQUET = EVALUATE / "assignments.parquet"
# The partitions the lines of clusters.yaml were written for (stages/corrections.py): evaluate reads
# and rewrites it, so it persists between runs (dvc.yaml: persist: true; DVC caches it, git does not).
CORRECTION_RUNS = EVALUATE / "partitions.parquet"
PURITY_CSV = PLOTS / "purity.csv"
PSEUDO_CSV = PLOTS / "pseudo_accuracy.csv"
CONFUSION_CSV = PLOTS / "confusion.csv"
CONFUSION_PNG = PLOTS / "confusion.png"
PURITY_PNG = PLOTS / "purity.png"
PSEUDO_PNG = PLOTS / "pseudo_accuracy.png"
TRAINING_PNG = PLOTS / "training.png"
GALLERY = PLOTS / "gallery"  # one PNG per page of clusters: gallery_1.png, gallery_2.png, ...
PROJECTION_PNG = PLOTS / "projection.png"
RELATION_PNG = PLOTS / "relation.png"

# ------------------------------------------------------------------ browse
BROWSER = DATA / "browser"  # the static cluster browser: open BROWSER_INDEX in any web browser
BROWSER_INDEX = BROWSER / "index.html"


@dataclass(frozen=True)
class StageIO:
    """The artifacts a stage reads and writes (code dependencies are found from its imports)."""

    inputs: tuple[Path, ...] = ()
    outputs: tuple[Path, ...] = ()
    extra: tuple[str, ...] = field(default=())  # non-Python files it reads (shipped data)
    persist: tuple[Path, ...] = ()  # outputs DVC keeps between runs (the stage reads its last one)


def _roles(fn) -> tuple[Path, ...]:
    return tuple(fn(role) for role in ROLES)


def _both(*fns) -> tuple[Path, ...]:
    return tuple(p for fn in fns for p in _roles(fn))


STAGES: dict[str, StageIO] = {
    "validate": StageIO(outputs=tuple(LISTINGS.values())),
    "embed": StageIO(inputs=(LISTINGS["dataset"], LISTINGS["model"]),
                     outputs=_both(features, features_meta) + (EMBED_METRICS,)),
    "vocab": StageIO(inputs=(LISTINGS["vocab"], LISTINGS["model"]), outputs=(VOCAB_NOUNS, VOCAB_TEXT),
                     extra=("laic_core/text/wordnet_nouns.txt.gz", "laic_core/text/excluded_words.tsv.gz")),
    "nouns": StageIO(inputs=(features("fit"), features_meta("fit"), VOCAB_NOUNS, VOCAB_TEXT),
                     outputs=(SELECTED_NOUNS, SELECTED_TEXT)),
    "relation": StageIO(inputs=_both(features, features_meta) + (SELECTED_NOUNS, SELECTED_TEXT),
                        outputs=_both(relation_rows) + (RELATION_SPEC,)
                        + tuple(assignments("relation", r) for r in ROLES)),
    "neighbors": StageIO(inputs=(features("fit"), relation_rows("fit"), assignments("relation", "fit")),
                         outputs=(KNN, RELIABLE, PSEUDO, IMAGE_KNN, NEIGHBORS_METRICS)),
    "centers": StageIO(inputs=_both(features, features_meta) + (
                           SELECTED_NOUNS, SELECTED_TEXT, VOCAB_NOUNS, VOCAB_TEXT, RELATION_SPEC, KNN, RELIABLE,
                           PSEUDO, LISTINGS["model"]),
                       outputs=(PROMPTS, CENTER_VECTORS, NAMES, CENTERS_HISTORY, CENTERS_METRICS)
                       + tuple(assignments("centers", r) for r in ROLES),
                       extra=("laic_core/text/wordnet_nouns.txt.gz", "laic_core/text/wordnet_flags.tsv.gz",
                              "laic_core/text/wordnet_common_names.tsv.gz", "laic_core/text/wordnet_glosses.tsv.gz")),
    "tac": StageIO(inputs=_both(features, features_meta) + (SELECTED_NOUNS, SELECTED_TEXT, IMAGE_KNN),
                   outputs=(TAC_HISTORY,) + tuple(assignments("tac", r) for r in ROLES)),
    "scan": StageIO(inputs=_both(features, features_meta) + (IMAGE_KNN,),
                    outputs=(SCAN_HISTORY,) + tuple(assignments("scan", r) for r in ROLES)),
    "zeroshot": StageIO(inputs=(features("eval"), features_meta("eval"), LISTINGS["model"]),
                        outputs=(assignments("zeroshot", "eval"),)),
}


def method_assignments(role: str) -> tuple[Path, ...]:
    """The assignment tables of every registered method that assigns `role`, each once."""
    from laic_core.methods import METHODS

    return tuple(dict.fromkeys(assignments(m.stage, role) for m in METHODS.values() if role in m.roles))


EVALUATE_OUTPUTS = (SCORES, SCORES_FIT, SCORES_CORRECTED, INTERNAL, DIAGNOSTICS, SUMMARY, REPORT, ASSIGNMENTS_CSV,
                    ASSIGNMENTS_PARQUET, CORRECTION_RUNS, PURITY_CSV, PSEUDO_CSV, CONFUSION_CSV, CONFUSION_PNG,
                    PURITY_PNG, PSEUDO_PNG, TRAINING_PNG, GALLERY, PROJECTION_PNG, RELATION_PNG)

STAGES["evaluate"] = StageIO(
    inputs=_both(features, features_meta) + (
        relation_rows("fit"), RELATION_SPEC, SELECTED_NOUNS, SELECTED_TEXT, KNN, RELIABLE, PSEUDO, NAMES,
        CENTERS_HISTORY, CENTERS_METRICS, CORRECTIONS)
    + tuple(dict.fromkeys(method_assignments("fit") + method_assignments("eval"))),
    outputs=EVALUATE_OUTPUTS,
    persist=(CORRECTION_RUNS,),
)

# The per-image table already holds the corrections (and records which), so the browser needs no
# clusters.yaml of its own; the dataset listing reruns it when an image is replaced in place.
STAGES["browse"] = StageIO(
    inputs=(ASSIGNMENTS_PARQUET, NAMES, features("eval"), features_meta("eval"), LISTINGS["dataset"]),
    outputs=(BROWSER,),
    extra=tuple(f"laic_core/views/browser_assets/{name}"
                for name in ("index.html", "cluster.html", "browser.js", "browser.css")),
)
