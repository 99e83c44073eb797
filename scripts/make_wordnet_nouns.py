"""Build laic_core/text/wordnet_nouns.txt.gz (every noun lemma of WordNet 3.0) and wordnet_flags.tsv.gz.

Reads ``data.noun`` of a WordNet 3.0 dict folder directly (format: wndb(5WN)),
so it needs neither nltk nor network access:

- every noun synset, every lemma ("word") of it;
- underscores become spaces ("ice_cream" -> "ice cream");
- the case WordNet gives is kept ("Apple", "apple" are two nouns: proper and
  common nouns differ in meaning, and case-sensitive text encoders tell them
  apart);
- exact duplicates are removed (a lemma in several synsets appears once);
- the result is sorted by Unicode code point (Python's ``sorted``), one noun per
  line, UTF-8, ``\\n`` line ends;
- gzip with mtime 0 and no file name in the header, so the output is
  byte-reproducible.

wordnet_flags.tsv.gz lists the nouns that must not name a cluster by
default, one ``noun<TAB>flags`` line each (flags comma-separated, sorted):

- ``disparagement``, ``ethnic slur``, ``obscenity``: a sense of the noun (or
  the noun itself, for WordNet's word-level pointers) is in that usage domain
  (pointer ``;u``), or in the domain of a hyponym of disparagement or
  obscenity ("slur" lies under disparagement; WordNet's obscenity domain is
  the synset "obscenity, smut, vulgarism, filth, dirty word");
- ``wrongdoer``, ``bad person``: a sense is wrongdoer.n.01 or bad_person.n.01
  or one of their hyponyms, at any depth (a thief, a paedophile);
- ``proper``: a sense is a WordNet instance (pointer ``@i``: people, places).

A noun is flagged when any of its senses is, so "cock" (a vulgarism and a
rooster) is flagged; "rooster" names that cluster instead.

Usage:
    python scripts/make_wordnet_nouns.py [--wordnet-dir DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "laic_core" / "text" / "wordnet_nouns.txt.gz"
FLAGS_NAME = "wordnet_flags.tsv.gz"  # written next to --out
# WordNet 3.0 synset offsets (data.noun) of the roots the flags hang from.
USAGE_DOMAINS = {"06717170": "disparagement", "07124340": "obscenity"}  # with their hyponyms' domains
ETHNIC_SLUR = "06718862"  # a hyponym of disparagement (via "slur"), flagged under its own name
PERSON_ROOTS = {"09633969": "wrongdoer", "09831962": "bad person"}
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")  # Debian/Ubuntu package wordnet-base


def find_wordnet_dir() -> Path:
    """Debian's wordnet-base folder, else an unzipped nltk_data corpora/wordnet."""
    candidates = [DEBIAN_WORDNET_DIR]
    try:
        import nltk

        candidates += [Path(p) / "corpora" / "wordnet" for p in nltk.data.path]
    except ImportError:
        pass
    for folder in candidates:
        if (folder / "data.noun").is_file():
            return folder
    searched = ", ".join(str(c) for c in candidates)
    raise SystemExit(
        f"no WordNet dict folder with data.noun found (searched {searched}); "
        "install Debian's wordnet-base, or unzip nltk's wordnet corpus, "
        "or pass --wordnet-dir"
    )


def read_noun_lemmas(data_noun: Path) -> list[str]:
    """All lemma names of all synsets in ``data.noun``, in file order, with underscores."""
    lemmas: list[str] = []
    with open(data_noun, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # licence header lines start with two spaces
                continue
            fields = line.split(" ")
            # synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] ...
            if fields[2] != "n":
                raise SystemExit(f"{data_noun}: not a noun synset line: {line[:60]!r}")
            n_words = int(fields[3], 16)
            lemmas.extend(fields[4 + 2 * k] for k in range(n_words))
    return lemmas


def read_synsets(data_noun: Path) -> dict[str, tuple[list[str], list[tuple[str, str, int]]]]:
    """offset -> (lemmas, pointers (symbol, target offset, source word number or 0)) of noun synsets."""
    synsets = {}
    with open(data_noun, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fields = line.split(" ")
            n_words = int(fields[3], 16)
            lemmas = [fields[4 + 2 * k] for k in range(n_words)]
            at = 4 + 2 * n_words
            pointers = []
            for k in range(int(fields[at])):
                symbol, target, pos, source_target = fields[at + 1 + 4 * k: at + 5 + 4 * k]
                if pos == "n":
                    pointers.append((symbol, target, int(source_target[:2], 16)))
            synsets[fields[0]] = (lemmas, pointers)
    return synsets


def _below(synsets: dict, root: str) -> set[str]:
    """root and every synset under it through hyponym and instance-hyponym pointers."""
    seen, todo = set(), [root]
    while todo:
        offset = todo.pop()
        if offset not in seen:
            seen.add(offset)
            todo += [t for symbol, t, _ in synsets[offset][1] if symbol in ("~", "~i")]
    return seen


def noun_flags(wordnet_dir: Path) -> dict[str, set[str]]:
    """noun (underscores as spaces) -> its flags (see the module docstring); unflagged nouns are absent."""
    synsets = read_synsets(Path(wordnet_dir) / "data.noun")
    domain_of = {}  # usage-domain synset -> flag
    for root, flag in USAGE_DOMAINS.items():
        for offset in _below(synsets, root):
            domain_of[offset] = flag
    domain_of[ETHNIC_SLUR] = "ethnic slur"
    person_of: dict[str, set[str]] = {}  # a wrongdoer is a bad person too: both flags
    for root, flag in PERSON_ROOTS.items():
        for offset in _below(synsets, root):
            person_of.setdefault(offset, set()).add(flag)
    flags: dict[str, set[str]] = {}

    def add(lemma: str, flag: str) -> None:
        flags.setdefault(lemma.replace("_", " "), set()).add(flag)

    for offset, (lemmas, pointers) in synsets.items():
        for symbol, target, source in pointers:
            if symbol == ";u" and target in domain_of:  # source 0: every lemma of the synset
                for lemma in (lemmas if source == 0 else [lemmas[source - 1]]):
                    add(lemma, domain_of[target])
            elif symbol == "@i":
                for lemma in lemmas:
                    add(lemma, "proper")
        for flag in person_of.get(offset, ()):
            for lemma in lemmas:
                add(lemma, flag)
    return flags


def wordnet_nouns(wordnet_dir: Path) -> list[str]:
    """Unique noun lemmas with spaces, sorted by code point."""
    data_noun = Path(wordnet_dir) / "data.noun"
    if not data_noun.is_file():
        raise SystemExit(f"{data_noun} does not exist: pass a WordNet 3.0 dict folder")
    return sorted({lemma.replace("_", " ") for lemma in read_noun_lemmas(data_noun)})


def gzip_bytes(text: str) -> bytes:
    """Gzip ``text`` (UTF-8) reproducibly: fixed mtime, no file name in the header."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet-dir", type=Path, default=None,
                        help="WordNet 3.0 dict folder holding data.noun "
                             "(default: /usr/share/wordnet, else nltk_data/corpora/wordnet)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output .txt.gz (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)

    wordnet_dir = args.wordnet_dir or find_wordnet_dir()
    nouns = wordnet_nouns(wordnet_dir)
    flags = noun_flags(wordnet_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    flags_out = args.out.with_name(FLAGS_NAME)
    for path, text in ((args.out, "".join(noun + "\n" for noun in nouns)),
                       (flags_out, "".join(f"{noun}\t{','.join(sorted(flags[noun]))}\n" for noun in sorted(flags)))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(gzip_bytes(text))
        os.replace(tmp, path)
    counts = {}
    for noun_flags_ in flags.values():
        for flag in noun_flags_:
            counts[flag] = counts.get(flag, 0) + 1
    print(f"{len(nouns)} nouns from {wordnet_dir} -> {args.out}; flags of {len(flags)} nouns -> {flags_out}: "
          + ", ".join(f"{flag} {n}" for flag, n in sorted(counts.items())), file=sys.stderr)


if __name__ == "__main__":
    main()
