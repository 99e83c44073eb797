"""Are the cluster names readable and right? Ways of naming the same learned centers, on the shared sets.

    python benchmarks/names.py [--workspace ../bench-paper] [--cache-dir ../dvc-cache]
        [--out benchmarks/results/names_minivlm64.md]

Reads the runs of the full method on the shared sets among a benchmark
workspace's experiments (those of benchmarks/ablation.py or quality.py; the
newest run per set and seed), straight from git and the DVC cache (it
changes nothing there): each run's learned centers (data/centers/centers.npy),
its clusters and the images' classes (data/evaluate/assignments.parquet), the
vocabulary and a sample of the image features. It names those centers in
several ways (`STRATEGIES`), all with laic_core.method.naming.name_clusters,
so the clusters are the same and only the names differ, and scores per
cluster:

- the Wu-Palmer similarity in WordNet between the name (its best sense) and
  the cluster's majority class (CIFAR-10: the class word's first sense;
  Imagenette: its WordNet id, from the set's classes.csv; DTD: a noun sense of the texture, `DTD_CLASSES`),
  computed here from /usr/share/wordnet's hypernyms (the same values as nltk's
  wup_similarity, without nltk's corpus download);
- whether the name is a taxonomic name or a rare noun (laic_core.text.wordnet's
  flags), and whether it has a gloss to show.

The strategies: `before` (proper nouns out: the naming before issue 29),
`default` (also taxonomic names out, a taxon's common name in its place), and
alternatives for rare nouns: left out, a prior against them, and a hubness
correction (CSLS, Conneau et al. 2018: a noun's score less half its mean
cosine to its 10 nearest images, so nouns near every image stop winning).
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
from laic_core.method.naming import name_clusters  # noqa: E402
from laic_core.text.wordnet import common_names, flag_mask, gloss  # noqa: E402
from laic_core.views.ablation import SWITCHES  # noqa: E402

WORDNET = Path("/usr/share/wordnet")
SETS = ("cifar10-test", "imagenette-val", "dtd10")
CIFAR_CLASSES = {"airplane": "airplane", "automobile": "car", "bird": "bird", "cat": "cat", "deer": "deer",
                 "dog": "dog", "frog": "frog", "horse": "horse", "ship": "ship", "truck": "truck"}
# DTD's classes are adjectives; these are the noun senses (data.noun offsets) of what they describe.
DTD_CLASSES = {"banded": ["04680465", "02784732"], "blotchy": ["04694809"], "braided": ["05259512", "02889035"],
               "bubbly": ["09229709"], "bumpy": ["13894434"], "chequered": ["03011162", "03011521"],
               "cobwebbed": ["03059685", "03059806"], "cracked": ["09258715", "13907272"],
               "crosshatched": ["04681797"], "crystalline": ["14883206", "09260466"]}
RARE_PRIOR = 0.02  # cosine points taken from a rare noun's score (the stand-in's nearest nouns lie ~0.01 apart)
CSLS_NEIGHBOURS, CSLS_IMAGES = 10, 2000


# ------------------------------------------------------------------ WordNet's Wu-Palmer similarity


@functools.lru_cache(maxsize=1)
def wordnet() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({offset: hypernym offsets (@ and @i)}, {lower-case lemma: its synset offsets, most frequent first})."""
    hypernyms = {}
    for line in (WORDNET / "data.noun").open(encoding="utf-8"):
        if line.startswith("  "):
            continue
        fields = line.split(" ")
        at = 4 + 2 * int(fields[3], 16)
        pointers = [fields[at + 1 + 4 * k: at + 5 + 4 * k] for k in range(int(fields[at]))]
        hypernyms[fields[0]] = [t for symbol, t, pos, _ in pointers if symbol in ("@", "@i") and pos == "n"]
    index = {}
    for line in (WORDNET / "index.noun").open(encoding="utf-8"):
        if line.startswith("  "):
            continue
        fields = line.split()
        n_synsets, n_pointers = int(fields[2]), int(fields[3])
        index[fields[0]] = fields[6 + n_pointers: 6 + n_pointers + n_synsets]
    return hypernyms, index


def senses(noun: str) -> list[str]:
    return wordnet()[1].get(noun.lower().replace(" ", "_"), [])


@functools.lru_cache(maxsize=None)
def _ancestors(offset: str) -> dict[str, int]:
    """{every hypernym of the synset, itself included: its shortest distance}."""
    hypernyms = wordnet()[0]
    dist, todo = {offset: 0}, collections.deque([offset])
    while todo:
        s = todo.popleft()
        for h in hypernyms[s]:
            if h not in dist:
                dist[h] = dist[s] + 1
                todo.append(h)
    return dist


@functools.lru_cache(maxsize=None)
def _depth(offset: str) -> int:
    hypernyms = wordnet()[0][offset]
    return 0 if not hypernyms else 1 + max(_depth(h) for h in hypernyms)


def wup(a: str, b: str) -> float:
    """Wu-Palmer similarity of two synsets, as nltk computes it (dog.n.01 / cat.n.01: 0.857)."""
    A, B = _ancestors(a), _ancestors(b)
    common = set(A) & set(B)
    if not common:
        return 0.0
    lcs = max(common, key=lambda c: (_depth(c), -A[c] - B[c]))
    depth = _depth(lcs) + 1
    return 2 * depth / (A[lcs] + B[lcs] + 2 * depth)


@functools.lru_cache(maxsize=1)
def imagenette_ids() -> dict[str, str]:
    """class name -> WordNet id, from the shared set's classes.csv ("tench" -> "n01440764")."""
    import csv

    path = PROJECT.parent / "shared" / "datasets" / "imagenette-val.classes.csv"
    return {row["name"]: row["wnid"] for row in csv.DictReader(path.open())}


def class_synsets(dataset: str, cls: str) -> list[str]:
    if dataset.startswith("imagenette"):
        wnid = cls if cls.startswith("n0") else imagenette_ids()[cls]  # the folder, or its name
        return [wnid[1:]]  # n01440764 -> data.noun offset 01440764
    if dataset.startswith("cifar"):
        return senses(CIFAR_CLASSES[cls])[:1]
    return DTD_CLASSES[cls]


def name_similarity(name: str, classes: list[str]) -> float:
    return max((wup(s, c) for s in senses(name) for c in classes), default=0.0)


# ------------------------------------------------------------------ the runs


def sh(workspace: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=workspace, capture_output=True, text=True, check=True).stdout


def full_runs(workspace: Path) -> list[dict]:
    """The newest run of the full method per (shared set, seed) among the workspace's experiments."""
    refs = [line.split() for line in sh(workspace, "for-each-ref", "refs/exps",
                                         "--format=%(objectname) %(committerdate:unix) %(refname)").splitlines()
            if "/exec/" not in line]
    newest: dict[tuple, dict] = {}
    for sha, when, ref in refs:
        params = yaml.safe_load(sh(workspace, "show", f"{sha}:params.yaml"))
        flat = {k: str(_get(params, k, default)) for k, default in SWITCHES.items()}
        name = _get(params, "dataset.name", "")
        if flat != SWITCHES or name not in SETS:
            continue
        key = (name, params.get("seed"))
        if key not in newest or int(when) > newest[key]["when"]:
            newest[key] = {"set": name, "seed": params.get("seed"), "sha": sha, "when": int(when),
                           "ref": ref.rsplit("/", 1)[-1]}
    return sorted(newest.values(), key=lambda r: (SETS.index(r["set"]), r["seed"]))


def _get(params: dict, dotted: str, default=None):
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def cached(workspace: Path, cache: Path, sha: str, path: str) -> Path:
    lock = yaml.safe_load(sh(workspace, "show", f"{sha}:dvc.lock"))
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                return cache / "files" / "md5" / out["md5"][:2] / out["md5"][2:]
    raise SystemExit(f"{sha}: no output {path} in its dvc.lock")


# ------------------------------------------------------------------ naming strategies


@functools.lru_cache(maxsize=1)
def _vocabulary_flags(nouns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(proper, taxonomic, rare, alias) over the vocabulary."""
    proper = np.array(flag_mask(nouns, "proper"))
    taxonomic = np.array(flag_mask(nouns, "taxonomic"))
    rare = np.array(flag_mask(nouns, "rare"))
    position = {noun: i for i, noun in enumerate(nouns)}
    alias = np.array([position.get(c, -1) if c else -1 for c in common_names(nouns)], np.int64)
    return proper, taxonomic, rare, alias


def strategies(nouns: list[str], T: np.ndarray, V_sample: np.ndarray) -> dict[str, dict]:
    """name -> name_clusters keyword arguments (masks, alias, penalty) over the vocabulary."""
    proper, taxonomic, rare, alias = _vocabulary_flags(tuple(nouns))
    with torch.no_grad():  # each noun's mean cosine to its nearest images: how much of a hub it is
        V = torch.from_numpy(np.ascontiguousarray(V_sample, dtype=np.float32))
        hub = torch.cat([(torch.from_numpy(T[i:i + 8192]) @ V.T).topk(CSLS_NEIGHBOURS, dim=1).values.mean(1)
                         for i in range(0, len(T), 8192)]).numpy()
    common = ~proper & ~taxonomic
    return {
        "before (proper nouns out)": {"nameable": ~proper},
        "taxonomic out": {"nameable": common},
        "default: taxonomic out, common names": {"nameable": common, "alias": alias},
        "+ rare out": {"nameable": common & ~rare, "alias": alias},
        f"+ rare prior (-{RARE_PRIOR})": {"nameable": common, "alias": alias, "penalty": RARE_PRIOR * rare},
        "+ hubness correction (CSLS)": {"nameable": common, "alias": alias, "penalty": hub / 2},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, nargs="+", default=[PROJECT.parent / "bench-paper"],
                        help="benchmark workspaces whose experiments to read (several: benchmarks/ablation.py "
                             "--parallel's)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="the workspace's DVC cache (default: "
                        "what `dvc cache dir` says there)")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "names_minivlm64.md")
    args = parser.parse_args()
    if not (WORDNET / "data.noun").is_file():
        sys.exit(f"{WORDNET} has no data.noun: install Debian's wordnet-base")
    workspaces = [w.resolve() for w in args.workspace]
    cache = (args.cache_dir or Path(subprocess.run(["dvc", "cache", "dir"], cwd=workspaces[0], capture_output=True,
                                                    text=True, check=True).stdout.strip())).resolve()
    newest: dict[tuple, dict] = {}
    for workspace in workspaces:
        for run in full_runs(workspace):
            key = (run["set"], run["seed"])
            if key not in newest or run["when"] > newest[key]["when"]:
                newest[key] = {**run, "workspace": workspace}
    runs = sorted(newest.values(), key=lambda r: (SETS.index(r["set"]), r["seed"]))
    if not runs:
        sys.exit(f"{', '.join(map(str, workspaces))}: no experiment of the full method on {', '.join(SETS)}")
    first = runs[0]
    nouns = pd.read_parquet(cached(first["workspace"], cache, first["sha"], "data/vocab/nouns.parquet"))[
        "noun"].astype(str).tolist()
    T = np.load(cached(first["workspace"], cache, first["sha"], "data/vocab/text.npy"))
    flags = {f: dict(zip(nouns, flag_mask(nouns, f))) for f in ("taxonomic", "rare")}
    results = []  # one row per (run, strategy, cluster)
    plans: dict[str, dict] = {}
    for run in runs:
        sha, workspace = run["sha"], run["workspace"]
        W = np.load(cached(workspace, cache, sha, "data/centers/centers.npy"))
        table = pd.read_parquet(cached(workspace, cache, sha, "data/evaluate/assignments.parquet"))
        V = np.load(cached(workspace, cache, sha, "data/features/fit.npy"), mmap_mode="r")
        sample = np.sort(np.random.default_rng(0).choice(len(V), size=min(CSLS_IMAGES, len(V)), replace=False))
        K = W.shape[0]
        sizes = np.bincount(table["ours"].to_numpy(), minlength=K)
        majority = table.groupby("ours")["class"].agg(lambda s: s.value_counts().index[0]).to_dict()
        for label, kwargs in strategies(nouns, T, np.asarray(V[sample])).items():
            plans.setdefault(label, kwargs)
            names = name_clusters(W, T, nouns, np.zeros((K, 1)), ["-"], sizes, **kwargs)
            for entry in names:
                k = entry["cluster"]
                if entry["empty"] or k not in majority:
                    continue
                name = entry["name"]
                results.append({"set": run["set"], "seed": run["seed"], "strategy": label, "cluster": k,
                                "name": name, "class": majority[k],
                                "wup": name_similarity(name, class_synsets(run["set"], majority[k])),
                                "taxonomic": flags["taxonomic"].get(name, False), "rare": flags["rare"].get(name, False),
                                "gloss": gloss(name) is not None})
        print(f"{run['set']} seed {run['seed']}: named", flush=True)
    frame = pd.DataFrame(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(frame, runs))
    args.out.with_suffix(".json").write_text("[\n" + ",\n".join(json.dumps(r, default=str) for r in results) + "\n]\n")
    print(f"-> {args.out}")


def report(frame: pd.DataFrame, runs: list[dict]) -> str:
    seeds = sorted({r["seed"] for r in runs})
    lines = [f"# Cluster names on the shared sets: MiniVLM-64, {len(runs)} runs of the full method "
             f"(seeds {', '.join(map(str, seeds))})", "",
             f"Measured with `python benchmarks/names.py --workspace ...` over the benchmark workspaces' "
             f"experiments ({', '.join(sorted(r['ref'] for r in runs)[:2])}, ...). "
             "Every strategy names the same learned centers (the clusters do not change); per cluster, "
             "the Wu-Palmer similarity of its name to its majority class (1 = the class itself; "
             "0.3-0.5: unrelated nouns), and the share of names that are taxonomic, rare (SemCor never tagged "
             "it nor its head word) or have a gloss. Mean over the runs' clusters.", ""]
    order = list(dict.fromkeys(frame["strategy"]))
    sets = [s for s in SETS if s in set(frame["set"])]
    header = "| strategy | " + " | ".join(f"{s} Wu-Palmer" for s in sets) + " | all Wu-Palmer | taxonomic | rare | glossed |"
    lines += [header, "|---|" + "---:|" * (len(sets) + 4)]
    for strategy in order:
        mine = frame[frame["strategy"] == strategy]
        per_set = []
        for s in sets:
            runs_wup = mine[mine["set"] == s].groupby("seed")["wup"].mean()
            sd = f" ± {runs_wup.std(ddof=1):.3f}" if len(runs_wup) > 1 else ""
            per_set.append(f"{runs_wup.mean():.3f}{sd}")
        lines.append(f"| {strategy} | " + " | ".join(per_set) + f" | {mine['wup'].mean():.3f} | "
                     f"{100 * mine['taxonomic'].mean():.0f}% | {100 * mine['rare'].mean():.0f}% | "
                     f"{100 * mine['gloss'].mean():.0f}% |")
    lines += ["", "Per-set Wu-Palmer: mean ± sd over seeds of the runs' mean over clusters.", "",
              "Names of each set's first run (cluster: name [majority class]):", ""]
    for s in sets:
        seed = min(frame[frame["set"] == s]["seed"])
        lines.append(f"**{s}, seed {seed}**")
        lines.append("")
        for strategy in order:
            mine = frame[(frame["set"] == s) & (frame["seed"] == seed) & (frame["strategy"] == strategy)]
            lines.append(f"- {strategy}: " + "; ".join(f"{r['name']} [{r['class']}]" for _, r in mine.iterrows()))
        lines.append("")
    moved = []
    base, default = order[0], order[2]
    for s in sets:
        a = frame[(frame["set"] == s) & (frame["strategy"] == base)].set_index(["seed", "cluster"])
        b = frame[(frame["set"] == s) & (frame["strategy"] == default)].set_index(["seed", "cluster"])
        changed = a.join(b, how="inner", rsuffix="_after").rename(
            columns={"name": "name_before", "class": "class_before"})
        changed = changed[changed["name_before"] != changed["name_after"]]
        moved += [f"{s}: {r.name_before} -> {r.name_after} [{r.class_before}]" for _, r in changed.iterrows()]
    lines += [f"Names the default changed ({len(moved)} of {len(frame[frame['strategy'] == base])}):", ""]
    lines += [f"- {m}" for m in moved] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
