"""End to end: `dvc repro`, caching, `dvc exp run -S` and `dvc metrics diff` in a temporary repo.

The repo is a copy of this project's pipeline (dvc.yaml, stages/, laic_core/)
with params pointing at the tiny random-weight model, a small noun list and a
generated image tree. No network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import make_image_tree, write_tiny_config

PROJECT = Path(__file__).resolve().parents[1]
NOUNS = """# a small vocabulary for the smoke pipeline
dog
cat
car
truck
airplane
ship
bird
horse
frog
deer
apple
tree
house
boat
flower
"""

pytestmark = pytest.mark.slow


def sh(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    if args[0] == "dvc":  # the interpreter running the tests: no dvc on PATH needed
        args = (sys.executable, "-m", "dvc", *args[1:])
    env = dict(os.environ, PYTHONUNBUFFERED="1", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def ran_stages(proc: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


def make_repo(root: Path, *, labelled: bool = True) -> Path:
    """A git + DVC repo holding the pipeline, tiny-model params and images."""
    root.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", ".gitignore", "clusters.yaml"):
        shutil.copy(PROJECT / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("stages", "laic_core"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=ignore)
    write_tiny_config(root)
    (root / "nouns.txt").write_text(NOUNS)
    if labelled:
        make_image_tree(root / "images" / "train", classes=3, per_class=8, seed=1)
        make_image_tree(root / "images" / "test", classes=3, per_class=4, seed=2)
    else:  # a flat folder: no class sub-folders, so no labels anywhere
        flat = root / "images" / "train"
        make_image_tree(root / "tmp_tree", classes=3, per_class=8, seed=1)
        flat.mkdir(parents=True)
        for i, f in enumerate(sorted((root / "tmp_tree").rglob("*.png"))):
            f.rename(flat / f"img_{i:03d}.png")
        shutil.rmtree(root / "tmp_tree")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["dataset"].update(kind="imagefolder", name="mine", root="images", fit_split="train",
                             eval_split="train" if not labelled else "test", num_clusters=3)
    params["model"].update(name="laic-tiny-clip.json", pretrained="none", device="cpu", batch_size=8)
    params["embed"].update(num_workers=0, chunk_size=8)
    params["vocab"].update(source="nouns.txt", templates=["a photo of a {}.", "art of the {}."])
    params["nouns"].update(images_per_group=4, gamma=2)
    params["neighbors"].update(k=3, min_agreement=0.6, image_k=5)
    params["tac"].update(epochs=3)
    params["scan"].update(epochs=3, heads=2)
    params["centers"].update(steps=6, batch_size=16)
    params["evaluate"].update(purity_ks=[1, 3])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "ci@example.com")
    sh(root, "git", "config", "user.name", "ci")
    sh(root, "dvc", "init", "-q")
    sh(root, "dvc", "config", "core.analytics", "false")
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = make_repo(tmp_path_factory.mktemp("e2e") / "project")
    first = sh(root, "dvc", "repro")
    assert {"embed", "vocab", "nouns", "relation", "neighbors"} <= ran_stages(first)
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    return root


def test_repro_produces_every_artifact_and_is_cached(repo):
    feats = np.load(repo / "data/features/fit.npy")
    assert feats.shape == (24, 32)
    assert np.load(repo / "data/features/eval.npy").shape == (12, 32)
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for out in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            path = out if isinstance(out, str) else next(iter(out))
            assert (repo / path).exists(), f"stage {name} did not write {path}"
    second = sh(repo, "dvc", "repro")
    # validate runs every time (it checks params.yaml and lists the images); its
    # listings did not change, so nothing else reruns and dvc.lock is unchanged.
    assert ran_stages(second) == {"validate"}
    assert sh(repo, "git", "status", "--porcelain").stdout == ""
    status = sh(repo, "dvc", "status")
    assert status.stdout.split() == ["validate:", "always", "changed"]


def test_exp_run_reruns_only_downstream_of_the_changed_param(repo):
    proc = sh(repo, "dvc", "exp", "run", "-S", "relation.ridge_lambda=0.1")
    ran = ran_stages(proc)
    assert "relation" in ran and "neighbors" in ran
    assert not ran & {"embed", "vocab", "nouns"}
    # `dvc exp run` leaves the experiment's results in the workspace.
    params_diff = json.loads(sh(repo, "dvc", "params", "diff", "--json").stdout)
    lam = params_diff["params.yaml"]["relation.ridge_lambda"]
    assert (lam["old"], lam["new"]) == (1.0, 0.1)
    metrics_diff = json.loads(sh(repo, "dvc", "metrics", "diff", "--json").stdout)
    changed = {f"{f}:{k}" for f, entries in metrics_diff.items() for k in entries}
    assert changed, "dvc metrics diff shows no change after relation.ridge_lambda changed"
    assert any(c.startswith(("metrics/diagnostics.json", "metrics/neighbors.json", "metrics/scores.json",
                             "metrics/centers.json")) for c in changed), changed
    # the README's curated view: the headline columns, the dataset and the seed, nothing else
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    keep = re.search(r"dvc exp show --drop '\.\*' --keep '([^']+)'", readme).group(1)
    shown = sh(repo, "dvc", "exp", "show", "--csv", "--drop", ".*", "--keep", keep).stdout.splitlines()
    columns = shown[0].split(",")
    assert {"headline.ours_acc", "headline.clip_kmeans_acc", "headline.ours_minus_clip_kmeans_acc",
            "dataset.name", "seed"} <= set(columns) and len(columns) <= 12, columns
    assert len(shown) >= 3  # the workspace, the baseline commit and the experiment


def test_a_correction_reruns_evaluate_and_the_browser_only(repo):
    original = (repo / "clusters.yaml").read_text()
    (repo / "clusters.yaml").write_text(original + "- {rename: 0, to: firsts}\n- {method: scan, junk: 1}\n")
    try:
        proc = sh(repo, "dvc", "repro")
        assert ran_stages(proc) == {"validate", "evaluate", "browse"}
        table = pd.read_csv(repo / "data/evaluate/assignments.csv")
        assert set(table.loc[table["ours_corrected"] == 0, "ours_name"]) == {"firsts"}
        assert (table["scan_corrected"] == -1).sum() == (table["scan"] == 1).sum()
        fixed = json.loads((repo / "metrics/scores_corrected.json").read_text())
        assert set(fixed) == {"ours", "scan"} and "acc" in fixed["ours"]
        cards = (repo / "data/browser/data/clusters/ours.js").read_text()
        assert '"name":"firsts"' in cards and (repo / "data/browser/index.html").is_file()
        (repo / "clusters.yaml").write_text(original + "- {rename: 9, to: nobody}\n")
        stale = sh(repo, "dvc", "repro")  # an id the run does not have: set aside and said, never a failed run
        assert 'set aside: this run has no cluster 9 (it has 0..2)' in stale.stdout
        (repo / "clusters.yaml").write_text(original + "- {rename: 0, to: a, to: b}\n")
        bad = sh(repo, "dvc", "repro", check=False)  # a malformed file still stops the run
        assert bad.returncode != 0 and "line " in bad.stdout + bad.stderr and "gives `to` 2 times" in bad.stdout + bad.stderr
    finally:
        (repo / "clusters.yaml").write_text(original)
    assert "evaluate" in ran_stages(sh(repo, "dvc", "repro"))  # the browser may come from DVC's run cache
    assert '"name":"firsts"' not in (repo / "data/browser/data/clusters/ours.js").read_text()


def content(path: Path) -> bytes:
    return path.read_bytes()  # prompts.pt included: the same tensors give the same bytes


def test_labels_are_read_by_evaluate_only(repo, tmp_path):
    """Scramble every label; every stage but evaluate must produce the same bytes."""
    work = tmp_path / "copy"
    shutil.copytree(repo, work, ignore=shutil.ignore_patterns(".dvc", ".git"))
    from stages.layout import STAGES

    # tac and scan too; browse shows the class mix of evaluate's per-image table: it comes after evaluate
    upstream = [s for s in STAGES if s not in ("validate", "embed", "vocab", "evaluate", "browse")]
    stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
    outs = [o if isinstance(o, str) else next(iter(o)) for s in upstream for o in stages[s].get("outs", [])]
    before = {o: content(work / o) for o in outs}
    rng = np.random.default_rng(0)
    for role in ("fit", "eval"):
        path = work / f"data/features/{role}.parquet"
        table = pq.read_table(path)  # keeps the schema metadata (class names)
        labels = rng.permutation(table.column("label").to_numpy())
        table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels))
        pq.write_table(table, path)  # same class names, scrambled per-image labels
    for stage in upstream:
        sh(work, sys.executable, "-m", f"stages.{stage}")
    changed = [o for o in outs if content(work / o) != before[o]]
    assert changed == []
    sh(work, sys.executable, "-m", "stages.evaluate")
    scores = json.loads((work / "metrics/scores.json").read_text())
    assert scores != json.loads((repo / "metrics/scores.json").read_text())


def test_unlabelled_dataset_runs_every_stage(tmp_path):
    root = make_repo(tmp_path / "unlabelled", labelled=False)
    sh(root, "dvc", "repro")
    meta = pd.read_parquet(root / "data/features/fit.parquet")
    assert "label" not in meta.columns
    assert len(pd.read_parquet(root / "data/centers/assign_eval.parquet")) == 24
    assert (root / "metrics/report.md").is_file()


# ------------------------------------------------------------------ hardening


def lock_md5(repo: Path, stage: str, path: str) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == path)


def test_a_typo_in_a_key_no_stage_lists_fails_repro_at_once(repo):
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["model"]["devcie"] = params["model"].pop("device")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        proc = sh(repo, "dvc", "repro", check=False)
    finally:
        (repo / "params.yaml").write_text(original)
    assert proc.returncode != 0
    assert "model.devcie: unknown key" in proc.stdout + proc.stderr
    assert ran_stages(proc) == {"validate"}


def test_centers_rerun_writes_the_same_prompts_bytes(repo):
    before = lock_md5(repo, "centers", "data/centers/prompts.pt")
    proc = sh(repo, "dvc", "repro", "-f", "-s", "centers")
    assert ran_stages(proc) == {"centers"}
    assert lock_md5(repo, "centers", "data/centers/prompts.pt") == before


def test_an_image_replaced_in_place_reruns_embed_without_force(repo):
    train = repo / "images" / "train"
    (train / "class_0" / "img_0.png").write_bytes((train / "class_1" / "img_0.png").read_bytes())
    proc = sh(repo, "dvc", "repro")
    assert {"validate", "embed", "nouns", "centers"} <= ran_stages(proc)
    assert "vocab" not in ran_stages(proc)  # the noun embeddings do not depend on the images
    assert ran_stages(sh(repo, "dvc", "repro")) == {"validate"}


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # a short-lived child (a shell, git) already gone
        return b""


def test_kill_9_of_dvc_stops_the_running_stage(repo):
    """The probe: the orphaned stage used to finish later and overwrite the restored outputs."""
    import signal
    import time

    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["centers"]["steps"] = 200_000  # a stage that runs for minutes
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # DVC deletes a stage's outputs before running it; those it does not cache
    # (metrics, kept by git in a real project) are restored from this copy.
    uncached = {path: (repo / path).read_bytes() for path in ("metrics/centers.json", "metrics/centers_history.csv")}
    env = dict(os.environ, PYTHONUNBUFFERED="1", DVC_NO_ANALYTICS="1")
    dvc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-s", "centers"], cwd=repo, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stage = []
    try:
        deadline = time.monotonic() + 120
        while not stage and time.monotonic() < deadline:
            stage = [p for p in descendants(dvc.pid) if b"stages.centers" in cmdline(p)]
            time.sleep(0.2)
        assert stage, "the centers stage never started"
        time.sleep(3)  # well into training
        assert running(stage[0])
        os.kill(dvc.pid, signal.SIGKILL)
        dvc.wait()
        deadline = time.monotonic() + 20
        while any(running(p) for p in stage) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(running(p) for p in stage), "the stage kept running after dvc was killed"
        output = dvc.stdout.read()
    finally:
        for p in stage:
            if running(p):
                os.kill(p, signal.SIGKILL)
        (repo / "params.yaml").write_text(original)
    assert "stopped: the process that started this stage (dvc) has exited" in output
    # What DVC (or the user) restores stays restored.
    sh(repo, "dvc", "checkout", "-f")
    for path, data in uncached.items():
        (repo / path).write_bytes(data)
    time.sleep(3)
    assert sh(repo, "dvc", "status").stdout.split() == ["validate:", "always", "changed"]


def test_a_damaged_cache_object_restored_by_checkout_names_the_stage_to_rerun(repo):
    """The probe: a truncated object in .dvc/cache, `dvc checkout`, then a stage: a numpy traceback
    ("EOF: reading array header")."""
    md5 = lock_md5(repo, "embed", "data/features/fit.npy")
    obj = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    original = obj.read_bytes()
    obj.chmod(0o644)
    try:
        obj.write_bytes(original[:40])
        (repo / "data/features/fit.npy").unlink()
        sh(repo, "dvc", "checkout", "data/features/fit.npy")
        proc = sh(repo, sys.executable, "-m", "stages.nouns", check=False)
    finally:
        obj.write_bytes(original)
        (repo / "data/features/fit.npy").unlink()
        sh(repo, "dvc", "checkout", "data/features/fit.npy")
    assert proc.returncode == 1
    assert re.fullmatch(r"error: data/features/fit.npy: damaged or incomplete \(EOF: reading array header[^)]*\); "
                        r"rerun the stage that writes it: `dvc repro -f embed`", proc.stderr.strip().splitlines()[-1])
    assert "Traceback" not in proc.stderr


def test_a_git_ignored_dataset_root_in_a_queued_experiment_says_why_it_is_missing(tmp_path):
    """The probe: `dvc exp run --queue` said "dataset.root: images does not exist"; its copy of the
    project is made from git, which ignores the images. (`--temp` makes the same copy, without a queue.)"""
    root = make_repo(tmp_path / "queued")
    with open(root / ".gitignore", "a") as fh:
        fh.write("/images/\n")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "images ignored")
    proc = sh(root, "dvc", "exp", "run", "--temp", check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert re.search(r"error: dataset.root: images does not exist in this experiment's copy of the project "
                     r"\(\S+/\.dvc/tmp/exps/\S+\): `dvc exp run --queue` \(and --temp\) runs each experiment in a copy "
                     r"made from git, and images is ignored by git \(\.gitignore\); set dataset.root in params.yaml "
                     rf"to an absolute path \({re.escape(str(root / 'images'))}\)", output), output


def test_the_ablation_command_reruns_only_after_each_switch_and_tabulates(tmp_path):
    """`table ablation` on a folder given by -S: the full method is the committed run (nothing reruns),
    the variant reruns from its stage on, and the table and Fig. 4 come out."""
    root = make_repo(tmp_path / "ablation")
    sh(root, "dvc", "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    folder = ["-S", "dataset.kind=imagefolder", "-S", "dataset.name=mine", "-S", "dataset.root=images",
              "-S", "dataset.fit_split=train", "-S", "dataset.eval_split=test", "-S", "dataset.num_clusters=3"]
    env_path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    proc = subprocess.run([sys.executable, "-m", "stages.table", "ablation", *folder, "--seeds", "0",
                           "--variant", "no_filter"], cwd=root, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PATH=env_path, DVC_NO_ANALYTICS="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = ran_stages(proc)  # downstream stages rerun where their inputs changed (centers: the reliable mask)
    assert "neighbors" in ran and ran <= {"validate", "neighbors", "centers", "evaluate", "browse"}, ran
    table = (root / "metrics" / "ablation.md").read_text()
    assert "| full method (ours) | 1 |" in table and "| no consistency filter (every image reliable) | 1 |" in table
    assert "Made by `python -m stages.table ablation" in table
    assert (root / "metrics" / "fig4.csv").read_text().count("mine ·") == 3
    neighbors = json.loads((root / "metrics" / "neighbors.json").read_text())
    assert neighbors["filter"] == "none" and neighbors["fraction_reliable"] == 1.0


# ------------------------------------------------------------------ a person's loop


def _outcomes(repo: Path) -> tuple[pd.DataFrame, dict]:
    table = pd.read_parquet(repo / "data/evaluate/assignments.parquet")
    meta = json.loads(pq.read_schema(repo / "data/evaluate/assignments.parquet").metadata[b"laic"])
    return table, meta


def _mostly_theirs(before: pd.DataFrame, after: pd.DataFrame, old: int, new_rows) -> float:
    """The share of the images `new_rows` (of `after`) that were in cluster `old` of ours in `before`."""
    was = dict(zip(before["source"], before["ours"]))
    sources = after.loc[new_rows, "source"]
    return float(np.mean([was.get(s) == old for s in sources])) if len(sources) else 1.0


def test_corrections_follow_their_clusters_through_a_seed_and_a_k_change(repo):
    """The probe: after `dvc exp run -S seed=1` a renamed cluster held another cluster's images with no word,
    and after a K change evaluate stopped on 'unknown cluster id(s)'."""
    params, original = (repo / "params.yaml").read_text(), (repo / "clusters.yaml").read_text()
    try:
        before, meta = _outcomes(repo)
        run = meta["partitions"]["ours"]
        sizes = before["ours"].value_counts()  # (the tiny random model may put every image in one cluster)
        big = int(sizes.index[0])
        other = int(sizes.index[1]) if len(sizes) > 1 else (big + 1) % 3
        # one line as the browser writes it, one by hand (bound to this run when first seen)
        (repo / "clusters.yaml").write_text(original + f'- {{method: ours, rename: {big}, to: "firsts", run: {run}}}\n'
                                            f"- {{junk: {other}}}\n")
        sh(repo, "dvc", "repro")
        table, meta = _outcomes(repo)
        assert [o["status"] for o in meta["resolution"]] == ["applied", "applied"]
        for change in (["-S", "seed=1"], ["-S", "dataset.num_clusters=2"]):
            proc = sh(repo, "dvc", "exp", "run", *change)  # exit 0, whatever became of the lines
            after, meta = _outcomes(repo)
            rename, junk = meta["resolution"]
            if meta["partitions"]["ours"] != run:
                assert rename["status"] != "applied" and junk["status"] != "applied"  # bound to the first run
            said = proc.stdout
            for o in (rename, junk):
                assert o["status"] in ("applied", "carried", "set aside")
                if o["status"] != "applied":
                    assert f"{o['where']}: {o['line']} {o['status']}" in said
            # no renamed or junk cluster whose images are mostly another cluster's
            named = after["ours_name"] == "firsts"
            assert named.any() == (rename["status"] in ("applied", "carried"))
            assert _mostly_theirs(before, after, big, after.index[named]) > 0.5
            junked = after.get("ours_corrected", after["ours"]) == -1  # no column: nothing corrected
            assert junked.any() == (junk["status"] in ("applied", "carried") and bool(junk["ids"]))
            assert _mostly_theirs(before, after, other, after.index[junked]) > 0.5
            report = (repo / "metrics/report.md").read_text()
            for o in (rename, junk):
                if o["status"] != "applied":
                    assert f"- {o['where']} `{o['line']}` **{o['status']}**" in report
            notice = (repo / "data/browser/data/run.js").read_text()
            assert all(o["where"] in notice for o in (rename, junk) if o["status"] != "applied")
    finally:
        (repo / "params.yaml").write_text(params)
        (repo / "clusters.yaml").write_text(original)
    sh(repo, "dvc", "repro")
