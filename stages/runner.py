"""Run a stage's Typer app; user-facing errors, Ctrl-C and a full disk print as one clean line.

A stage run by dvc also stops when dvc dies. `kill -9` of `dvc` otherwise
left the stage running as an orphan, and it later wrote its outputs over
whatever DVC (or the user) had restored meanwhile.

Ctrl-C reaches every process of the terminal's group at once: dvc, the
stage and its DataLoader workers. Typer turns a KeyboardInterrupt into a
silent exit 130, and a second interrupt during the clean-up printed
"Exception ignored in threading" (or killed the exiting interpreter); so
the stage handles SIGINT itself: the first one unwinds (finished chunks
are kept, temporary files removed) and prints INTERRUPTED, later ones are
ignored.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import typer

from laic_core.errors import NO_SPACE_ERRNOS, LaicError, printable

# Processes that may stand between dvc and the stage (dvc runs `$SHELL -c cmd`;
# some shells exec the command, others wait for it).
_SHELLS = {"sh", "dash", "bash", "zsh", "fish", "ksh", "mksh", "busybox"}
POLL_SECONDS = 0.5
GRACE_SECONDS = 15.0  # after asking the stage to stop, before forcing it


class ParentGone(BaseException):
    """The process that started this stage has exited (BaseException: no `except Exception` swallows it)."""


def stage_app() -> typer.Typer:
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _parent_of(pid: int) -> int | None:
    """pid's parent from /proc (Linux), or None when unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def _name_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _lineage() -> list[tuple[int, int]]:
    """[(pid, its parent)] from this process up through any shells to the first other process.

    The stage must stop when that process (dvc, or whoever ran the stage)
    dies, even when a shell waits in between and so outlives it.
    """
    links = [(os.getpid(), os.getppid())]
    while _name_of(links[-1][1]) in _SHELLS:
        parent = _parent_of(links[-1][1])
        if parent is None or parent <= 1:
            break
        links.append((links[-1][1], parent))
    return links


def _lineage_broken(links: list[tuple[int, int]]) -> bool:
    if os.getppid() != links[0][1]:
        return True
    return any(_parent_of(pid) != parent for pid, parent in links[1:])


def _set_parent_death_signal() -> None:
    """Linux: the kernel sends SIGTERM the moment the parent exits (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl: the watchdog thread still works
        pass


STOPPED = ("stopped: the process that started this stage (dvc) has exited or asked it to stop; "
           "no output was written after that. Finished chunks are kept; rerun `dvc repro`")
_armed = False  # exit_with_parent has run in this process
_in_run = False  # run() is executing the command: ParentGone unwinds through its finally blocks


_stopping = False  # the first SIGTERM is unwinding; prctl and the watchdog may both send one
INTERRUPTED = "interrupted: finished chunks are kept; rerun to resume"


def _on_interrupt(signum, frame) -> None:
    # Later ones (an impatient second Ctrl-C) are ignored by the OS from now on: they must not
    # break the clean-up, nor kill the process while the interpreter exits (Python puts back
    # the default handler then, but leaves an ignored signal ignored).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _in_run:
        raise KeyboardInterrupt
    # Still importing (torch takes seconds): nothing to clean up yet.
    print(INTERRUPTED, file=sys.stderr)
    os._exit(130)


def handle_interrupts() -> None:
    """Ctrl-C prints INTERRUPTED and exits 130, once, whenever it comes (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_interrupt)


def _interrupted(exc: BaseException | None) -> bool:
    """Whether `exc` (a SystemExit from Typer, say) was caused by a KeyboardInterrupt."""
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _on_term(signum, frame) -> None:
    global _stopping
    if _stopping:  # do not interrupt the clean-up of the first one (the watchdog's hard exit remains)
        return
    _stopping = True
    if _in_run:
        raise ParentGone()
    # Still importing (torch takes seconds): nothing to clean up yet.
    print(STOPPED, file=sys.stderr)
    os._exit(143)


def exit_with_parent(*, use_prctl: bool = True, poll: float = POLL_SECONDS,
                     grace: float = GRACE_SECONDS) -> None:
    """Make this process stop (SIGTERM, then a hard exit after `grace` s) when its starter dies.

    Two mechanisms: PR_SET_PDEATHSIG for the direct parent (immediate, Linux
    only), and a daemon thread polling the parent chain every `poll` seconds,
    which also covers a shell between dvc and the stage and non-Linux systems.
    SIGTERM raises ParentGone in the main thread, so `finally` blocks (atomic
    writes) clean up; an output is never half-written either way. Called for
    processes started by dvc only, whose parent is never init: a parent pid
    of 1 means dvc died before this process got here.
    """
    global _armed
    if _armed:
        return
    _armed = True
    signal.signal(signal.SIGTERM, _on_term)
    if use_prctl:
        _set_parent_death_signal()
    links = _lineage()
    if links[0][1] <= 1 or _lineage_broken(links):  # the parent died before the watch began
        os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        while not _lineage_broken(links):
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)  # the main thread is stuck in native code: do not wait for ever
        os._exit(143)

    threading.Thread(target=watch, name="laic-exit-with-parent", daemon=True).start()


def under_dvc() -> bool:
    """dvc sets DVC_STAGE for every command it runs. A stage (or predict) started by
    hand is not tied to its parent, so that it can outlive its shell under nohup."""
    return bool(os.environ.get("DVC_STAGE"))


def run(app: typer.Typer, *, record_cost: bool = True) -> None:
    """Run a stage's command; on success, record what it cost (stages/cost.py)."""
    global _in_run
    from stages.cost import CostMeter

    meter = CostMeter()
    # A file name that is not UTF-8 printed whole (a path with its undecodable bytes) must not
    # turn into a UnicodeEncodeError traceback; stderr already writes such characters escaped.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        _in_run = True
        handle_interrupts()  # set already by `import stages` for a stage command
        if under_dvc():
            exit_with_parent()  # armed already by `import stages` unless run differently
        try:
            app()  # typer exits: SystemExit(0) after a successful command
        except SystemExit as done:
            if _interrupted(done):  # Typer's silent exit 130
                raise KeyboardInterrupt from None
            if done.code in (0, None) and record_cost and "--help" not in sys.argv[1:]:
                meter.write()
            raise
    except LaicError as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except OSError as exc:
        if exc.errno not in NO_SPACE_ERRNOS:
            raise
        # Written outside laic's own atomic writes (which name the file and the size needed).
        where = f" while writing {exc.filename}" if exc.filename else ""
        print(f"error: no space left on the device{where}: free space and rerun to resume", file=sys.stderr)
        sys.exit(1)
    except ParentGone:
        print(STOPPED, file=sys.stderr)
        sys.exit(143)
    finally:
        _in_run = False
