"""Where each stage's artifacts live (mirrored by the deps/outs in dvc.yaml)."""

from pathlib import Path

DATA = Path("data")
FEATURES = DATA / "features"
VOCAB = DATA / "vocab"
NOUNS = DATA / "nouns"
RELATION = DATA / "relation"
NEIGHBORS = DATA / "neighbors"
CENTERS = DATA / "centers"
ZEROSHOT = DATA / "zeroshot"
LISTING = DATA / "listing"  # what DVC cannot see: image files, noun file, model files (stage validate)
HASH_CACHE = DATA / ".cache" / "sha256.json"  # digests of model and noun files; a cache, not an artifact
METRICS = Path("metrics")
PLOTS = METRICS / "plots"
ROLES = ("fit", "eval")


def features(role: str) -> Path:
    """(N, d) float32 L2-normalised image embeddings of the fit or eval split."""
    return FEATURES / f"{role}.npy"


def features_meta(role: str) -> Path:
    """One row per embedded image: row, source, label (when known)."""
    return FEATURES / f"{role}.parquet"


def relation_rows(role: str) -> Path:
    """(N, D) normalised relation rows (.npz, dense or CSR): dot products are cosines of rows of C."""
    return RELATION / f"rows_{role}.npz"


RELATION_SPEC = RELATION / "relation.json"  # kind, resolved temperature and penalty: how to recompute C


def relation_assign(role: str) -> Path:
    """The no-train clusterings of one split: row, clip_kmeans, tac_notrain, ours_notrain."""
    return RELATION / f"assign_{role}.parquet"
