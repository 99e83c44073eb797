"""What WordNet says of a noun beyond its spelling: may it name a cluster, and what it means.

Reads two lists that ``scripts/make_wordnet_nouns.py`` derives from WordNet 3.0:
``wordnet_flags.tsv.gz`` (per noun: ``proper``, a WordNet instance such as a
person or a place; ``taxonomic``, a taxonomic group or a binomial such as
"family Chlamydiaceae" or "Oryx gazella"; ``rare``, no sense of the noun nor of
its head word tagged in SemCor), ``wordnet_common_names.tsv.gz`` (the common
name of a taxonomic noun's organism: "Hyla crucifer" is a "spring peeper") and
``wordnet_glosses.tsv.gz`` (the definition of a noun's most frequent sense).
None changes what the vocabulary holds
(`laic_core.text.vocab` decides that), only which of its nouns are shown as
names and with what gloss, so a change here never re-encodes a vocabulary.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
from typing import Sequence

PROPER, TAXONOMIC, RARE = "proper", "taxonomic", "rare"
NAMING_FLAGS = (PROPER, TAXONOMIC, RARE)
_FLAGS_RESOURCE = "wordnet_flags.tsv.gz"
_GLOSSES_RESOURCE = "wordnet_glosses.tsv.gz"
_COMMON_NAMES_RESOURCE = "wordnet_common_names.tsv.gz"


def _read_tsv(name: str) -> list[tuple[str, str]]:
    resource = importlib.resources.files("laic_core.text") / name
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        return [tuple(line.split("\t", 1)) for line in text.read().splitlines()]


@functools.lru_cache(maxsize=1)
def _flags() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """({noun: flags}, {casefolded noun: union of its spellings' flags})."""
    exact = {noun: frozenset(names.split(",")) for noun, names in _read_tsv(_FLAGS_RESOURCE)}
    folded: dict[str, set[str]] = {}
    for noun, names in exact.items():
        folded.setdefault(noun.casefold(), set()).update(names)
    return exact, {noun: frozenset(names) for noun, names in folded.items()}


@functools.lru_cache(maxsize=1)
def _wordnet_spellings() -> frozenset[str]:
    from laic_core.text.vocab import load_wordnet_nouns

    return frozenset(load_wordnet_nouns())


def noun_flags(noun: str) -> frozenset[str]:
    """The naming flags of `noun`, a subset of `NAMING_FLAGS`.

    A WordNet spelling has its own flags ("china", porcelain, is not proper;
    "China" is); another spelling (a user's noun file) gets those of every
    WordNet spelling that differs from it in case only.
    """
    exact, folded = _flags()
    if noun in _wordnet_spellings():
        return exact.get(noun, frozenset())
    return folded.get(noun.casefold(), frozenset())


def flag_mask(nouns: Sequence[str], flag: str) -> list[bool]:
    """Per noun: does it carry `flag` (one of `NAMING_FLAGS`)?"""
    if flag not in NAMING_FLAGS:
        raise ValueError(f"unknown flag {flag!r}; use one of {', '.join(NAMING_FLAGS)}")
    return [flag in noun_flags(noun) for noun in nouns]


def proper_nouns(nouns: Sequence[str]) -> list[bool]:
    """Per noun: True when WordNet knows it as a proper noun (an instance: a person, a place)."""
    return flag_mask(nouns, PROPER)


def nameable_nouns(nouns: Sequence[str], *, proper: bool = False, taxonomic: bool = False,
                   rare: bool = True) -> list[bool]:
    """Per noun: may it name a cluster? Proper nouns, taxonomic names and rare nouns only where allowed
    (`centers.name_proper_nouns`, `name_taxonomic`, `name_rare`)."""
    barred = {flag for flag, allowed in ((PROPER, proper), (TAXONOMIC, taxonomic), (RARE, rare)) if not allowed}
    return [not (noun_flags(noun) & barred) for noun in nouns]


@functools.lru_cache(maxsize=1)
def _common_names() -> dict[str, str]:
    return dict(_read_tsv(_COMMON_NAMES_RESOURCE))


def common_names(nouns: Sequence[str]) -> list[str | None]:
    """Per noun: the name a person would use for a taxonomic noun's organism ("Oryx gazella": "gemsbok";
    a WordNet synonym that is not taxonomic), None for other nouns and for taxa without one ("genus Oryx")."""
    table = _common_names()
    return [table.get(noun) for noun in nouns]


@functools.lru_cache(maxsize=1)
def _glosses() -> dict[str, str]:
    return dict(_read_tsv(_GLOSSES_RESOURCE))


def gloss(noun: str) -> str | None:
    """The WordNet definition of the noun's most frequent sense ("ketch": "a sailing vessel with two
    masts; ..."), None when there is none to show (not a WordNet noun, a proper noun, a taxonomic name)."""
    glosses = _glosses()
    if noun in glosses:
        return glosses[noun]
    if noun in _wordnet_spellings():
        return None
    return glosses.get(noun.casefold())
