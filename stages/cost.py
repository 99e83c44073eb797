"""What a stage run cost: wall and CPU time, peak memory (and peak GPU memory), per stage.

Written to metrics/cost/<stage>.json after every successful run. The file is
deliberately neither a DVC metric nor tracked by git (metrics/cost/ is in
.gitignore): timings differ on every run, and `dvc metrics diff` must keep
showing only real changes in the scores. The evaluate stage's report and
the benchmarks read it.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

from laic_core.artifacts import save_json
from stages.layout import COST


def stage_name() -> str:
    """The DVC stage (dvc sets DVC_STAGE), else the stage module's name (`python -m stages.X`)."""
    return os.environ.get("DVC_STAGE") or Path(sys.argv[0]).stem or "stage"


def peak_rss_mib() -> float:
    """This process's peak resident memory, MiB.

    On Linux VmHWM, the high-water mark of this process's own memory, not
    ru_maxrss: Linux carries ru_maxrss across fork and exec, so a small stage
    started by a larger parent (dvc, a benchmark script) would report the
    parent's peak as its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return _maxrss_mib(resource.getrusage(resource.RUSAGE_SELF))


def _maxrss_mib(usage) -> float:
    scale = 1024 if sys.platform.startswith("linux") else 1  # ru_maxrss: KiB on Linux, bytes on macOS
    return usage.ru_maxrss * scale / 2**20


class CostMeter:
    """Measures one stage run from construction to `write()`."""

    def __init__(self) -> None:
        from stages import STARTED

        self.wall = STARTED  # the process's imports (torch: seconds) are part of the cost
        self.cpu = 0.0  # process_time() counts from the process's start

    def snapshot(self) -> dict:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # DataLoader workers and the like
        out = {
            "stage": stage_name(),
            "wall_seconds": round(time.perf_counter() - self.wall, 3),
            "cpu_seconds": round(time.process_time() - self.cpu + children.ru_utime + children.ru_stime, 3),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "peak_rss_children_mib": round(_maxrss_mib(children), 1),
            "peak_gpu_mib": None,
        }
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out

    def write(self, folder: Path = COST) -> dict:
        record = self.snapshot()
        save_json(folder / f"{record['stage']}.json", record)
        return record
