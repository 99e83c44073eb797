"""The README and docs/ tell the truth: every relative link resolves, every command they show exists.

A command is `python -m stages.<module> ...` or `laic <command> ...` in a code block or an inline code
span (`stages.<name>`, a placeholder, is not one); each --option it shows must be an option of that
command (a subcommand's, for `table run`).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import typer.main

PROJECT = Path(__file__).resolve().parents[1]
PAGES = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    out, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def code_spans(page: Path) -> list[str]:
    """The text of every fenced code line and inline code span."""
    spans, fenced = [], False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            spans.append(line.split("#", 1)[0] if not line.lstrip().startswith("#") else "")
        else:
            spans += re.findall(r"`([^`]+)`", line)
    return spans


def shown_commands(page: Path) -> list[tuple[str, list[str]]]:
    """(module, its words) for every command the page shows."""
    from stages.cli import FORWARDED

    found = []
    for span in code_spans(page):
        for part in re.split(r"&&|;|\|", span):
            words = part.split()
            if len(words) >= 3 and words[:2] == ["python", "-m"] and re.fullmatch(r"stages\.\w+", words[2]):
                found.append((words[2], words[3:]))
            elif len(words) >= 2 and words[0] == "laic":
                module = FORWARDED[words[1]][0] if words[1] in FORWARDED else f"stages.cli:{words[1]}"
                found.append((module, words[2:]))
    return found


def command_options(module: str, words: list[str]) -> set[str] | None:
    """The options of the command `module words...` names; None when there is no such command."""
    name, _, sub = module.partition(":")
    try:
        app = importlib.import_module(name).app
    except (ImportError, AttributeError):
        return None
    command = typer.main.get_command(app)
    rest = [sub] if sub else []
    rest += [w for w in words if not w.startswith("-")][:1] if hasattr(command, "commands") and not sub else []
    for word in rest:
        if not hasattr(command, "commands"):
            break
        if word not in command.commands:
            return None
        command = command.commands[word]
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(PROJECT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for match in LINK.finditer(page.read_text()):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(PROJECT).as_posix())
def test_every_command_shown_exists_with_its_options(page):
    problems = []
    for module, words in shown_commands(page):
        options = command_options(module, words)
        if options is None:
            problems.append(f"{module} {' '.join(words)}: no such command")
            continue
        for word in words:
            option = word.split("=", 1)[0]
            if option.startswith("--") and option not in options | {"--help"}:
                problems.append(f"{module} {' '.join(words)}: no option {option}")
    assert not problems, f"{page.name}: " + "; ".join(problems)


def test_the_readme_stays_short():
    assert len((PROJECT / "README.md").read_text().splitlines()) <= 160


def test_the_checks_catch_a_wrong_command_and_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [gone](nowhere.md) and run `laic export OUT --mode copy --colour red`.\n")
    assert [(m, w) for m, w in shown_commands(page)] == [("stages.export", ["OUT", "--mode", "copy", "--colour",
                                                                           "red"])]
    assert "--mode" in command_options("stages.export", []) and "--colour" not in command_options("stages.export", [])
    assert command_options("stages.table", ["nope"]) is None
    with pytest.raises(AssertionError, match="broken links"):
        test_every_relative_link_resolves(page)
