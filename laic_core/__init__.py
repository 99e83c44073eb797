"""laic_core: the math of language-assisted image clustering.

Functions take and return arrays/tensors and know nothing of files, DVC or
argv; the DVC stages in `stages/` are thin Typer commands around them (read
params and inputs, call laic_core, write outputs), and `stages/layout.py` is
the one place for artifact paths and each stage's inputs and outputs, which
dvc.yaml mirrors (checked by tests/test_layout.py).

One module per concept:

- settings and checks: `config` (params.yaml, validated at once), `validation`
  (arrays, labels, numbers), `errors`, `provenance` (which model made an
  artifact), `temperature` (temperatures relative to the model's logit scale);
- data and models: `datasets` (the dataset registry; `ucf101`), `models`
  (`load_clip`), `encode` (images; `ray_embed` on a Ray cluster),
  `text_tower`, `prefix_cache` and `text_encode` (texts and nouns),
  `artifacts` (atomic, resumable files);
- the method: `vocab` (noun lists, templates), `noun_filter` (TAC's filter),
  `relation` (C and its rows), `neighbors` (kNN, the consistency filter),
  `cluster` (k-means, zero-shot, the no-train baselines), `prompts` (the
  category-wise prompts), `centers` (training, assignment), `naming`;
- the baselines: `tac`, `scan`, with `losses` shared with `centers`;
- judging: `methods` (the registry of methods), `metrics` (ACC, NMI, ARI),
  `evaluation` (scores, label-free scores, diagnostics), `choose_k`,
  `report`, `figures`, `gallery`, `progress`, `experiments` (the
  many-dataset table from `dvc exp show` records, mean ± sd over seeds).
"""

__version__ = "0.1.0"
