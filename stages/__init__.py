"""One thin Typer command per DVC stage: read params and inputs, call laic_core, write outputs."""
