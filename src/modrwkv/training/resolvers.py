"""OmegaConf resolvers the configs use (registered once, before Hydra composes)."""

from __future__ import annotations

import os
from datetime import datetime

from omegaconf import OmegaConf


def lookup(table, key):
    """``${lookup:${preset.sizes},${backbone.scale}}``: an entry of a table, with a clear error when absent."""
    key = str(key)
    if key not in table:
        raise KeyError(f"{key!r} is not one of {sorted(table)} (see the preset's table)")
    return table[key]


def run_stamp() -> str:
    """``${run_stamp:}``: a folder name unique to this launch, ``HH-MM-SS-microseconds_<job>``.

    ``<job>`` is the SLURM job (``j<array job>_<task>`` or ``j<job id>``) when there is one, else the process id
    (``p<pid>``): two runs started in the same microsecond on one machine, or in one SLURM array, still differ.
    Registered with caching, as Hydra's ``now``: every use in one config (and its sweep jobs) gives the same value.
    """
    stamp = datetime.now().strftime("%H-%M-%S-%f")
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        job = f"j{array}_{task}"
    elif os.environ.get("SLURM_JOB_ID"):
        job = f"j{os.environ['SLURM_JOB_ID']}"
    else:
        job = f"p{os.getpid()}"
    return f"{stamp}_{job}"


def register_resolvers() -> None:
    """Register ``lookup`` and ``run_stamp`` (no-op for those already registered)."""
    if not OmegaConf.has_resolver("lookup"):
        OmegaConf.register_new_resolver("lookup", lookup)
    if not OmegaConf.has_resolver("run_stamp"):
        OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True)
