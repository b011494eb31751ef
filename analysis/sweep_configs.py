"""What a sweep will run: its Hydra sweeper params and the composed config of each job (Hydra's compose API).

    for overrides in job_overrides("conv_reduction"):
        cfg = compose_job("conv_reduction", overrides, ["preset=paper"])
"""

from __future__ import annotations

import itertools
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
SWEEPS = REPO / "sweeps"


def sweep_names() -> list[str]:
    """The sweeps in sweeps/ (each usable as ``python src/train.py -m +sweep=<name>``)."""
    return sorted(p.stem for p in SWEEPS.glob("*.yaml"))


def _register_resolvers() -> None:
    from modrwkv.training.resolvers import register_resolvers
    from modrwkv.training.sweep_group import register_sweeps

    register_resolvers()
    register_sweeps(SWEEPS)


def compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """conf/train.yaml composed with ``overrides`` (no run, no output folder)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    _register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("train", overrides=overrides, return_hydra_config=return_hydra_config)


def sweep_params(name: str, extra: list[str] = ()) -> dict[str, list[str]]:
    """The sweep's ``hydra.sweeper.params`` as {key: [value, ...]} (Hydra's own override grammar parses them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose([f"+sweep={name}", *extra], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params or {}, resolve=False)
    parser = OverridesParser.create()
    out = {}
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        out[key] = list(override.sweep_string_iterator()) if override.is_sweep_override() else [str(value)]
    return out


def job_overrides(name: str, extra: list[str] = ()) -> list[list[str]]:
    """One override list per job of the sweep, in the basic sweeper's order (the cartesian product)."""
    params = sweep_params(name, extra)
    return [[f"{k}={v}" for k, v in zip(params, combo)] for combo in itertools.product(*params.values())]


def compose_job(name: str, overrides: list[str], extra: list[str] = ()) -> DictConfig:
    """The config one job of the sweep runs with (``extra`` e.g. ["preset=paper"] or test sizes)."""
    return compose([f"+sweep={name}", *overrides, *extra])
