"""`laic`: one command for everything around the pipeline; DVC runs the pipeline itself.

    laic init FOLDER [--clusters K] [--model NAME] [--pretrained TAG|PATH]
    laic open                       the cluster browser of the last run
    laic choose-k [...]             = python -m stages.choose_k
    laic export OUT [...]           = python -m stages.export
    laic predict FOLDER [...]       = python -m stages.predict
    laic table run|collect|... [...] = python -m stages.table

The forwarding commands run the module exactly as `python -m stages.<name>`
does (same options, same `--help`, same messages), so both forms stay one
command each. Run `laic` in the project's folder (the one holding dvc.yaml).
"""

from __future__ import annotations

import runpy
import sys
import time
import webbrowser
from pathlib import Path

import typer

from laic_core.errors import LaicError
from laic_core.progress import duration_text
from stages import layout
from stages.runner import run

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Language-assisted image clustering: the commands around `dvc repro`.")

# laic command -> (stages module, what it does)
FORWARDED = {
    "choose-k": ("stages.choose_k", "suggest the number of clusters from the images alone"),
    "export": ("stages.export", "lay the images out as a folder per cluster"),
    "predict": ("stages.predict", "put new images into the learned clusters"),
    "table": ("stages.table", "run and collect experiments over datasets and seeds"),
}


def forward(module: str, args: list[str]) -> None:
    """Run `python -m <module> <args>` in this process (its own error handling and exit code)."""
    sys.argv = [module.replace(".", "/") + ".py", *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _forwarding_command(name: str, module: str, help_text: str) -> None:
    @app.command(name, help=f"{help_text} (python -m {module}; laic {name} --help for its options)",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                 add_help_option=False)
    def command(ctx: typer.Context) -> None:
        forward(module, list(ctx.args))


@app.command("open")
def open_browser(
    print_only: bool = typer.Option(False, "--print", help="print the page's address instead of opening it"),
) -> None:
    """Open the cluster browser of the last `dvc repro` in your web browser."""
    index = layout.BROWSER_INDEX.resolve()
    if not index.is_file():
        raise LaicError(f"{layout.BROWSER_INDEX} does not exist yet: run `dvc repro` first (the browser is its "
                        "last stage), in the project folder")
    url = index.as_uri()
    if print_only or not webbrowser.open(url):
        print(url)


@app.command("init")
def init(
    folder: Path = typer.Argument(..., help="the folder of images to cluster (sub-folders may be classes)"),
    clusters: int = typer.Option(None, "--clusters", "-k", help="how many clusters (dataset.num_clusters); "
                                 "leave out to keep params.yaml's and ask `laic choose-k` after `dvc repro embed`"),
    model: str = typer.Option(None, "--model", help="model.name: an open_clip model (ViT-B-32) or a model config"),
    pretrained: str = typer.Option(None, "--pretrained",
                                   help="model.pretrained: an open_clip tag (openai) or a local checkpoint path"),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="the params file to set"),
    measure: bool = typer.Option(True, "--measure/--no-measure",
                                 help="time the model on a few images and nouns to estimate the first run"),
) -> None:
    """Set params.yaml to cluster FOLDER, and say what the first `dvc repro` will cost."""
    from laic_core.config import load_params
    from laic_core.data.datasets import load_split
    from laic_core.provenance import looks_like_path
    from laic_core.views.first_run import first_run_lines
    from stages.params_file import set_params

    if not Path("dvc.yaml").is_file():
        raise LaicError("run `laic init` in the project folder (the one holding dvc.yaml and params.yaml)")
    root = folder.expanduser().resolve()
    if not root.is_dir():
        raise LaicError(f"{folder}: no such folder; give the folder of images to cluster")
    images = load_split("imagefolder", root.name, root, "all")
    if len(images) == 0:
        raise LaicError(f"{root}: no image found in it (nor in its sub-folders); give a folder of images")
    if clusters is not None and not 2 <= clusters <= len(images):
        raise LaicError(f"--clusters {clusters}: give a number from 2 to the {len(images)} images of {root}")
    changes = {"dataset.kind": "imagefolder", "dataset.name": root.name, "dataset.root": str(root),
               "dataset.fit_split": "all", "dataset.eval_split": "all"}
    if clusters is not None:
        changes["dataset.num_clusters"] = clusters
    if model is not None:
        changes["model.name"] = model
    if pretrained is not None:
        changes["model.pretrained"] = pretrained
    set_params(params_file, changes)
    params = load_params(params_file)
    print(f"{params_file}: " + ", ".join(f"{key} {value}" for key, value in changes.items()))
    classes = len(images.class_names or [])
    print(f"{root}: {len(images):,} images" + (f" in {classes} sub-folders (their names are the classes, read only "
                                              "for the scores)" if classes > 1 else ""))
    if params.dataset.num_clusters > len(images):
        raise LaicError(f"dataset.num_clusters is {params.dataset.num_clusters} but {root} holds {len(images)} "
                        "images: pass --clusters")
    embed_rate = vocab_rate = None
    vocab_cached = False
    n_nouns = None
    if measure:
        embed_rate, vocab_rate, n_nouns, vocab_cached = _measure(params, images)
    shown = [Path(v).name if looks_like_path(v) else v for v in (params.model.name, params.model.pretrained)]
    for line in first_run_lines(n_images=len(images), model=f"{shown[0]} ({shown[1]})",
                                embed_rate=embed_rate, vocab_rate=vocab_rate, n_nouns=n_nouns,
                                vocab_cached=vocab_cached, clusters=params.dataset.num_clusters,
                                k_given=clusters is not None):
        print(line)


for _name, (_module, _help) in FORWARDED.items():
    _forwarding_command(_name, _module, _help)


def _measure(params, images) -> tuple[float | None, float | None, int | None, bool]:
    """(images/s, nouns/s, nouns to encode, already cached) with this model on this machine; Nones on failure."""
    import torch

    from laic_core.data.models import load_clip
    from laic_core.text.encode import encode_nouns
    from laic_core.text.tower import TextTower
    from stages import vocab

    try:
        bundle = load_clip(params.model.name, params.model.pretrained, params.model.device)
    except LaicError as exc:
        print(f"note: the model cannot be loaded yet, so the estimate below is not measured here: {exc}")
        return None, None, None, False
    tower = TextTower(bundle.model)
    plan = vocab.plan(params, bundle, tower, verbose=False)
    try:  # decoding included, as embed does it (there with more processes); after a warm-up batch
        for sample in (range(min(2, len(images))), range(min(16, len(images)))):
            started = time.perf_counter()
            batch = torch.stack([bundle.preprocess(images.load_image(i)) for i in sample])
            with torch.inference_mode():
                bundle.model.encode_image(batch.to(bundle.device, dtype=bundle.dtype))
        embed_rate = len(sample) / (time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 (an unreadable image: embed will name it; the estimate goes on)
        print(f"note: could not time the image encoder here ({exc})")
        embed_rate = None
    started = time.perf_counter()
    probe = plan.nouns[:32]
    encode_nouns(bundle, tower, probe, plan.templates, batch_size=params.vocab.batch_size,
                 prefix_cache=params.vocab.prefix_cache)
    vocab_rate = len(probe) / (time.perf_counter() - started)
    return embed_rate, vocab_rate, len(plan.nouns), bool(plan.cached())


def main() -> None:
    """The `laic` console script."""
    run(app, record_cost=False)


if __name__ == "__main__":
    main()
