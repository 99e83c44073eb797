"""laic_core: the math of language-assisted image clustering.

Functions take and return arrays/tensors and know nothing of files, DVC or
argv; the DVC stages in `stages/` are thin Typer commands around them (read
params and inputs, call laic_core, write outputs), and `stages/layout.py` is
the one place for artifact paths and each stage's inputs and outputs, which
dvc.yaml mirrors (checked by tests/test_layout.py).

The subpackages follow the pipeline (each `__init__` says what lives there
and what it may import; tests/test_architecture.py checks it):

- `data/`: datasets, image files, model loading, image encoding;
- `text/`: vocabulary, text tower, prefix cache, noun encoding, prompts;
- `method/`: the paper's math (relation C, noun filter, neighbours, k-means,
  centers, losses, naming, temperatures);
- `baselines/`: TAC and SCAN;
- `scoring/`: metrics, evaluation, choosing K;
- `views/`: report, figures, gallery, the many-dataset table.

At the top, the few modules everything uses: `config` (params.yaml,
validated at once), `errors`, `validation` (arrays, labels, numbers),
`artifacts` (atomic, resumable files), `provenance` (which model made an
artifact), `progress` and `methods` (the registry of methods).
"""

__version__ = "0.1.0"
