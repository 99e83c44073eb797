"""validate: check all of params.yaml and list what DVC cannot see; runs on every `dvc repro`.

DVC reruns a stage when the params or files it lists change. It never reads
the keys of params.yaml that no stage lists, so a typo such as
`model.devcie` went unnoticed until some stage happened to rerun; and it
does not look inside an image folder or manifest, a noun file or a local
model file. This stage always runs (`always_changed` in dvc.yaml): it
validates every setting (one error lists every bad key) and writes

    data/listing/dataset.json  per split: image count, digest of paths, sizes, mtimes (or contents:
                               dataset.listing), labels
    data/listing/vocab.json    the noun file's digest (vocab.source)
    data/listing/model.json    the model's identity (digests of a local config and checkpoint)

whose bytes change only when what they describe changes, so the stages that
depend on them (embed, vocab, centers, zeroshot) rerun exactly then.
"""

from __future__ import annotations

from pathlib import Path

from laic_core.artifacts import save_json
from laic_core.data.datasets import dataset_listing
from laic_core.errors import LaicError
from laic_core.provenance import model_identity, vocab_listing
from laic_core.text.vocab import validate_templates
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()

OUTPUTS = layout.LISTINGS


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    params = open_stage(params_file).params
    validate_templates(params.vocab.templates)
    ds = params.dataset
    listings = {
        "dataset": dataset_listing(ds.kind, ds.name, ds.root, ds.fit_split, ds.eval_split, download=ds.download,
                                   listing=ds.listing, cache=layout.IMAGE_HASH_CACHE),
        "vocab": vocab_listing(params.vocab.source, layout.HASH_CACHE, params.vocab.exclude),
        "model": model_identity(params.model.name, params.model.pretrained, layout.HASH_CACHE),
    }
    fit = listings["dataset"]["fit"]
    if fit.get("images", ds.num_clusters) < ds.num_clusters:  # counted unless a downloaded benchmark
        raise LaicError(f"dataset.num_clusters: K={ds.num_clusters} is larger than the {fit['images']} fit "
                        "images, and every cluster needs at least one; lower dataset.num_clusters or add images")
    for name, listing in listings.items():
        save_json(OUTPUTS[name], listing)
    images = f"{fit['images']} fit images" if "images" in fit else f"{fit['dataset']} ({fit['split']})"
    print(f"validate: {params_file} is valid; {images}")


if __name__ == "__main__":
    run(app)
