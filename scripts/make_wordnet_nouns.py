"""Build laic_core/text/wordnet_nouns.txt.gz: every noun lemma of WordNet 3.0.

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
DEFAULT_OUT = REPO_ROOT / "laic_core" / "data" / "wordnet_nouns.txt.gz"
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
    payload = gzip_bytes("".join(noun + "\n" for noun in nouns))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, args.out)
    print(f"{len(nouns)} nouns from {wordnet_dir} -> {args.out} ({len(payload)} bytes)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
