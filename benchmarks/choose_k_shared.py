"""Choosing K without labels on the three shared sets, with features of the MiniVLM-64 stand-in.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/choose_k_shared.py [--exp ../exp] [--ks 2-20]
        [--seeds 3] [--sets cifar10-test imagenette-val dtd10] [--representations relation image]
        [--out benchmarks/results/choose_k]

Reads precomputed features: <exp>/feats/<set>.npy (N x d, unit rows),
<exp>/feats/<set>.labels.npy and the WordNet vocabulary embedded with the same
model, <exp>/vocab/text.npy. Runs `laic_core.scoring.choose_k` exactly as
`python -m stages.choose_k` does with the default params.yaml (TAC noun
filter, ridge relation; nouns.tau = 100 / the model's logit scale 29.28), with
every image as the fit split. Writes per set and representation the curves
(CSV) and the figure (PNG), and one Markdown table: the suggested K, its
confidence, the criteria at the suggestion and at the true K (10 for each set).

Labels are read only for the table's last columns (NMI of k-means at the
suggested K and at the true K, seed 0), to say how much the choice costs;
nothing in the suggestion sees them. Run by hand: a few minutes on 2 CPU
cores with one BLAS thread (many threads on a busy machine make scikit-learn's
k-means on these sizes tens of times slower).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from laic_core.method.cluster import kmeans_fit
from laic_core.scoring.choose_k import (
    RepresentationSettings, combined_score, compact_ks, k_curves, parse_ks, representations,
    suggest_k,
)
from laic_core.scoring.metrics import nmi
from laic_core.views.figures import choose_k_figure, save_figure

PROJECT = Path(__file__).resolve().parents[1]
SETS = ("cifar10-test", "imagenette-val", "dtd10")
TRUE_K = 10
LOGIT_SCALE = 29.28  # MiniVLM-64's exp(logit_scale)
NOUNS_TAU_RELATIVE = 100.0  # params.yaml's nouns.tau_relative


def nmi_at(V, T, k, settings, labels) -> float:
    rep = next(representations(V, T, [k], settings))
    _, pred = kmeans_fit(rep.X, k, seed=0)
    return nmi(labels, pred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp", type=Path, default=PROJECT.parent / "exp")
    parser.add_argument("--ks", default="2-20")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--representations", nargs="+", default=["relation", "image"])
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "choose_k")
    args = parser.parse_args()
    ks = parse_ks(args.ks)
    args.out.mkdir(parents=True, exist_ok=True)
    T = np.load(args.exp / "vocab" / "text.npy")

    rows = []
    for name in args.sets:
        V = np.load(args.exp / "feats" / f"{name}.npy")
        labels = np.load(args.exp / "feats" / f"{name}.labels.npy")
        for rep in args.representations:
            settings = RepresentationSettings(representation=rep, nouns_tau=NOUNS_TAU_RELATIVE / LOGIT_SCALE)
            started = time.perf_counter()
            curves = k_curves(V, T, ks, list(range(args.seeds)), settings)
            seconds = time.perf_counter() - started
            s = suggest_k(curves)
            table = curves.to_frame()
            table.insert(1, "score", combined_score(curves))
            table.to_csv(args.out / f"{name}-{rep}.csv", index=False, float_format="%.6g")
            fig = choose_k_figure(curves, s, reference_k=TRUE_K, reference_label="true K",
                                  title=f"{name}, MiniVLM-64, {rep} rows")
            save_figure(fig, args.out / f"{name}-{rep}.png")
            at = {k: int(np.flatnonzero(curves.ks == k)[0]) for k in (s.k, TRUE_K) if k in curves.ks}
            rows.append((name, rep, len(V), s, curves, table, at, seconds,
                         {k: nmi_at(V, T, k, settings, labels) for k in at}))
            print(f"{name} {rep}: {s.statement()} ({seconds:.0f} s)", flush=True)

    lines = [
        f"# Choosing K without labels: the shared sets, MiniVLM-64 (true K = {TRUE_K})",
        "",
        f"`python benchmarks/choose_k_shared.py --ks {args.ks} --seeds {args.seeds}`: K = {ks[0]}..{ks[-1]}, "
        f"seeds 0..{args.seeds - 1}, k-means n_init 3 on every row, silhouette on at most 5,000 rows. "
        "relation = the method's rows (TAC noun filter recomputed per K, ridge relation), "
        "image = the CLIP features. Score = silhouette x stability (the rule); DB = Davies-Bouldin "
        "(lower is better); CH = Calinski-Harabasz. NMI (labels, seed 0) only says what each choice costs.",
        "",
        "| set | rows | N | suggested K | confidence | margin | K each criterion prefers (sil / DB / CH / stab) "
        "| stable K (>= 0.9) | score @sugg / @10 | silhouette @sugg / @10 | stability @sugg / @10 "
        "| DB @sugg / @10 | CH @sugg / @10 | NMI @sugg / @10 | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rep, n, s, curves, table, at, seconds, nmis in rows:
        def pair(column, fmt):
            return " / ".join(format(table[column][at[k]], fmt) if k in at else "n/a" for k in (s.k, TRUE_K))

        prefer = " / ".join(str(s.best_by_criterion[c]) for c in
                            ("silhouette", "davies_bouldin", "calinski_harabasz", "stability"))
        lines.append(
            f"| {name} | {rep} | {n} | {s.k} | {s.confidence} | {100 * s.margin:.1f}% | {prefer} "
            f"| {compact_ks(s.stable_ks) or '-'} | {pair('score', '.3f')} | {pair('silhouette', '.3f')} "
            f"| {pair('stability', '.2f')} | {pair('davies_bouldin', '.2f')} | {pair('calinski_harabasz', '.0f')} "
            f"| {' / '.join(f'{nmis[k]:.3f}' for k in (s.k, TRUE_K) if k in nmis)} | {seconds:.0f} |")
    lines += ["", "Statements as the command prints them:", ""]
    lines += [f"- {name} ({rep}): {s.statement()}" for name, rep, _, s, *_ in rows]
    (args.out / "choose_k_minivlm64.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'choose_k_minivlm64.md'}")


if __name__ == "__main__":
    main()
