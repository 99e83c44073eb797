"""metrics/cost/: a stage's peak memory is its own, not that of the process that started it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
BALLAST_MIB = 800

# A parent that holds BALLAST_MIB of touched memory, then starts a stage-like child which reports its peak.
PARENT = textwrap.dedent(f"""
    import subprocess, sys
    ballast = b"x" * ({BALLAST_MIB} << 20)  # written, so resident
    child = ("import sys; sys.path.insert(0, {str(PROJECT)!r}); "
             "from stages.cost import peak_rss_mib; print(peak_rss_mib())")
    print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout.strip())
    print(len(ballast))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inherited peak is a Linux behaviour")
def test_a_stage_started_by_a_large_parent_reports_its_own_peak():
    out = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, check=True).stdout.split()
    child_peak = float(out[0])
    # ru_maxrss would give the parent's >= 800 MiB; importing stages.cost (numpy, pandas) takes far less.
    assert 10 < child_peak < BALLAST_MIB / 2, child_peak


def test_peak_rss_grows_with_what_the_process_touches():
    from stages.cost import peak_rss_mib

    before = peak_rss_mib()
    ballast = b"x" * (64 << 20)
    assert peak_rss_mib() >= before
    assert peak_rss_mib() >= 64, len(ballast)
