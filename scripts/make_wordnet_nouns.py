"""Build the shipped word lists of laic_core/text/ from WordNet 3.0 and better-profanity's list.

    python scripts/make_wordnet_nouns.py [--wordnet-dir DIR] [--profanity-list FILE] [--out DIR]

Reads WordNet's ``data.noun`` and ``index.noun`` directly (format: wndb(5WN)),
so it needs neither nltk nor network access, and better-profanity's
``profanity_wordlist.txt`` (``pip install better-profanity==0.7.0``, or pass
the file). Four gzip files, each byte-reproducible (mtime 0, no file name in
the header, sorted by code point, one entry per line, UTF-8, ``\\n``):

``wordnet_nouns.txt.gz``: every lemma of every noun synset, underscores as
spaces ("ice cream"), WordNet's case kept ("Apple" and "apple" are two nouns),
no duplicates.

``excluded_words.tsv.gz``: the words no vocabulary may hold
(``vocab.exclude_offensive``), one ``key<TAB>match<TAB>reasons`` line each.
``key`` is the word's spelling key (laic_core.text.vocab.spelling_key: case,
spaces, hyphens, underscores, apostrophes and full stops removed); ``match`` is ``noun`` (a
noun whose whole spelling is the word, or its plural) or ``word`` (also any
noun that has the word as one of its words: "dog shit"); reasons come from

- WordNet: a sense of the noun is in one of its usage domains of disparagement,
  ethnic slur or obscenity (pointer ``;u``, also through hyponyms of
  disparagement and obscenity), or is wrongdoer.n.01 or bad_person.n.01 or
  one of their hyponyms at any depth (a thief, a paedophile). A noun is out
  when any sense is, so "cock" (a vulgarism and a rooster) goes: "rooster"
  names that cluster instead;
- ``better-profanity``: every word of its list (a maintained list for
  moderating text; it holds innocent senses too: "pot", "organ", "rum");
- ``reviewed: <category>``: ``scripts/offensive_additions.tsv``, slurs about
  disability, ethnicity, sex and gender that neither of the above holds.

Only the reviewed list marks words as ``word`` ("fuck", "shit", "cunt": words
with no innocent sense); every other entry matches whole nouns, since a word
of a longer noun is often innocent there ("bandit" goes, "one-armed bandit"
stays; "honky-tonk", "substantia nigra" and "Kara Kum" stay).

``wordnet_flags.tsv.gz``: naming flags, ``noun<TAB>flags`` (comma-separated):

- ``proper``: a sense is a WordNet instance (pointer ``@i``: people, places);
- ``taxonomic``: every sense is a taxonomic group (under taxonomic_group.n.01:
  "genus Oryx", "family Chlamydiaceae", "subgenus") or a binomial of an
  organism ("Oryx gazella": a capitalised genus, then lower-case words; or
  abbreviated, "E. coli", "C. diphtheriae"); a synset with a ranked name
  ("family Cyrilliaceae") is a taxon wherever WordNet files it, and so is an
  organism with a rank's Latin ending ("Clavicipitaceae": -aceae, -idae, -ales, ...);
- ``rare``: neither the noun nor its last word (its head: "truck" of "garbage
  truck") has a sense that SemCor tagged (``index.noun``'s tagsense_cnt):
  "quintipara", "autoinjector".

``wordnet_common_names.tsv.gz``: ``taxonomic noun<TAB>common name``: the
first lemma of the noun's most frequent sense that is neither taxonomic nor
proper nor excluded ("Hyla crucifer": "spring peeper", "Oryx gazella":
"gemsbok"), for the taxonomic nouns that have one: naming shows a cluster
whose nearest noun is such a name by the words a person would use.

``wordnet_glosses.tsv.gz``: ``noun<TAB>gloss``, the definition of the noun's
most frequent sense (WordNet's sense order), without its examples; none for
excluded nouns, proper nouns and taxonomic names (which do not name clusters
by default), nor where a word of the definition is excluded.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import os
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from laic_core.text.vocab import exclusion_reasons, spelling_key  # noqa: E402  (the runtime's rules)

DEFAULT_OUT = REPO_ROOT / "laic_core" / "text"
ADDITIONS = Path(__file__).resolve().parent / "offensive_additions.tsv"
NOUNS_NAME, EXCLUDED_NAME = "wordnet_nouns.txt.gz", "excluded_words.tsv.gz"
FLAGS_NAME, GLOSSES_NAME = "wordnet_flags.tsv.gz", "wordnet_glosses.tsv.gz"
COMMON_NAMES_NAME = "wordnet_common_names.tsv.gz"
PROFANITY_SOURCE = "better-profanity"
# WordNet 3.0 synset offsets (data.noun) of the roots the flags hang from.
USAGE_DOMAINS = {"06717170": "disparagement", "07124340": "obscenity"}  # with their hyponyms' domains
ETHNIC_SLUR = "06718862"  # a hyponym of disparagement (via "slur"), flagged under its own name
PERSON_ROOTS = {"09633969": "wrongdoer", "09831962": "bad person"}
TAXONOMIC_GROUP = "07992450"  # taxonomic_group.n.01
ORGANISM = "00004475"  # organism.n.01
BINOMIAL = re.compile(r"[A-Z][a-z]+( [a-z]+){1,2}")
ABBREVIATED_BINOMIAL = re.compile(r"[A-Z]\. [a-z]+( [a-z]+)?")  # "E. coli": the genus is not spelled out
# A rank and a capitalised name ("family Cyrilliaceae"), and the endings the codes of nomenclature give
# names of ranks above the genus ("Clavicipitaceae"): WordNet files some taxa under organisms (the
# Cyrilliaceae under "dicot"), where the hyponyms of taxonomic_group miss them.
RANKED = re.compile(r"(super|sub|infra)?(kingdom|phylum|division|class|order|family|tribe|genus|section|series)"
                    r" [A-Z][a-z]+")
TAXON_ENDING = re.compile(r"[A-Z][a-z]+(aceae|idae|ales|inae|ineae|oidea|oideae|phyta|phytina|mycetes|mycota|"
                          r"mycotina|opsida|phyceae)")
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


def find_profanity_list() -> Path:
    """better-profanity's word list, from the installed package."""
    spec = importlib.util.find_spec("better_profanity")
    if spec is None or spec.origin is None:
        raise SystemExit("better-profanity is not installed: pip install better-profanity==0.7.0, "
                         "or pass --profanity-list with its profanity_wordlist.txt")
    return Path(spec.origin).parent / "profanity_wordlist.txt"


def read_synsets(data_noun: Path) -> dict[str, tuple[list[str], list[tuple[str, str, int]], str]]:
    """offset -> (lemmas, pointers (symbol, target offset, source word number or 0), gloss) of noun synsets."""
    synsets = {}
    with open(data_noun, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # licence header lines start with two spaces
                continue
            fields = line.split(" ")
            # synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [ptr...] | gloss
            if fields[2] != "n":
                raise SystemExit(f"{data_noun}: not a noun synset line: {line[:60]!r}")
            n_words = int(fields[3], 16)
            lemmas = [fields[4 + 2 * k] for k in range(n_words)]
            at = 4 + 2 * n_words
            pointers = []
            for k in range(int(fields[at])):
                symbol, target, pos, source_target = fields[at + 1 + 4 * k: at + 5 + 4 * k]
                if pos == "n":
                    pointers.append((symbol, target, int(source_target[:2], 16)))
            gloss = line.partition(" | ")[2].strip()
            synsets[fields[0]] = (lemmas, pointers, gloss)
    return synsets


def read_noun_lemmas(data_noun: Path) -> list[str]:
    """All lemma names of all synsets in ``data.noun``, in file order, with underscores."""
    lemmas: list[str] = []
    with open(data_noun, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fields = line.split(" ")
            if fields[2] != "n":
                raise SystemExit(f"{data_noun}: not a noun synset line: {line[:60]!r}")
            lemmas.extend(fields[4 + 2 * k] for k in range(int(fields[3], 16)))
    return lemmas


def read_index(index_noun: Path) -> dict[str, tuple[list[str], int]]:
    """lower-case lemma (underscores) -> (its synset offsets, most frequent first; SemCor-tagged senses)."""
    index = {}
    with open(index_noun, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):
                continue
            # lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset...
            fields = line.split()
            n_synsets, n_pointers = int(fields[2]), int(fields[3])
            tagged = int(fields[5 + n_pointers])
            index[fields[0]] = (fields[6 + n_pointers: 6 + n_pointers + n_synsets], tagged)
    return index


def _below(synsets: dict, root: str) -> set[str]:
    """root and every synset under it through hyponym and instance-hyponym pointers."""
    seen, todo = set(), [root]
    while todo:
        offset = todo.pop()
        if offset not in seen:
            seen.add(offset)
            todo += [t for symbol, t, _ in synsets[offset][1] if symbol in ("~", "~i")]
    return seen


def sense_flags(synsets: dict) -> dict[tuple[str, str], set[str]]:
    """(lemma with underscores, synset offset) -> the WordNet offence flags of that sense of it."""
    domain_of = {}  # usage-domain synset -> flag
    for root, flag in USAGE_DOMAINS.items():
        for offset in _below(synsets, root):
            domain_of[offset] = flag
    domain_of[ETHNIC_SLUR] = "ethnic slur"
    person_of: dict[str, set[str]] = {}  # a wrongdoer is a bad person too: both flags
    for root, flag in PERSON_ROOTS.items():
        for offset in _below(synsets, root):
            person_of.setdefault(offset, set()).add(flag)
    flags: dict[tuple[str, str], set[str]] = {}
    for offset, (lemmas, pointers, _) in synsets.items():
        for symbol, target, source in pointers:
            if symbol == ";u" and target in domain_of:  # source 0: every lemma of the synset
                for lemma in (lemmas if source == 0 else [lemmas[source - 1]]):
                    flags.setdefault((lemma, offset), set()).add(domain_of[target])
        for flag in person_of.get(offset, ()):
            for lemma in lemmas:
                flags.setdefault((lemma, offset), set()).add(flag)
    return flags


def naming_flags(wordnet_dir: Path) -> dict[str, set[str]]:
    """noun (spaces) -> {proper, taxonomic, rare} (see the module docstring); unflagged nouns are absent."""
    synsets = read_synsets(Path(wordnet_dir) / "data.noun")
    index = read_index(Path(wordnet_dir) / "index.noun")
    taxa = _below(synsets, TAXONOMIC_GROUP)
    organisms = _below(synsets, ORGANISM)
    genera = {lemma[len("genus_"):] for offset in taxa for lemma in synsets[offset][0] if lemma.startswith("genus_")}
    senses: dict[str, list[str]] = {}
    proper: set[str] = set()
    for offset, (lemmas, pointers, _) in synsets.items():
        for lemma in lemmas:
            senses.setdefault(lemma, []).append(offset)
        if any(symbol == "@i" for symbol, _, _ in pointers):
            proper.update(lemmas)

    def tagged(lemma: str) -> bool:
        return index.get(lemma.lower(), ((), 0))[1] > 0

    # a synset with a ranked name ("family Cyrilliaceae") is a taxon wherever WordNet files it
    taxa = taxa | {offset for offset, (lemmas, _, _) in synsets.items()
                   if any(RANKED.fullmatch(lemma.replace("_", " ")) for lemma in lemmas)}
    flags: dict[str, set[str]] = {}
    for lemma, offsets in senses.items():
        noun = lemma.replace("_", " ")
        binomial = ((BINOMIAL.fullmatch(noun) is not None and noun.split()[0] in genera)
                    or ABBREVIATED_BINOMIAL.fullmatch(noun) is not None)
        latin = TAXON_ENDING.fullmatch(noun) is not None  # "Clavicipitaceae", filed as an organism
        if all(o in taxa or ((binomial or latin) and o in organisms) for o in offsets):
            flags.setdefault(noun, set()).add("taxonomic")
        if not tagged(lemma) and not tagged(re.split(r"[_\-]", lemma)[-1]):
            flags.setdefault(noun, set()).add("rare")
        if lemma in proper:
            flags.setdefault(noun, set()).add("proper")
    return flags


def common_names(wordnet_dir: Path, flags: dict[str, set[str]], shown) -> dict[str, str]:
    """taxonomic noun -> the first lemma of its most frequent sense with one that `shown` accepts (a
    noun that is not taxonomic, not proper, not excluded); nouns whose senses have none are absent."""
    synsets = read_synsets(Path(wordnet_dir) / "data.noun")
    index = read_index(Path(wordnet_dir) / "index.noun")
    out = {}
    for noun in sorted(n for n, f in flags.items() if "taxonomic" in f):
        lemma = noun.replace(" ", "_")
        for offset in (o for o in index.get(lemma.lower(), ((), 0))[0] if lemma in synsets[o][0]):
            common = [w.replace("_", " ") for w in synsets[offset][0]]
            common = [w for w in common if shown(w)]
            if common:
                out[noun] = common[0]
                break
    return out


def read_word_list(path: Path) -> list[str]:
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def read_additions(path: Path = ADDITIONS) -> list[tuple[str, str, str]]:
    """(word, category, match) rows of the reviewed additions."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        word, category, match = line.split("\t")
        if match not in ("noun", "word"):
            raise SystemExit(f"{path}:{number}: match must be noun or word, not {match!r}")
        rows.append((word, category, match))
    return rows


def excluded_words(wordnet_dir: Path, profanity: list[str], additions: list[tuple[str, str, str]]
                   ) -> dict[str, tuple[str, set[str]]]:
    """spelling key -> (match, reasons) of every excluded word (see the module docstring)."""
    by_sense = sense_flags(read_synsets(Path(wordnet_dir) / "data.noun"))
    table: dict[str, tuple[str, set[str]]] = {}

    def add(key: str, reason: str, match: str = "noun") -> None:
        old_match, reasons = table.get(key, ("noun", set()))
        table[key] = ("word" if "word" in (old_match, match) else "noun", reasons | {reason})

    for (lemma, _), names in by_sense.items():
        for name in names:
            add(spelling_key(lemma), f"WordNet: {name}")
    for word in profanity:
        add(spelling_key(word), PROFANITY_SOURCE)
    for word, category, match in additions:
        add(spelling_key(word), f"reviewed: {category}", match)
    return table


def glosses(wordnet_dir: Path, nouns: list[str]) -> dict[str, str]:
    """noun -> the definition of its most frequent sense (examples left out)."""
    synsets = read_synsets(Path(wordnet_dir) / "data.noun")
    index = read_index(Path(wordnet_dir) / "index.noun")
    out = {}
    for noun in nouns:
        lemma = noun.replace(" ", "_")
        offsets = [o for o in index.get(lemma.lower(), ((), 0))[0] if lemma in synsets[o][0]]
        if offsets:
            definition = re.split(r';\s*"', synsets[offsets[0]][2], maxsplit=1)[0].strip().rstrip(";").strip()
            out[noun] = " ".join(definition.split())
    return out


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


def is_excluded(text: str, table: dict[str, tuple[str, set[str]]]) -> bool:
    """Is the noun excluded, by the runtime's rule?"""
    return bool(exclusion_reasons(text, table))


def shows_an_excluded_word(gloss: str, table: dict[str, tuple[str, set[str]]]) -> bool:
    """Does any word of a gloss match an excluded word? Such a gloss is not shipped (it is shown to people)."""
    return any(is_excluded(word, table) for word in re.findall(r"[^\W\d_][\w'\-]*", gloss))


def build(wordnet_dir: Path, profanity_list: Path, additions: Path = ADDITIONS) -> dict[str, str]:
    """file name -> its text, for every shipped list."""
    nouns = wordnet_nouns(wordnet_dir)
    table = excluded_words(wordnet_dir, read_word_list(profanity_list), read_additions(additions))
    flags = naming_flags(wordnet_dir)
    # Glosses for the nouns that may name a cluster (proper nouns and taxonomic names never do by default).
    shown = [noun for noun in nouns if not is_excluded(noun, table)
             and not flags.get(noun, set()) & {"proper", "taxonomic"}]
    gloss = {noun: text for noun, text in glosses(wordnet_dir, shown).items()
             if not shows_an_excluded_word(text, table)}
    common = common_names(wordnet_dir, flags, lambda noun: not is_excluded(noun, table)
                          and not flags.get(noun, set()) & {"proper", "taxonomic"})
    return {
        NOUNS_NAME: "".join(noun + "\n" for noun in nouns),
        EXCLUDED_NAME: "".join(f"{key}\t{table[key][0]}\t{','.join(sorted(table[key][1]))}\n"
                               for key in sorted(table)),
        FLAGS_NAME: "".join(f"{noun}\t{','.join(sorted(flags[noun]))}\n" for noun in sorted(flags)),
        GLOSSES_NAME: "".join(f"{noun}\t{gloss[noun]}\n" for noun in sorted(gloss)),
        COMMON_NAMES_NAME: "".join(f"{noun}\t{common[noun]}\n" for noun in sorted(common)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet-dir", type=Path, default=None,
                        help="WordNet 3.0 dict folder holding data.noun and index.noun "
                             "(default: /usr/share/wordnet, else nltk_data/corpora/wordnet)")
    parser.add_argument("--profanity-list", type=Path, default=None,
                        help="better-profanity's profanity_wordlist.txt (default: the installed package's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)

    wordnet_dir = args.wordnet_dir or find_wordnet_dir()
    texts = build(wordnet_dir, args.profanity_list or find_profanity_list())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        path = args.out / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(gzip_bytes(text))
        os.replace(tmp, path)
        print(f"{path}: {text.count(chr(10))} lines, {path.stat().st_size / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main()
