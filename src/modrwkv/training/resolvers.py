"""OmegaConf resolvers the configs use (registered once, before Hydra composes)."""

from __future__ import annotations

from omegaconf import OmegaConf


def lookup(table, key):
    """``${lookup:${preset.sizes},${backbone.scale}}``: an entry of a table, with a clear error when absent."""
    key = str(key)
    if key not in table:
        raise KeyError(f"{key!r} is not one of {sorted(table)} (see the preset's table)")
    return table[key]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("lookup"):
        OmegaConf.register_new_resolver("lookup", lookup)
