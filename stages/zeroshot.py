"""zeroshot: CLIP zero-shot classification of the eval split with the class names.

The reference point of the paper's Fig. 1b: each class name is embedded with
the template ensemble of `vocab.templates` (mean of the normalised template
embeddings, renormalised) and every image goes to the most similar class.
Reads class *names* from the features metadata, never labels of images.

Writes data/zeroshot/assign_eval.parquet (row, cluster = class index); when
the dataset has no class names, the file has zero rows and the metadata
{"available": false}, so downstream stages can tell.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from laic_core.artifacts import load_npy, load_parquet_meta, save_parquet
from laic_core.errors import LaicError
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()

OUTPUT = layout.assignments("zeroshot", "eval")


def class_names_of(meta: dict) -> list[str] | None:
    """The class names stored by embed, or None when unknown (or empty)."""
    names = meta.get("class_names")
    if not names:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise LaicError(f"{layout.features_meta('eval')}: class_names must be a list of non-empty "
                        f"strings, got {names!r}; re-run the embed stage")
    return names


def _unavailable(reason: str) -> None:
    empty = pd.DataFrame({"row": np.zeros(0, np.int64), "cluster": np.zeros(0, np.int64)})
    save_parquet(OUTPUT, empty, {"available": False, "reason": reason})
    print(f"zeroshot: skipped ({reason})")


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    from laic_core.data.models import load_clip
    from laic_core.method.cluster import zeroshot_assign
    from laic_core.text.encode import encode_nouns
    from laic_core.text.tower import TextTower
    from laic_core.text.vocab import validate_templates

    meta_path = layout.features_meta("eval")
    if not meta_path.is_file():
        raise LaicError(f"{meta_path}: missing; run the embed stage first (`dvc repro embed`)")
    ctx = open_stage(params_file, [meta_path])
    params = ctx.params
    names = class_names_of(load_parquet_meta(meta_path))
    if names is None:
        _unavailable("the dataset has no class names")
        return
    templates = validate_templates(params.vocab.templates)
    V = load_npy(layout.features("eval"))
    bundle = load_clip(params.model.name, params.model.pretrained, params.model.device)
    class_text = encode_nouns(bundle, TextTower(bundle.model), names, templates,
                              batch_size=params.vocab.batch_size, prefix_cache=params.vocab.prefix_cache)
    if class_text.shape[1] != V.shape[1]:
        raise LaicError(
            f"class-name embeddings have dimension {class_text.shape[1]} but the image features "
            f"{layout.features('eval')} have {V.shape[1]}: the features come from another model; "
            "re-run the embed stage (`dvc repro`)")
    assigned = zeroshot_assign(V, class_text)
    table = pd.DataFrame({"row": np.arange(V.shape[0], dtype=np.int64), "cluster": assigned.astype(np.int64)})
    save_parquet(OUTPUT, table, {"available": True, "class_names": names, "templates": templates,
                                 "provenance": ctx.provenance})
    print(f"zeroshot: {V.shape[0]} images into {len(names)} classes with {len(templates)} template(s)")


if __name__ == "__main__":
    run(app)
