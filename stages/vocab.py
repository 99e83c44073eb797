"""vocab: text embeddings of every noun under the template ensemble.

Depends only on the model, the vocabulary and the templates, so it is
computed once per model and shared by every dataset and experiment. Writes
data/vocab/nouns.parquet (noun) and data/vocab/text.npy ((M, d) float32,
L2-normalised; row j embeds noun j). Resumable in chunks of nouns.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from laic_core.text import encoding_cache
from laic_core.artifacts import ChunkedArray, fingerprint, save_parquet
from laic_core.data.models import load_clip
from laic_core.text.encoding_cache import source_digest
from laic_core.errors import name_some
from laic_core.method.temperature import model_logit_scale
from laic_core.progress import progress_bar
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


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    params = open_stage(params_file).params
    templates = validate_templates(params.vocab.templates)
    nouns = load_vocabulary(params.vocab.source)
    extra = [] if params.vocab.exclude == NO_EXCLUDE_FILE else read_noun_file(params.vocab.exclude)
    dropped = exclusion(nouns, offensive=params.vocab.exclude_offensive, extra=extra)
    counts = exclusion_counts(dropped)
    if dropped:  # counted, not listed: the point is that these words are not shown
        print(f"vocab: left out {len(dropped)} noun(s) (a noun may have several reasons): "
              + ", ".join(f"{reason} {n}" for reason, n in counts.items()))
        nouns = [noun for noun in nouns if noun not in dropped]
    bundle = load_clip(params.model.name, params.model.pretrained, params.model.device)
    tower = TextTower(bundle.model)

    noun_tokens = bundle.tokenizer(nouns)
    cut = nouns_cut_by_context(bundle.tokenizer, nouns, noun_tokens, templates, tower.context_length)
    if cut:
        print(f"vocab: note: {len(cut)} noun(s) are longer, in a template, than the text tower's "
              f"{tower.context_length} tokens and are cut there (their end is not encoded); shorten these "
              f"lines of {params.vocab.source}: {name_some([n if len(n) <= 60 else n[:57] + '...' for n in cut])}",
              file=sys.stderr)
    # Nouns the tokenizer cannot tell apart ("Turkey"/"turkey" for CLIP's
    # lower-casing tokenizer) would get identical embeddings; keep the first.
    keep = distinct_token_rows(noun_tokens)
    if len(keep) < len(nouns):
        print(f"vocab: {len(nouns) - len(keep)} noun(s) tokenize like an earlier one; kept the first spelling")
    nouns = [nouns[i] for i in keep]

    ident = model_identity(params.model.name, params.model.pretrained, layout.HASH_CACHE)
    description = {"model": ident, "nouns": nouns, "templates": templates, "dtype": str(bundle.dtype)}
    meta = {"source": params.vocab.source, "templates": templates, "model": params.model.name,
            "excluded": len(dropped), "excluded_by_reason": counts}
    cache_key = None if params.model.pretrained in ("none", "") else fingerprint({
        **description, "model": model_key(ident), "version": encoding_cache.ENCODING_VERSION,
        "code": source_digest(text_encode, text_tower, prefix_cache)})
    cached = cache_key and encoding_cache.lookup("vocab", cache_key, len(nouns))
    if cached:
        print(f"vocab: {len(nouns)} nouns x {len(templates)} templates: reused the encoding made earlier for this "
              f"model, nouns and templates ({cached}; {encoding_cache.ENV}=off recomputes)")
        encoding_cache.restore(cached, layout.VOCAB_TEXT)
        dim = np.load(layout.VOCAB_TEXT, mmap_mode="r").shape[1]
        write_nouns(nouns, meta, record(ident, dim, repr(bundle.preprocess), str(bundle.dtype),
                                        model_logit_scale(bundle.model, params.model.pretrained)))
        return
    out = ChunkedArray(layout.VOCAB_TEXT, len(nouns), params.vocab.chunk_size, key=fingerprint(description))
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
    started = time.perf_counter()
    todo = sum(len(out.chunk_rows(c)) for c in missing)
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


def write_nouns(nouns: list[str], meta: dict, provenance: dict) -> None:
    save_parquet(layout.VOCAB_NOUNS, pd.DataFrame({"noun": nouns}), {**meta, "provenance": provenance})


if __name__ == "__main__":
    run(app)
