"""vocab: text embeddings of every noun under the template ensemble.

Depends only on the model, the vocabulary and the templates, so it is
computed once per model and shared by every dataset and experiment. Writes
data/vocab/nouns.parquet (noun) and data/vocab/text.npy ((M, d) float32,
L2-normalised; row j embeds noun j). Resumable in chunks of nouns.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from laic_core.text import encoding_cache
from laic_core.artifacts import ChunkedArray, fingerprint, save_parquet
from laic_core.data.models import load_clip
from laic_core.text.encoding_cache import source_digest
from laic_core.errors import name_some
from laic_core.method.temperature import model_logit_scale
from laic_core.progress import duration_text, progress_bar
from laic_core.provenance import model_identity, model_key, record
from laic_core.text import encode as text_encode
from laic_core.text import prefix_cache
from laic_core.text import tower as text_tower
from laic_core.text.encode import distinct_token_rows, encode_nouns, nouns_cut_by_context
from laic_core.text.tower import TextTower
from laic_core.text.vocab import (
    NO_EXCLUDE_FILE, exclusion, exclusion_counts, load_vocabulary, read_noun_file, validate_templates,
)
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()


@dataclass
class VocabPlan:
    """What `vocab` will encode: the nouns kept (in order), why others were left out, and the keys."""

    nouns: list[str]
    templates: list[str]
    dropped: dict[str, frozenset[str]]
    ident: dict
    description: dict  # everything the rows depend on: the resumable chunks' key
    cache_key: str | None  # the key in ~/.cache/laic (None: random weights, never cached)

    def cached(self):
        return self.cache_key and encoding_cache.lookup("vocab", self.cache_key, len(self.nouns))


def plan(params, bundle, tower: TextTower, *, verbose: bool = True) -> VocabPlan:
    """The vocabulary as `vocab` encodes it for `params` and the loaded model (also used by `laic init`)."""
    templates = validate_templates(params.vocab.templates)
    nouns = load_vocabulary(params.vocab.source)
    extra = [] if params.vocab.exclude == NO_EXCLUDE_FILE else read_noun_file(params.vocab.exclude)
    dropped = exclusion(nouns, offensive=params.vocab.exclude_offensive, extra=extra)
    if dropped:
        nouns = [noun for noun in nouns if noun not in dropped]
        if verbose:  # counted, not listed: the point is that these words are not shown
            print(f"vocab: left out {len(dropped)} noun(s) (a noun may have several reasons): "
                  + ", ".join(f"{reason} {n}" for reason, n in exclusion_counts(dropped).items()))
    noun_tokens = bundle.tokenizer(nouns)
    cut = nouns_cut_by_context(bundle.tokenizer, nouns, noun_tokens, templates, tower.context_length)
    if cut and verbose:
        print(f"vocab: note: {len(cut)} noun(s) are longer, in a template, than the text tower's "
              f"{tower.context_length} tokens and are cut there (their end is not encoded); shorten these "
              f"lines of {params.vocab.source}: {name_some([n if len(n) <= 60 else n[:57] + '...' for n in cut])}",
              file=sys.stderr)
    # Nouns the tokenizer cannot tell apart ("Turkey"/"turkey" for CLIP's
    # lower-casing tokenizer) would get identical embeddings; keep the first.
    keep = distinct_token_rows(noun_tokens)
    if len(keep) < len(nouns) and verbose:
        print(f"vocab: {len(nouns) - len(keep)} noun(s) tokenize like an earlier one; kept the first spelling")
    nouns = [nouns[i] for i in keep]
    ident = model_identity(params.model.name, params.model.pretrained, layout.HASH_CACHE)
    description = {"model": ident, "nouns": nouns, "templates": templates, "dtype": str(bundle.dtype)}
    cache_key = None if params.model.pretrained in ("none", "") else fingerprint({
        **description, "model": model_key(ident), "version": encoding_cache.ENCODING_VERSION,
        "code": source_digest(text_encode, text_tower, prefix_cache)})
    return VocabPlan(nouns, templates, dropped, ident, description, cache_key)


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    params = open_stage(params_file).params
    bundle = load_clip(params.model.name, params.model.pretrained, params.model.device)
    tower = TextTower(bundle.model)
    vocab = plan(params, bundle, tower)
    nouns, templates, ident, cache_key = vocab.nouns, vocab.templates, vocab.ident, vocab.cache_key
    meta = {"source": params.vocab.source, "templates": templates, "model": params.model.name,
            "excluded": len(vocab.dropped), "excluded_by_reason": exclusion_counts(vocab.dropped)}
    cached = vocab.cached()
    if cached:
        print(f"vocab: {len(nouns)} nouns x {len(templates)} templates: reused the encoding made earlier for this "
              f"model, nouns and templates ({cached}; {encoding_cache.ENV}=off recomputes)")
        encoding_cache.restore(cached, layout.VOCAB_TEXT)
        dim = np.load(layout.VOCAB_TEXT, mmap_mode="r").shape[1]
        write_nouns(nouns, meta, record(ident, dim, repr(bundle.preprocess), str(bundle.dtype),
                                        model_logit_scale(bundle.model, params.model.pretrained)))
        return
    out = ChunkedArray(layout.VOCAB_TEXT, len(nouns), params.vocab.chunk_size, key=fingerprint(vocab.description))
    missing = out.missing()
    if not tower.causal:
        mode = "full length: this text tower is not causal"
    elif not params.vocab.prefix_cache:
        mode = "exact truncation; prefix cache off (vocab.prefix_cache: false)"
    elif prefix_cache.unsupported_reason(tower):
        mode = f"exact truncation; no prefix cache: {prefix_cache.unsupported_reason(tower)}"
    else:
        mode = "exact truncation, template prefixes cached"
    print(f"vocab: {len(nouns)} nouns x {len(templates)} templates on {bundle.device} ({mode}); "
          f"{out.n_chunks - len(missing)}/{out.n_chunks} chunk(s) already done")
    todo = sum(len(out.chunk_rows(c)) for c in missing)
    if todo:
        kept = encoding_cache.cache_dir() if cache_key else None
        print(f"vocab: encoding {todo:,} nouns x {len(templates)} templates takes about "
              f"{duration_text(estimate_seconds(bundle, tower, nouns, templates, todo, params.vocab))} here; this "
              "happens once per model: DVC reuses it for every dataset and experiment"
              + (f", and {kept} for your other projects" if kept else ""), flush=True)
    started = time.perf_counter()
    with progress_bar(todo, "vocab", unit="noun") as bar:
        for c in missing:
            rows = out.chunk_rows(c)
            out.write_chunk(c, encode_nouns(
                bundle, tower, nouns[rows.start:rows.stop], templates, batch_size=params.vocab.batch_size,
                prefix_cache=params.vocab.prefix_cache))
            bar.update(len(rows))
    if todo:
        seconds = time.perf_counter() - started
        print(f"vocab: encoded {todo} nouns in {seconds:.1f}s ({todo / seconds:.0f} nouns/s)", file=sys.stderr)
    write_nouns(nouns, meta, record(ident, out.read_chunk(0).shape[1], repr(bundle.preprocess), str(bundle.dtype),
                                    model_logit_scale(bundle.model, params.model.pretrained)))
    out.finalize(np.float32)
    if cache_key:
        encoding_cache.store("vocab", cache_key, layout.VOCAB_TEXT)


def estimate_seconds(bundle, tower, nouns: list[str], templates: list[str], todo: int, settings,
                     probe: int = 64) -> float:
    """The time `todo` nouns take, timed on a probe of the first `probe` (a few seconds; the result is dropped)."""
    sample = nouns[:min(probe, todo)]
    started = time.perf_counter()
    encode_nouns(bundle, tower, sample, templates, batch_size=settings.batch_size, prefix_cache=settings.prefix_cache)
    return (time.perf_counter() - started) * todo / max(len(sample), 1)


def write_nouns(nouns: list[str], meta: dict, provenance: dict) -> None:
    save_parquet(layout.VOCAB_NOUNS, pd.DataFrame({"noun": nouns}), {**meta, "provenance": provenance})


if __name__ == "__main__":
    run(app)
