"""Counting corrupt samples that the reader skips, and stopping when there are too many.

A ``SkipCounter`` is a webdataset exception handler (``handler(exn) -> True`` means "skip and continue"). Its
counts live in shared memory, so the DataLoader's worker processes (forked or spawned from the process that made
it) all add to the numbers the trainer reads and logs in the main process.

Every skip is attributed to its shard (the reader passes it in a ``CorruptSample``; webdataset appends it to tar
errors). Shards are grouped by their folder, the split in the datamodule's layout (``train/``, ``val/``, ``test/``;
any other folder counts as ``other``), so training and evaluation skips are reported apart, and the error names the
shards that were bad.
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import PurePosixPath

log = logging.getLogger("modrwkv.data")

SPLITS = ("train", "val", "test", "other")
_SLOTS, _NAME_BYTES = 32, 240  # the shared table of bad shards: this many shards, names cut to their last bytes


class TooManySkipsError(RuntimeError):
    """Raised when the reader skipped more corrupt samples than the configured limit allows."""


class CorruptSample(ValueError):
    """A sample that could not be used, with where it came from (``source``: the shard; ``key``: the sample)."""

    def __init__(self, source: str | None, key: str | None, cause: BaseException):
        super().__init__(f"{source} sample {key!r}: {cause!r}")
        self.source, self.key, self.cause = source, key, cause


def source_of(exn: BaseException) -> str | None:
    """The shard a reading error came from: a ``CorruptSample``'s source, or the url webdataset appends."""
    if isinstance(exn, CorruptSample):
        return exn.source
    for arg in reversed(getattr(exn, "args", ())):
        if isinstance(arg, str) and ".tar" in arg:
            return arg
    return None


def split_of(source: str | None) -> str:
    """``train`` / ``val`` / ``test`` from a shard's folder name, else ``other``."""
    if not source:
        return "other"
    folder = PurePosixPath(str(source).split("://")[-1]).parent.name
    return folder if folder in SPLITS else "other"


class SkipCounter:
    """Counts decoded (``seen``) and skipped samples per split and per bad shard; raises ``TooManySkipsError``.

    ``max_skips``: at most this many skips (None: no absolute limit). ``max_fraction``: at most this share of
    skipped samples, judged over ``max(attempted, window)`` samples: early on a few bad shards read first cannot
    pass the limit, while a dataset that is broken throughout stops after ``max_fraction * window`` skips.
    ``window`` is ``min_total`` until ``expect(n)`` says how many samples a pass reads (None: no fraction limit).
    """

    def __init__(self, max_skips: int | None = None, max_fraction: float | None = 0.05, min_total: int = 1000,
                 name: str = "data", log_first: int = 10):
        self.max_skips, self.max_fraction, self.min_total = max_skips, max_fraction, min_total
        self.window = min_total
        self.name, self.log_first = name, log_first
        # Locks made in a "spawn" context work in forked workers too, whereas fork-made ones cannot go to spawned
        # workers: so spawn, whatever start method the DataLoader uses.
        ctx = multiprocessing.get_context("spawn")
        self._counts = ctx.Array("q", 2 * len(SPLITS))  # skipped per split, then seen per split
        self._shard_names = ctx.Array("c", _SLOTS * _NAME_BYTES, lock=False)  # guarded by _counts' lock
        self._shard_skips = ctx.Array("q", _SLOTS, lock=False)
        self._local = [0] * (2 * len(SPLITS))  # this process's own counts (each DataLoader worker has its copy)

    def expect(self, n: int | None) -> None:
        """Judge the fraction over at least ``n`` samples (one pass over the data); call before the workers start."""
        self.window = max(self.min_total, int(n or 0))

    def by_split(self) -> dict[str, tuple[int, int]]:
        """``{split: (skipped, seen)}``."""
        with self._counts.get_lock():
            c = list(self._counts)
        k = len(SPLITS)
        return {s: (c[i], c[k + i]) for i, s in enumerate(SPLITS)}

    @property
    def skipped(self) -> int:
        return sum(s for s, _ in self.by_split().values())

    @property
    def seen(self) -> int:
        return sum(n for _, n in self.by_split().values())

    @property
    def fraction(self) -> float:
        total = self.seen + self.skipped
        return self.skipped / total if total else 0.0

    def bad_shards(self) -> dict[str, int]:
        """``{shard: skips}`` of the shards that had skips, most first (the first 32 bad shards; names may be cut
        to their last 240 bytes)."""
        with self._counts.get_lock():
            raw, counts = bytes(self._shard_names[:]), list(self._shard_skips)
        out = {}
        for i, n in enumerate(counts):
            if n:
                out[raw[i * _NAME_BYTES:(i + 1) * _NAME_BYTES].rstrip(b"\0").decode("utf-8", "replace")] = n
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def metrics(self) -> dict[str, float]:
        """``<name>/skipped``, ``<name>/skip_fraction`` and ``<name>/skipped_<split>`` (train, val, test; other if
        any) for the logger."""
        splits = self.by_split()
        out = {f"{self.name}/skipped": float(self.skipped), f"{self.name}/skip_fraction": self.fraction}
        for split, (skipped, _) in splits.items():
            if split != "other" or skipped:
                out[f"{self.name}/skipped_{split}"] = float(skipped)
        return out

    def reset(self) -> None:
        """Zero every count (e.g. between evaluation passes)."""
        with self._counts.get_lock():
            for i in range(len(self._counts)):
                self._counts[i] = 0
            for i in range(_SLOTS):
                self._shard_skips[i] = 0
            self._shard_names[:] = b"\0" * (_SLOTS * _NAME_BYTES)

    def state_dict(self) -> dict:
        """The counts and the bad-shard table, for a checkpoint."""
        with self._counts.get_lock():
            return {"counts": list(self._counts), "shard_names": bytes(self._shard_names[:]),
                    "shard_skips": list(self._shard_skips)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's counts (limits then apply to the whole run, not only since the resume)."""
        with self._counts.get_lock():
            self._counts[:] = [int(c) for c in state["counts"]]
            self._shard_names[:] = bytes(state["shard_names"])
            self._shard_skips[:] = [int(c) for c in state["shard_skips"]]

    def local_counts(self, split: str) -> tuple[int, int]:
        """(skipped, seen) of ``split`` counted by this process alone (in a DataLoader worker: that worker's)."""
        i = SPLITS.index(split)
        return self._local[i], self._local[len(SPLITS) + i]

    def set_split(self, split: str, skipped: int, seen: int) -> None:
        """Set the shared counts of one split (a resume restores the training split's exact consumed counts)."""
        i = SPLITS.index(split)
        with self._counts.get_lock():
            self._counts[i], self._counts[len(SPLITS) + i] = int(skipped), int(seen)

    def count_seen(self, n: int = 1, source: str | None = None) -> None:
        """Record ``n`` samples decoded successfully (from the shard ``source``)."""
        with self._counts.get_lock():
            self._counts[len(SPLITS) + SPLITS.index(split_of(source))] += n
        self._local[len(SPLITS) + SPLITS.index(split_of(source))] += n

    def _record_skip(self, source: str | None) -> tuple[int, int]:
        """Count one skip of ``source``; returns (skipped, seen) over all splits."""
        with self._counts.get_lock():
            self._counts[SPLITS.index(split_of(source))] += 1
            self._local[SPLITS.index(split_of(source))] += 1
            if source:
                name = str(source).encode("utf-8")[-(_NAME_BYTES - 1):]
                for i in range(_SLOTS):
                    slot = bytes(self._shard_names[i * _NAME_BYTES:(i + 1) * _NAME_BYTES]).rstrip(b"\0")
                    if slot in (name, b""):
                        if not slot:
                            self._shard_names[i * _NAME_BYTES:i * _NAME_BYTES + len(name)] = name
                        self._shard_skips[i] += 1
                        break
            k = len(SPLITS)
            return sum(self._counts[:k]), sum(self._counts[k:])

    def __call__(self, exn: BaseException) -> bool:
        """The webdataset handler: count the skip, log it, raise if past a limit, else return True (continue)."""
        if isinstance(exn, TooManySkipsError):  # raised by a handler of an inner stage: do not count it twice
            raise exn
        skipped, seen = self._record_skip(source_of(exn))
        if skipped <= self.log_first or skipped % 100 == 0:
            log.warning("%s: skipped corrupt sample #%d (%d decoded so far): %r", self.name, skipped, seen, exn)
        total = skipped + seen
        too_many = self.max_skips is not None and skipped > self.max_skips
        too_frequent = self.max_fraction is not None and skipped > self.max_fraction * max(total, self.window)
        if too_many or too_frequent:
            limits = f"max_skips={self.max_skips}, max_fraction={self.max_fraction} over {max(total, self.window)}"
            shards = ", ".join(f"{s} ({n})" for s, n in list(self.bad_shards().items())[:8]) or "unknown"
            raise TooManySkipsError(
                f"{self.name}: {skipped} corrupt samples skipped out of {total} ({skipped / total:.1%}), over the "
                f"limit ({limits} samples); the data is probably broken. Bad shards (skips): {shards}. "
                f"Last error: {exn!r}") from exn
        return True
