"""Set keys of params.yaml in place, keeping its comments and layout (what `laic init` writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from laic_core.artifacts import save_bytes
from laic_core.errors import LaicError


def set_params(path: str | Path, changes: dict[str, Any]) -> None:
    """Write `changes` ({"dataset.root": "/photos", ...}) into the YAML file at `path`, atomically.

    Keys must exist already (params.yaml lists every key): a typo is refused, not added.
    """
    import io

    from ruamel.yaml import YAML

    path = Path(path)
    if not path.is_file():
        raise LaicError(f"{path} does not exist: run in the project folder, or pass --params")
    yaml = YAML()  # round trip: comments, order and quoting are kept
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)  # params.yaml's own list style
    data = yaml.load(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *sections, key = dotted.split(".")
        node = data
        for section in sections:
            if not isinstance(node, dict) or section not in node:
                raise LaicError(f"{path}: has no section {section!r} (for {dotted}); restore it from the project")
            node = node[section]
        if key not in node:
            raise LaicError(f"{path}: has no key {dotted}; restore it from the project")
        node[key] = value
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    save_bytes(path, buffer.getvalue().encode("utf-8"))
