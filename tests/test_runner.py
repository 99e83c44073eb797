"""A stage started by dvc stops when dvc dies (kill -9), instead of writing outputs later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]

# A stand-in stage: records its pid, then would write an output 30 s later.
STAGE = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {project!r})
    time.sleep({startup!r})  # a stage importing torch: dvc may die meanwhile
    if {fallback_only!r}:  # the watchdog thread alone, as on systems without prctl
        os.environ.pop("DVC_STAGE")  # so that `import stages` does not arm it with prctl
        from stages import runner
        runner.exit_with_parent(use_prctl=False)
    else:
        from stages import runner  # importing the package arms it under dvc
    app = runner.stage_app()

    @app.command()
    def main(out: str) -> None:
        with open(out + ".pid", "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(30)
        with open(out + ".late", "w") as fh:
            fh.write("written after the parent died")

    runner.run(app)
""")

# A stand-in dvc: starts the stage (through a shell that waits, when asked) and waits.
PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    stage = [sys.executable, {stage!r}, {out!r}]
    if {via_shell!r}:
        # `; true` keeps the shell alive between parent and stage, as some $SHELLs do
        stage = ["/bin/sh", "-c", " ".join(stage) + " 2>" + {err!r} + "; true"]
        subprocess.Popen(stage, env=dict(os.environ, DVC_STAGE="test"))
    else:
        subprocess.Popen(stage, env=dict(os.environ, DVC_STAGE="test"), stderr=open({err!r}, "w"))
    time.sleep(60)
""")


def alive(pid: int) -> bool:
    """Running (an exited process whose new parent has not reaped it yet is a zombie: not alive)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def start(tmp_path: Path, *, fallback_only: bool = False, via_shell: bool = False, startup: float = 0.0):
    out = str(tmp_path / "out")
    err = str(tmp_path / "stage.err")
    stage = tmp_path / "stage.py"
    stage.write_text(STAGE.format(project=str(PROJECT), fallback_only=fallback_only, startup=startup))
    parent_script = tmp_path / "parent.py"
    parent_script.write_text(PARENT.format(stage=str(stage), out=out, err=err, via_shell=via_shell))
    return subprocess.Popen([sys.executable, str(parent_script)]), out, err


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            pass
    return found


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@needs_proc
@pytest.mark.parametrize("fallback_only, via_shell", [(False, False), (True, False), (False, True)],
                         ids=["prctl", "watchdog-thread", "shell-between"])
def test_stage_stops_when_its_parent_is_killed(tmp_path, fallback_only, via_shell):
    parent, out, err = start(tmp_path, fallback_only=fallback_only, via_shell=via_shell)
    try:
        assert wait_for(lambda: Path(out + ".pid").is_file() and Path(out + ".pid").read_text(), 30)
        pid = int(Path(out + ".pid").read_text())
        time.sleep(0.5)  # the stage is running its command
        assert alive(pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert wait_for(lambda: not alive(pid), 10), "the stage kept running after its parent died"
    finally:
        if parent.poll() is None:
            parent.kill()
    assert not Path(out + ".late").exists()
    assert "stopped: the process that started this stage (dvc) has exited" in Path(err).read_text()


@needs_proc
def test_stage_stops_when_its_parent_died_while_it_was_starting(tmp_path):
    parent, out, err = start(tmp_path, startup=2.0)
    try:
        assert wait_for(lambda: children_of(parent.pid), 30)
        (pid,) = children_of(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)  # before the stage reached `import stages`
        parent.wait()
        time.sleep(0.3)
        adopted_by = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if adopted_by != 1:
            pytest.skip("a child subreaper adopts orphans here, so an orphan cannot tell from its parent pid")
        assert wait_for(lambda: not alive(pid), 15), "the stage kept running after its parent died"
    finally:
        if parent.poll() is None:
            parent.kill()
    assert not Path(out + ".pid").exists() and not Path(out + ".late").exists()
    assert "stopped: the process that started this stage (dvc)" in Path(err).read_text()


def test_only_a_stage_run_by_dvc_is_tied_to_its_parent(monkeypatch, tmp_path):
    """Run by hand (no DVC_STAGE), a stage keeps the default SIGTERM handling, so nohup works."""
    from stages import runner

    monkeypatch.chdir(tmp_path)  # the run records its cost in metrics/cost/ of the working folder
    monkeypatch.setattr(sys, "argv", ["stage"])
    called = []
    monkeypatch.setattr(runner, "exit_with_parent", lambda: called.append(True))
    monkeypatch.setattr(runner, "handle_interrupts", lambda: None)  # pytest keeps its own Ctrl-C
    app = runner.stage_app()
    app.command()(lambda: None)
    for env, expected in ((None, []), ("embed", [True])):
        if env is None:
            monkeypatch.delenv("DVC_STAGE", raising=False)
        else:
            monkeypatch.setenv("DVC_STAGE", env)
        with pytest.raises(SystemExit) as done:
            runner.run(app)
        assert done.value.code in (0, None) and called == expected


def test_a_full_disk_outside_laics_own_writes_is_one_line(monkeypatch, capsys):
    import errno

    from stages import runner

    monkeypatch.setattr(sys, "argv", ["stage"])
    monkeypatch.setattr(runner, "handle_interrupts", lambda: None)  # pytest keeps its own Ctrl-C
    app = runner.stage_app()

    @app.command()
    def main() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "data/centers/prompts.pt")

    with pytest.raises(SystemExit) as done:
        runner.run(app, record_cost=False)
    assert done.value.code == 1
    assert capsys.readouterr().err == ("error: no space left on the device while writing data/centers/prompts.pt: "
                                       "free space and rerun to resume\n")


# A stand-in for embed: a Typer stage whose DataLoader worker process feeds it batches.
INTERRUPTED_STAGE = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {project!r})
    from stages import runner  # under dvc (DVC_STAGE), this already handles Ctrl-C
    from torch.utils.data import DataLoader, Dataset
    from laic_core.data.encode import worker_ignores_interrupts  # what embed's workers do

    class Slow(Dataset):
        def __len__(self):
            return 10**6

        def __getitem__(self, i):
            time.sleep(0.01)
            return i

    app = runner.stage_app()

    @app.command()
    def main(out: str) -> None:
        loader = DataLoader(Slow(), batch_size=4, num_workers=1, worker_init_fn=worker_ignores_interrupts)
        for n, batch in enumerate(loader):
            if n == 3:
                open(out + ".encoding", "w").close()

    runner.run(app)
""")


@needs_proc
def test_ctrl_c_prints_the_projects_line_every_time(tmp_path):
    """The probe: SIGINT to the process group (Ctrl-C under `dvc repro`) during embed exited 130 silently
    (Typer turns KeyboardInterrupt into a plain exit 130) or with "Exception ignored in threading"."""
    script = tmp_path / "stage.py"
    script.write_text(INTERRUPTED_STAGE.format(project=str(PROJECT)))
    out = str(tmp_path / "out")
    stage = subprocess.Popen([sys.executable, str(script), out], env=dict(os.environ, DVC_STAGE="embed"),
                             start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: Path(out + ".encoding").exists() or stage.poll() is not None, 60)
        os.killpg(stage.pid, signal.SIGINT)  # the whole group, as a terminal does: the worker too
        time.sleep(0.05)
        os.killpg(stage.pid, signal.SIGINT)  # an impatient second Ctrl-C, during the clean-up
        _, err = stage.communicate(timeout=60)
    finally:
        if stage.poll() is None:
            stage.kill()
    assert stage.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted: finished chunks are kept; rerun to resume"], err
