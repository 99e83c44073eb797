"""Noun vocabularies and prompt templates.

The vocabulary is either the WordNet 3.0 noun list shipped in
``laic_core/text/wordnet_nouns.txt.gz`` (119,034 nouns, built by
``scripts/make_wordnet_nouns.py``) or a user's text file with one noun per line.
Which nouns matter for a dataset is `laic_core.method.noun_filter`'s business.

Some nouns must never name a cluster: `EXCLUDED_FLAGS` of
``wordnet_flags.tsv.gz`` (slurs, obscenities, words for wrongdoers and bad
persons, flagged from WordNet itself by the same script) are dropped from
every vocabulary by default, with a user's own list on top
(`excluded_nouns`); WordNet's proper nouns (people, places) stay in the
vocabulary but do not name clusters unless asked (`proper_nouns`).
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
from pathlib import Path
from typing import Sequence

from laic_core.errors import LaicError

# TAC's seven noun templates (text_embedding.py of XLearning-SCU/2024-ICML-TAC):
# the 7-prompt subset of CLIP's ImageNet ensemble, from OpenAI's notebook
# "Prompt_Engineering_for_ImageNet.ipynb". The grammar ("a origami") is CLIP's.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

# `load_vocabulary` reads this name as the shipped list, never as a file name.
WORDNET_SOURCE = "wordnet"
NO_EXCLUDE_FILE = "none"  # vocab.exclude: no list of the user's own
_WORDNET_RESOURCE = "wordnet_nouns.txt.gz"
_FLAGS_RESOURCE = "wordnet_flags.tsv.gz"
# Flags of the default exclusion: WordNet's usage domains for disparagement, ethnic slurs and
# obscenity (its obscenity domain is "obscenity, smut, vulgarism, filth, dirty word"), and the
# hyponyms of wrongdoer.n.01 and bad_person.n.01.
EXCLUDED_FLAGS = frozenset({"disparagement", "ethnic slur", "obscenity", "wrongdoer", "bad person"})
PROPER_FLAG = "proper"  # a WordNet instance: a person, a place, a work


# ---------------------------------------------------------------- vocabularies


@functools.lru_cache(maxsize=1)
def _wordnet_nouns() -> tuple[str, ...]:
    resource = importlib.resources.files("laic_core.text") / _WORDNET_RESOURCE
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        return tuple(text.read().splitlines())


def load_wordnet_nouns() -> list[str]:
    """The shipped WordNet 3.0 nouns: every lemma of every noun synset.

    Underscores are spaces ("ice cream"), WordNet's case is kept ("Apple" and
    "apple" are both present), no duplicates, sorted by code point.
    """
    return list(_wordnet_nouns())


@functools.lru_cache(maxsize=1)
def wordnet_flags() -> dict[str, frozenset[str]]:
    """Shipped flags, keyed by the noun casefolded: {noun: {"disparagement", "proper", ...}}.

    Casefolded because the text encoders users run lower-case their input (CLIP's
    tokenizer does), so "Paedophile" in a user's list is the flagged word too.
    """
    resource = importlib.resources.files("laic_core.text") / _FLAGS_RESOURCE
    flags: dict[str, set[str]] = {}
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        for line in text.read().splitlines():
            noun, _, names = line.partition("\t")
            flags.setdefault(noun.casefold(), set()).update(names.split(","))
    return {noun: frozenset(names) for noun, names in flags.items()}


def excluded_nouns(nouns: Sequence[str], *, offensive: bool = True, extra: Sequence[str] = ()) -> list[str]:
    """The nouns of `nouns` to drop from the vocabulary, in their order.

    offensive: drop the nouns flagged with any of `EXCLUDED_FLAGS`; extra: a
    user's own list (e.g. `read_noun_file(vocab.exclude)`). Matching is
    case-insensitive.
    """
    flags = wordnet_flags() if offensive else {}
    more = {noun.casefold() for noun in extra}
    return [noun for noun in nouns
            if noun.casefold() in more or flags.get(noun.casefold(), frozenset()) & EXCLUDED_FLAGS]


def proper_nouns(nouns: Sequence[str]) -> list[bool]:
    """Per noun: True when WordNet knows it as a proper noun (an instance: a person, a place)."""
    flags = wordnet_flags()
    return [PROPER_FLAG in flags.get(noun.casefold(), frozenset()) for noun in nouns]


def read_noun_file(path: str | Path) -> list[str]:
    """Nouns from a UTF-8 text file with one noun per line.

    Leading/trailing whitespace is stripped and inner runs of whitespace become
    one space; blank lines and lines starting with ``#`` are skipped (a ``#``
    later in a line is part of the noun, e.g. "C#"); repeated nouns are kept at
    their first occurrence. A UTF-8 byte-order mark is ignored.
    """
    path = Path(path)
    if not path.exists():
        raise LaicError(f"noun file {path} does not exist: give a text file with one noun per line")
    if not path.is_file():
        raise LaicError(f"noun file {path} is not a file: give a text file with one noun per line")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LaicError(f"noun file {path} cannot be read ({error.strerror})") from error
    if b"\x00" in data:
        raise LaicError(f"noun file {path} is not a text file (it holds NUL bytes): "
                        "write one noun per line in UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LaicError(f"noun file {path} is not UTF-8 text (bad byte at offset {error.start}): "
                        "save it as UTF-8") from error

    nouns: dict[str, None] = {}  # ordered set
    for line in text.splitlines():
        noun = " ".join(line.split())
        if noun and not noun.startswith("#"):
            nouns.setdefault(noun, None)
    if not nouns:
        raise LaicError(f"noun file {path} contains no nouns: write one noun per line")
    return list(nouns)


def load_vocabulary(source: str | Path) -> list[str]:
    """The nouns of ``source``: "wordnet" for the shipped list, else a noun file path.

    A file literally named ``wordnet`` in the working folder is reached as
    ``./wordnet``.
    """
    if isinstance(source, str) and source == WORDNET_SOURCE:
        return load_wordnet_nouns()
    if not isinstance(source, (str, Path)) or str(source) == "":
        raise LaicError(f"vocabulary source {source!r}: give 'wordnet' or the path of a noun file")
    return read_noun_file(source)


# ------------------------------------------------------------------- templates


def validate_templates(templates: Sequence[str]) -> list[str]:
    """The templates as a list, after checking each holds exactly one ``{}``.

    ``{}`` marks where the noun goes; it is replaced literally (no
    ``str.format``), so other braces in a template are kept as they are.
    """
    if isinstance(templates, (str, bytes)) or not isinstance(templates, Sequence):
        raise LaicError(f"templates must be a list of strings, got {type(templates).__name__} "
                        f"{templates!r}: write e.g. ['a photo of a {{}}.']")
    if len(templates) == 0:
        raise LaicError("templates is empty: give at least one template such as 'a photo of a {}.'")
    seen: set[str] = set()
    for i, template in enumerate(templates):
        if not isinstance(template, str):
            raise LaicError(f"template {i} is {template!r}, not a string: "
                            "write it as text such as 'a photo of a {}.'")
        if template.count("{}") != 1:
            raise LaicError(f"template {i} {template!r} has {template.count('{}')} '{{}}' "
                            "placeholders: write exactly one '{}' where the noun goes")
        if template in seen:
            raise LaicError(f"template {i} {template!r} is repeated: list each template once")
        seen.add(template)
    return list(templates)


def expand_templates(nouns: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every noun in every template, noun-major.

    Prompt ``i * len(templates) + j`` is noun ``i`` in template ``j``, so the
    (M * P) prompt embeddings reshape to (M, P, d) for the per-noun ensemble.
    """
    templates = validate_templates(templates)
    return [template.replace("{}", noun) for noun in nouns for template in templates]
