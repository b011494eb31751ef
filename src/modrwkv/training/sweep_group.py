"""The ``sweep`` config group: each ``sweeps/<name>.yaml`` of the checkout becomes ``+sweep=<name>``.

The files live in the top-level sweeps/ folder rather than conf/, so they are added to Hydra's ConfigStore (the
``structured://`` source of Hydra's config search path) before Hydra composes, each merged at the top level.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


def register_sweeps(folder: str | Path) -> list[str]:
    """Register every ``<folder>/<name>.yaml`` as the config ``<name>`` of the ``sweep`` group (package
    ``_global_``); returns the names."""
    store = ConfigStore.instance()
    names = []
    for path in sorted(Path(folder).glob("*.yaml")):
        store.store(group="sweep", name=path.stem, node=OmegaConf.load(path), package="_global_")
        names.append(path.stem)
    return names
