"""Run a stage's Typer app; user-facing errors print as one clean message."""

from __future__ import annotations

import sys

import typer

from laic_core.errors import LaicError


def stage_app() -> typer.Typer:
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def run(app: typer.Typer) -> None:
    try:
        app()
    except LaicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: finished chunks are kept; rerun to resume", file=sys.stderr)
        sys.exit(130)
