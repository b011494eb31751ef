"""What the converters share: a report of what was written and skipped, and CLI plumbing."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("modrwkv.data")


@dataclass
class ConvertReport:
    """``written`` samples per split, ``skipped`` per reason, and the shard paths."""

    written: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    shards: dict = field(default_factory=dict)

    def skip(self, reason: str, what: str) -> None:
        """Count one skipped source item (logging the first few of each reason)."""
        self.skipped[reason] += 1
        if self.skipped[reason] <= 5:
            log.warning("skipped %s: %s", what, reason)

    def to_dict(self) -> dict:
        return {"written": dict(self.written), "skipped": dict(self.skipped),
                "shards": {k: len(v) for k, v in self.shards.items()}}

    def __str__(self) -> str:
        return json.dumps(self.to_dict(), indent=1)
