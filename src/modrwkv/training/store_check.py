"""Whether a local folder or MLflow SQLite store can really be written (probe files, judged as the kernel judges)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def can_create_in(folder: Path) -> bool:
    """True if a file can really be created in ``folder`` (a probe file, not permission bits: root, ACLs and
    read-only mounts are then judged as the kernel judges them)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".modrwkv-probe-"):
            return True
    except OSError:
        return False


def check_tracking_uri(uri: str) -> str | None:
    """Why the MLflow store at ``uri`` cannot be written (None if it can, or if it is not a local SQLite file)."""
    db = sqlite_path(uri)
    if db is None:
        return None
    if db.exists():
        try:
            with open(db, "r+b"):
                pass
        except OSError as e:
            return f"the MLflow database {db} is not writable ({e.strerror})"
    folder = nearest_existing(db.parent)
    if not can_create_in(folder):  # SQLite writes its journal (and the lock file) next to the database
        return f"the folder of the MLflow database, {folder}, is not writable"
    return None


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///path`` tracking URI (None for other stores)."""
    if not str(uri).startswith("sqlite:///"):
        return None
    return Path(str(uri)[len("sqlite:///"):])
