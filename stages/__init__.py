"""One thin Typer command per DVC stage: read params and inputs, call laic_core, write outputs."""

import os
import sys
import time

STARTED = time.perf_counter()  # wall time of a stage counts from here: imports (torch) included

if os.environ.get("DVC_STAGE") or sys.argv[:1] == ["-m"]:
    # A stage command (`python -m stages.<name>` sets argv[0] to "-m" while it imports the
    # package): Ctrl-C during the seconds of imports gets the project's line too, not a traceback.
    from stages.runner import handle_interrupts

    handle_interrupts()

if os.environ.get("DVC_STAGE"):
    # First thing under dvc, before a stage module imports torch (seconds): if
    # dvc dies meanwhile, the stage must still notice and stop (stages/runner.py).
    from stages.runner import exit_with_parent

    exit_with_parent()
