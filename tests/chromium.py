"""Headless Chromium from the command line, for the browser tests (and benchmarks/browser_check.py).

`dom(url)` gives the page's DOM after its scripts ran (--dump-dom, with virtual
time so that scripts loaded one after another all finish) as a small tree,
and every console message the page logged (the browser pages log only
errors); `screenshot(url, path)` saves a PNG. Each call starts a fresh
Chromium with its own profile folder, so tests may run side by side.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: `apt-get install chromium`; "
                             ".ci/run installs it when it runs as root)")
_CONSOLE = re.compile(r':CONSOLE(?::\d+)?\] "(.*)", source: ', re.MULTILINE)


def _run(url: str, *flags: str, timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="laic-chromium-") as profile:
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000",
                *flags, url]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"chromium failed ({proc.returncode}) on {url}:\n{proc.stderr[-3000:]}")
    return proc


def console_messages(stderr: str) -> list[str]:
    """The messages a page logged to its console (errors, uncaught exceptions, logs)."""
    return _CONSOLE.findall(stderr)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list["Node"] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    content: list = field(default_factory=list)  # text and child nodes in document order

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        """The text of the node and its descendants, in document order."""
        return "".join(part if isinstance(part, str) else part.text() for part in self.content)

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list["Node"]:
        found = []
        for child in self.children:
            if ((tag is None or child.tag == tag) and (cls is None or cls in child.classes)
                    and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())):
                found.append(child)
            found += child.find_all(tag, cls, **attrs)
        return found

    def has(self, **attrs) -> list["Node"]:
        """Descendants that carry every attribute named (any value): has(data_row=True)."""
        found = []
        for child in self.children:
            if all(k.replace("_", "-") in child.attrs for k in attrs):
                found.append(child)
            found += child.has(**attrs)
        return found


class _Tree(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        self.stack[-1].content.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].text_parts.append(data)
        self.stack[-1].content.append(data)


def dom(url: str) -> tuple[Node, list[str]]:
    """(the page's DOM once its scripts ran, its console messages)."""
    proc = _run(url, "--dump-dom")
    tree = _Tree()
    tree.feed(proc.stdout)
    return tree.root, console_messages(proc.stderr)


def screenshot(url: str, path: str | Path, size: tuple[int, int] = (1280, 900)) -> list[str]:
    """Save a PNG of the page at `size`; returns its console messages."""
    proc = _run(url, f"--screenshot={Path(path).resolve()}", f"--window-size={size[0]},{size[1]}")
    return console_messages(proc.stderr)
