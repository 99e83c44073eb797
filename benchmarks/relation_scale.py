"""Time and peak memory of relation -> normalise -> kNN -> consistency filter versus N.

Synthetic random unit vectors (d=512 image embeddings, M'=20,000 noun
embeddings); for every N the pipeline of the relation and neighbors stages
runs in its own subprocess, so that the peak resident set size
(VmHWM, ``stages.cost.peak_rss_mib``) belongs to that N alone:

    relation_matrix(V, T, kind="softmax", topk=choose_topk(N, M', 0))
    normalize_rows(C)
    knn(C, k=10)                           exact, blockwise
    consistency_filter(knn, random pseudo-labels)

Prints one row per N, then least-squares fits extrapolated to ImageNet-1k
(N = 1,281,167): peak memory a + b N (linear), relation time a + b N, kNN
time a N + b N^2 (exact kNN compares all pairs; on a top-k sparse C the work
per pair is the number of shared nouns).

    python benchmarks/relation_scale.py                 # N = 10k, 50k, 100k, 200k
    python benchmarks/relation_scale.py --n 10000 50000
    python benchmarks/relation_scale.py --quick         # a few seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

IMAGENET_N = 1_281_167


def _peak_rss_bytes() -> int:
    from stages.cost import peak_rss_mib  # this process's own peak (ru_maxrss would carry the parent's)

    return int(peak_rss_mib() * 2**20)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    X = rng.standard_normal((n, d), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def run_one(n: int, args: argparse.Namespace) -> dict:
    """One N, in this process: returns timings (s) and peak RSS (bytes) per phase."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    from laic_core.method.neighbors import consistency_filter, knn
    from laic_core.method.relation import choose_topk, normalize_rows, relation_matrix

    rng = np.random.default_rng(args.seed)
    rss_start = _peak_rss_bytes()
    V = _unit_rows(rng, n, args.dim)
    T = _unit_rows(rng, args.nouns, args.dim)
    pseudo = rng.integers(0, args.clusters, size=n)
    result = {"n": n, "topk": choose_topk(n, args.nouns, args.topk), "threads": torch.get_num_threads(),
              "rss_imports": rss_start, "rss_data": _peak_rss_bytes()}

    start, cpu = time.perf_counter(), _cpu_seconds()
    C = relation_matrix(V, T, kind="softmax", tau=args.tau, topk=result["topk"])
    result["t_relation"] = time.perf_counter() - start
    result["cpu_relation"] = _cpu_seconds() - cpu
    result["rss_relation"] = _peak_rss_bytes()

    start = time.perf_counter()
    C = normalize_rows(C)
    result["t_normalize"] = time.perf_counter() - start

    start, cpu = time.perf_counter(), _cpu_seconds()
    neighbours = knn(C, args.k)
    result["t_knn"] = time.perf_counter() - start
    result["cpu_knn"] = _cpu_seconds() - cpu
    result["rss_knn"] = _peak_rss_bytes()

    start = time.perf_counter()
    reliable = consistency_filter(neighbours, pseudo, 1.0)
    result["t_filter"] = time.perf_counter() - start
    result["n_reliable"] = int(reliable.sum())
    result["nnz_C"] = int(C.nnz) if hasattr(C, "nnz") else int(C.size)
    result["rss_peak"] = _peak_rss_bytes()
    return result


def _fit(x: np.ndarray, y: np.ndarray, powers: tuple[int, ...]) -> np.ndarray:
    design = np.stack([x.astype(np.float64) ** p for p in powers], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)
    return coefficients


def _predict(coefficients: np.ndarray, powers: tuple[int, ...], x: float) -> float:
    return float(sum(c * x ** p for c, p in zip(coefficients, powers)))


def report(results: list[dict]) -> None:
    gib = 1024 ** 3
    header = (f"{'N':>8} {'topk':>5} {'relation s':>10} {'(cpu s)':>8} {'normalize s':>11} {'knn s':>8} "
              f"{'(cpu s)':>8} {'filter s':>8} {'total s':>8} {'peak RSS GiB':>12} {'data GiB':>9}")
    print(header)
    print("-" * len(header))
    for r in results:
        total = r["t_relation"] + r["t_normalize"] + r["t_knn"] + r["t_filter"]
        print(f"{r['n']:>8} {r['topk']:>5} {r['t_relation']:>10.2f} {r['cpu_relation']:>8.1f} "
              f"{r['t_normalize']:>11.2f} {r['t_knn']:>8.2f} {r['cpu_knn']:>8.1f} {r['t_filter']:>8.3f} "
              f"{total:>8.2f} {r['rss_peak'] / gib:>12.2f} {r['rss_data'] / gib:>9.2f}")
    if len(results) < 2:
        return
    n = np.array([r["n"] for r in results])
    peak = np.array([r["rss_peak"] for r in results])
    t_rel = np.array([r["t_relation"] + r["t_normalize"] for r in results])
    t_knn = np.array([r["t_knn"] for r in results])
    memory_fit = _fit(n, peak, (0, 1))
    relation_fit = _fit(n, t_rel, (0, 1))
    knn_fit = _fit(n, t_knn, (1, 2))
    print()
    print(f"peak RSS  ~ {memory_fit[0] / gib:.2f} GiB + {memory_fit[1] * 1e6 / gib:.3f} GiB "
          f"per 1M images ({memory_fit[1]:.0f} bytes/image)")
    print(f"(wall times; {results[0]['threads']} torch threads; cpu s = user + system time of the process)")
    for target in (200_000, IMAGENET_N):
        print(f"  N={target:>9,}: peak RSS {_predict(memory_fit, (0, 1), target) / gib:6.2f} GiB, "
              f"relation+normalize {_predict(relation_fit, (0, 1), target):8.0f} s, "
              f"exact kNN {_predict(knn_fit, (1, 2), target):9.0f} s "
              f"(fit a N + b N^2: a={knn_fit[0]:.3g}, b={knn_fit[1]:.3g})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 50_000, 100_000, 200_000],
                        help="numbers of images to run, one subprocess each")
    parser.add_argument("--quick", action="store_true",
                        help="small run: N = 2k, 5k, 10k with M' = 2,000 and a top-64 sparse C")
    parser.add_argument("--nouns", type=int, default=20_000, help="M', the number of selected nouns")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10, help="neighbours per image")
    parser.add_argument("--topk", type=int, default=0,
                        help="entries kept per row of C; 0 = choose_topk's auto rule")
    parser.add_argument("--tau", type=float, default=0.005)
    parser.add_argument("--clusters", type=int, default=1000, help="number of random pseudo-labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        print(json.dumps(run_one(args.child, args)))
        return
    if args.quick:
        args.n, args.nouns = [2_000, 5_000, 10_000], 2_000
        args.topk = args.topk or 64  # the auto rule would pick dense C here; keep the large-N regime
    passthrough = ["--nouns", str(args.nouns), "--dim", str(args.dim), "--k", str(args.k),
                   "--topk", str(args.topk), "--tau", str(args.tau), "--clusters", str(args.clusters),
                   "--seed", str(args.seed)]
    print(f"d={args.dim}, M'={args.nouns}, k={args.k}, tau={args.tau}, random unit vectors; "
          "one subprocess per N", flush=True)
    results = []
    for n in args.n:
        completed = subprocess.run([sys.executable, __file__, "--child", str(n), *passthrough],
                                   capture_output=True, text=True)
        if completed.returncode != 0:
            print(f"N={n} failed (exit {completed.returncode}):\n{completed.stderr[-2000:]}", flush=True)
            break
        results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"  N={n}: relation {r['t_relation']:.1f} s, knn {r['t_knn']:.1f} s, "
              f"peak RSS {r['rss_peak'] / 1024 ** 3:.2f} GiB", flush=True)
    print()
    report(results)
    if args.quick:
        print("(--quick is a smoke run: with M' = 2,000 the rows of C share far more nouns than at "
              "M' = 20,000, so its fits do not extrapolate)")


if __name__ == "__main__":
    main()
