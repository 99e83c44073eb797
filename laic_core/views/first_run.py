"""What the first `dvc repro` of a folder will cost, in words for the person about to start it (`laic init`)."""

from __future__ import annotations

from laic_core.progress import duration_text

# Everything after embed and vocab took 233 s with ViT-B/32's shapes on 10,000 images on a 2-core CPU,
# against 913 s for embed (docs/scale.md): about a quarter of embed's time, plus a floor for small folders.
REST_OVER_EMBED = 0.26
REST_FLOOR_SECONDS = 60.0


def first_run_lines(*, n_images: int, model: str, embed_rate: float | None, vocab_rate: float | None,
                    n_nouns: int | None, vocab_cached: bool, clusters: int, k_given: bool) -> list[str]:
    """The lines `laic init` prints: what the first run does, and about how long each part takes here.

    embed_rate, vocab_rate: images/s and nouns/s measured with the model on this machine (None: not
    measured); n_nouns: the nouns `vocab` would encode; vocab_cached: they are encoded already.
    """
    lines = [f"The first `dvc repro` clusters {n_images:,} images into {clusters} groups with {model}:"]
    if embed_rate:
        embed = n_images / embed_rate
        lines.append(f"  - embed the images: about {duration_text(embed)} ({embed_rate:.0f} images/s measured here)")
    else:
        embed = None
        lines.append("  - embed the images: about 11 images/s with ViT-B-32 on a 2-core CPU, far more on a GPU")
    if vocab_cached:
        lines.append("  - the vocabulary: encoded before for this model, reused from the cache (seconds)")
    elif vocab_rate and n_nouns:
        lines.append(f"  - encode the vocabulary, {n_nouns:,} nouns: about {duration_text(n_nouns / vocab_rate)}, "
                     "once per model (later datasets, experiments and projects reuse it)")
    else:
        lines.append("  - encode the vocabulary: about 55 min with ViT-B-32 on a 2-core CPU, a few minutes on a GPU, "
                     "once per model")
    rest = max(REST_FLOOR_SECONDS, REST_OVER_EMBED * embed) if embed is not None else None
    lines.append("  - find the nouns, cluster, train the centers, score and build the browser"
                 + (f": about {duration_text(rest)}" if rest is not None else ": a fraction of the embedding"))
    lines.append("Next: `dvc repro`, then `laic open`." if k_given else
                 "Next: `dvc repro embed vocab`, then `laic choose-k` to pick --clusters, then `dvc repro`.")
    return lines
