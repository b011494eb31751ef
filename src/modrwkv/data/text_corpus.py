"""Real English text available offline, for pretraining the RWKV-7 backbone alone (task=lm).

Sources, read in a fixed order until a character budget is reached (so a corpus is reproducible on one machine):

- ``stdlib``: the docstrings of Python's own standard library (module, class and function docstrings, read with
  ``ast`` from the sources: nothing is imported, so no module runs code);
- ``docs``: documentation shipped inside installed packages: ``.rst`` / ``.md`` / ``.txt`` files and the long
  descriptions in ``*.dist-info/METADATA`` (package READMEs), keeping only files that read as prose;
- ``packages``: the docstrings of installed packages' sources.

Each document (one module's docstrings, one file) goes to train, val or test by a hash of its name, so validation
text is held out at the document level. The documents are tokenized with the World tokenizer, joined with the
end-of-text id 0, and cached as int32 arrays under ``root`` (a folder named by a fingerprint of the options).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_dir

log = logging.getLogger("modrwkv.data")

SOURCES = ("stdlib", "docs", "packages")
SPLITS = ("train", "val", "test")
END_OF_TEXT = 0
# folders of the standard library that hold tests, demos or vendored code rather than documented modules
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "lib2to3", "__pycache__", "turtledemo", "ensurepip"}
# metadata-like text files in site-packages that are not prose
_SKIP_TXT = ("top_level", "entry_points", "RECORD", "requirements", "dependency_links", "namespace_packages",
             "SOURCES", "not-zip-safe", "vocab", "merges")


@dataclass(frozen=True)
class CorpusConfig:
    """What goes into the corpus. ``max_chars`` bounds the text read (the split fractions are of documents)."""

    sources: tuple[str, ...] = ("stdlib", "docs")
    max_chars: int = 8_000_000
    val_fraction: float = 0.02
    test_fraction: float = 0.02
    max_doc_chars: int = 200_000  # longer files are cut (a few huge changelogs would otherwise dominate)

    def fingerprint(self) -> str:
        """Names the cache folder: the options plus the Python version (whose stdlib is read)."""
        key = json.dumps({**asdict(self), "python": sys.version.split()[0]}, sort_keys=True)
        return hashlib.sha1(key.encode()).hexdigest()[:10]


# ---- reading documents ------------------------------------------------------------------------------------------
def module_docstrings(path: Path, name: str) -> str:
    """A module's docstrings as text: the module's, then each class's and function's under its name. '' if none."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError, OSError, RecursionError):
        return ""  # a file that does not parse on this Python (e.g. a py2 leftover) has nothing for us
    parts = []
    doc = ast.get_docstring(tree)
    if doc:
        parts.append(f"{name}\n\n{doc}")
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) > 40:  # one-liners like "Return x." carry little text
                kind = "class" if isinstance(node, ast.ClassDef) else "def"
                parts.append(f"{kind} {node.name}\n    {doc}")
    return "\n\n".join(parts)


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if not (set(p.relative_to(root).parts[:-1]) & _SKIP_DIRS))


def _is_prose(text: str) -> bool:
    """Mostly letters and spaces, with words of ordinary length (not a table of numbers or a vocabulary)."""
    if len(text) < 200:
        return False
    sample = text[:20_000]
    letters = sum(c.isalpha() or c.isspace() for c in sample) / len(sample)
    words = sample.split()
    mean_word = sum(map(len, words)) / max(1, len(words))
    return letters > 0.8 and 2.5 < mean_word < 12


def _metadata_description(path: Path) -> str:
    """The long description (the package README) of a dist-info METADATA file: the body after the headers."""
    text = path.read_text(encoding="utf-8", errors="replace")
    head, sep, body = text.partition("\n\n")
    return body if sep else ""


def iter_documents(sources: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(document id, text) in a fixed order: the sources in the given order, files sorted by path."""
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown text sources {sorted(unknown)}; choose from {SOURCES}")
    paths = sysconfig.get_paths()
    stdlib, site = Path(paths["stdlib"]), Path(paths["purelib"])
    for source in sources:
        if source == "stdlib":
            for p in _python_files(stdlib):
                name = ".".join(p.relative_to(stdlib).with_suffix("").parts).removesuffix(".__init__")
                yield f"stdlib:{name}", module_docstrings(p, name)
        elif source == "docs":
            for p in sorted(site.glob("*.dist-info/METADATA")):
                yield f"docs:{p.parent.name}", _metadata_description(p)
            for p in sorted(q for ext in ("rst", "md", "txt") for q in site.rglob(f"*.{ext}")):
                if p.stem.startswith(_SKIP_TXT) or p.stat().st_size > 5_000_000:
                    continue
                text = p.read_text(encoding="utf-8", errors="replace")
                yield f"docs:{p.relative_to(site)}", text if _is_prose(text) else ""
        elif source == "packages":
            for p in _python_files(site):
                name = ".".join(p.relative_to(site).with_suffix("").parts).removesuffix(".__init__")
                yield f"packages:{name}", module_docstrings(p, name)


def split_of(doc_id: str, val_fraction: float, test_fraction: float) -> str:
    """train / val / test for a document, from a hash of its id (stable across runs and machines)."""
    u = int(hashlib.md5(doc_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < val_fraction:
        return "val"
    if u < val_fraction + test_fraction:
        return "test"
    return "train"


# ---- building and loading the cache -----------------------------------------------------------------------------
def build_corpus(out_dir: str | Path, config: CorpusConfig, tokenizer=None) -> dict:
    """Read, split and tokenize the documents into ``out_dir`` (written atomically); returns the manifest."""
    from ..backbone.tokenizer import WorldTokenizer

    tok = tokenizer or WorldTokenizer()
    ids: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    docs = {s: 0 for s in SPLITS}
    chars = 0
    for doc_id, text in iter_documents(config.sources):
        text = text.strip()
        if not text:
            continue
        text = text[: config.max_doc_chars]
        split = split_of(doc_id, config.val_fraction, config.test_fraction)
        ids[split].append(np.asarray(tok.encode(text) + [END_OF_TEXT], dtype=np.int32))
        docs[split] += 1
        chars += len(text)
        if chars >= config.max_chars:
            break
    manifest = {"config": asdict(config), "python": sys.version.split()[0], "chars": chars, "documents": docs,
                "tokens": {s: int(sum(len(a) for a in ids[s])) for s in SPLITS}}
    for s in SPLITS:
        if not ids[s]:
            raise ValueError(f"the text corpus has no {s} documents ({docs}); raise task.corpus.max_chars or the "
                             f"{s} fraction")
    with atomic_dir(out_dir) as tmp:
        for s in SPLITS:
            np.save(tmp / f"{s}.npy", np.concatenate(ids[s]))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log.info("text corpus: %d chars, documents %s, tokens %s -> %s", chars, docs, manifest["tokens"], out_dir)
    return manifest


def prepare_corpus(root: str | Path, config: CorpusConfig) -> Path:
    """The cached corpus folder for ``config`` under ``root`` (built on first use)."""
    folder = Path(root) / f"text-{config.fingerprint()}"
    if not (folder / "manifest.json").exists():
        build_corpus(folder, config)
    else:
        log.info("reusing the text corpus at %s", folder)
    return folder


def load_split(folder: str | Path, split: str) -> np.ndarray:
    """The token ids of one split, memory-mapped (int32, documents separated by 0)."""
    return np.load(Path(folder) / f"{split}.npy", mmap_mode="r")
