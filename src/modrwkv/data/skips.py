"""Counting corrupt samples that the reader skips, and stopping when there are too many.

A ``SkipCounter`` is a webdataset exception handler (``handler(exn) -> True`` means "skip and continue"). Its
counts live in shared memory, so the DataLoader's worker processes (forked or spawned from the process that made
it) all add to the numbers the trainer reads and logs in the main process.
"""

from __future__ import annotations

import logging
import multiprocessing

log = logging.getLogger("modrwkv.data")


class TooManySkipsError(RuntimeError):
    """Raised when the reader skipped more corrupt samples than the configured limit allows."""


class SkipCounter:
    """Counts decoded (``seen``) and skipped samples; raises ``TooManySkipsError`` past the limits.

    ``max_skips``: at most this many skips (None: no absolute limit). ``max_fraction``: at most this share of
    skipped / (seen + skipped), checked once ``min_total`` samples have been attempted (None: no limit).
    """

    def __init__(self, max_skips: int | None = 100, max_fraction: float | None = 0.05, min_total: int = 100,
                 name: str = "data", log_first: int = 10):
        self.max_skips, self.max_fraction, self.min_total = max_skips, max_fraction, min_total
        self.name, self.log_first = name, log_first
        # Locks made in a "spawn" context work in forked workers too, whereas fork-made ones cannot go to spawned
        # workers: so spawn, whatever start method the DataLoader uses.
        ctx = multiprocessing.get_context("spawn")
        self._skipped = ctx.Value("q", 0)
        self._seen = ctx.Value("q", 0)

    @property
    def skipped(self) -> int:
        return int(self._skipped.value)

    @property
    def seen(self) -> int:
        return int(self._seen.value)

    @property
    def fraction(self) -> float:
        total = self.seen + self.skipped
        return self.skipped / total if total else 0.0

    def metrics(self) -> dict[str, float]:
        """``{"<name>/skipped": n, "<name>/skip_fraction": f}`` for the logger."""
        return {f"{self.name}/skipped": float(self.skipped), f"{self.name}/skip_fraction": self.fraction}

    def reset(self) -> None:
        """Zero both counts (e.g. between evaluation passes)."""
        with self._skipped.get_lock():
            self._skipped.value = 0
        with self._seen.get_lock():
            self._seen.value = 0

    def state_dict(self) -> dict[str, int]:
        """The counts, for a checkpoint."""
        return {"seen": self.seen, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a checkpoint's counts (limits then apply to the whole run, not only since the resume)."""
        with self._skipped.get_lock():
            self._skipped.value = int(state["skipped"])
        with self._seen.get_lock():
            self._seen.value = int(state["seen"])

    def count_seen(self, n: int = 1) -> None:
        """Record ``n`` samples decoded successfully."""
        with self._seen.get_lock():
            self._seen.value += n

    def __call__(self, exn: BaseException) -> bool:
        """The webdataset handler: count the skip, log it, raise if past a limit, else return True (continue)."""
        if isinstance(exn, TooManySkipsError):  # raised by a handler of an inner stage: do not count it twice
            raise exn
        with self._skipped.get_lock():
            self._skipped.value += 1
            skipped = int(self._skipped.value)
        seen = self.seen
        if skipped <= self.log_first or skipped % 100 == 0:
            log.warning("%s: skipped corrupt sample #%d (%d decoded so far): %r", self.name, skipped, seen, exn)
        total = skipped + seen
        too_many = self.max_skips is not None and skipped > self.max_skips
        too_frequent = (self.max_fraction is not None and total >= self.min_total
                        and skipped / total > self.max_fraction)
        if too_many or too_frequent:
            limits = f"max_skips={self.max_skips}, max_fraction={self.max_fraction} (after {self.min_total})"
            raise TooManySkipsError(
                f"{self.name}: {skipped} corrupt samples skipped out of {total} ({skipped / total:.1%}), over the "
                f"limit ({limits}); the data is probably broken. Last error: {exn!r}") from exn
        return True
