"""Noun vocabularies and prompt templates.

The vocabulary is either the WordNet 3.0 noun list shipped in
``laic_core/text/wordnet_nouns.txt.gz`` (119,034 nouns, built by
``scripts/make_wordnet_nouns.py``) or a user's text file with one noun per line.
Which nouns matter for a dataset is `laic_core.method.noun_filter`'s business.

Some nouns must never be shown to a person: `excluded_nouns` drops, from
every vocabulary by default, the words of ``excluded_words.tsv.gz`` (WordNet's
slurs, obscenities and words for wrongdoers and bad persons, better-profanity's
word list and our reviewed additions, merged by
``scripts/make_wordnet_nouns.py``), with a user's own list on top. What may
*name* a cluster among the nouns kept (not proper nouns, taxonomic names or
rare words, by default) is `laic_core.text.wordnet`'s business.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import re
import unicodedata
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
USER_LIST_REASON = "your list (vocab.exclude)"
_WORDNET_RESOURCE = "wordnet_nouns.txt.gz"
_EXCLUDED_RESOURCE = "excluded_words.tsv.gz"
_SEPARATORS = re.compile(r"[\s\-_'\u2019.]+")
_WORD_SPLIT = re.compile(r"[\s\-_/]+")


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


# ------------------------------------------------------------------- exclusion


def spelling_key(word: str) -> str:
    """The spelling a word is matched by: NFKC, casefolded, without spaces, hyphens, _, ' and '.'.

    "Arse-hole", "arse hole" and "arsehole" share one key; so do "Mother Fucker"
    and "motherfucker".
    """
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", word).casefold())


@functools.lru_cache(maxsize=1)
def excluded_word_table() -> dict[str, tuple[str, frozenset[str]]]:
    """The shipped exclusion: {spelling key: (match, reasons)}.

    match "noun": a noun whose whole spelling (or its plural) is the word;
    "word": also a noun that has it as one of its words ("dog shit"). Reasons
    name the source: "WordNet: obscenity", "better-profanity", "reviewed: disability".
    """
    resource = importlib.resources.files("laic_core.text") / _EXCLUDED_RESOURCE
    table = {}
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        for line in text.read().splitlines():
            key, match, reasons = line.split("\t")
            table[key] = (match, frozenset(reasons.split(",")))
    return table


@functools.lru_cache(maxsize=1)
def _wordnet_keys() -> frozenset[str]:
    return frozenset(spelling_key(noun) for noun in _wordnet_nouns())


def _spellings(key: str) -> tuple[str, ...]:
    """A key and, when WordNet has no noun of that spelling, its singulars: "whores" -> whores, whore.

    WordNet's own nouns are never read as plurals ("lens" is not "len"s, "glasses" not "glass"es).
    """
    out = [key]
    if len(key) > 3 and key.endswith("s") and key not in _wordnet_keys():
        out.append(key[:-1])
        if len(key) > 4 and key.endswith("es"):
            out.append(key[:-2])
    return tuple(out)


def exclusion_reasons(noun: str, table: dict | None = None) -> frozenset[str]:
    """Why `noun` is excluded (the reasons of every listed word it matches); empty when it is not.

    table: {key: (match, reasons)}, by default `excluded_word_table()`.
    """
    table = excluded_word_table() if table is None else table
    reasons: set[str] = set()
    for key in _spellings(spelling_key(noun)):
        if key in table:
            reasons |= table[key][1]
    words = [w for w in _WORD_SPLIT.split(noun) if w]
    if len(words) > 1:
        for word in words:
            for key in _spellings(spelling_key(word)):
                if key in table and table[key][0] == "word":
                    reasons |= table[key][1]
    return frozenset(reasons)


def exclusion(nouns: Sequence[str], *, offensive: bool = True, extra: Sequence[str] = ()
              ) -> dict[str, frozenset[str]]:
    """{noun: its reasons} for the nouns of `nouns` to drop, in their order.

    offensive: drop the nouns that match `excluded_word_table()`; extra: a
    user's own list (e.g. `read_noun_file(vocab.exclude)`), matched by the same
    spelling key (case, spaces and hyphens do not count), whole nouns only.
    """
    more = {spelling_key(noun) for noun in extra}
    out = {}
    for noun in nouns:
        reasons = set(exclusion_reasons(noun)) if offensive else set()
        if spelling_key(noun) in more:
            reasons.add(USER_LIST_REASON)
        if reasons:
            out[noun] = frozenset(reasons)
    return out


def excluded_nouns(nouns: Sequence[str], *, offensive: bool = True, extra: Sequence[str] = ()) -> list[str]:
    """The nouns of `nouns` to drop from the vocabulary, in their order (see `exclusion`)."""
    return list(exclusion(nouns, offensive=offensive, extra=extra))


def exclusion_counts(excluded: dict[str, frozenset[str]]) -> dict[str, int]:
    """{reason: how many of the excluded nouns it holds}, most first; a noun may have several reasons."""
    counts: dict[str, int] = {}
    for reasons in excluded.values():
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


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
