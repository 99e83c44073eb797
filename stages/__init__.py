"""One thin Typer command per DVC stage: read params and inputs, call laic_core, write outputs."""

import os
import time

STARTED = time.perf_counter()  # wall time of a stage counts from here: imports (torch) included

if os.environ.get("DVC_STAGE"):
    # First thing under dvc, before a stage module imports torch (seconds): if
    # dvc dies meanwhile, the stage must still notice and stop (stages/runner.py).
    from stages.runner import exit_with_parent

    exit_with_parent()
