"""Config nodes: the sweeper, ``hydra/sweeper=modrwkv_optuna`` (hydra-optuna-sweeper's, plus ``search_key``), and
``hydra/sweeper/sampler=tpe4``, Optuna 4's TPE sampler (the stock ``tpe`` node passes arguments Optuna 4.9
deprecates)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf, SamplerConfig
except ImportError as e:  # Hydra shows this as a warning at start; only +search=... needs the sweeper
    raise ImportError("hydra-optuna-sweeper is missing: `pip install --no-deps hydra-optuna-sweeper==1.3.0` "
                      "(make setup does it; README, Bayesian search)") from e


@dataclass
class TPE4SamplerConf(SamplerConfig):
    """optuna.samplers.TPESampler with the arguments Optuna 4 keeps."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10  # random trials before the model of good configurations is used
    n_ei_candidates: int = 24
    multivariate: bool = False  # one joint model of all parameters (their interactions) instead of one each
    group: bool = False
    constant_liar: bool = False  # with parallel trials: treat the running ones as bad, to spread the asks


@dataclass
class ModRWKVOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.modrwkv_search.optuna_sweeper.ModRWKVOptunaSweeper"
    # the job's config node that receives <node>.trial, <node>.storage and <node>.study_name: through them the
    # training side (modrwkv.training.search.SearchCallback) reaches its trial
    search_key: str = "search"


ConfigStore.instance().store(group="hydra/sweeper", name="modrwkv_optuna", node=ModRWKVOptunaSweeperConf,
                             provider="modrwkv")
ConfigStore.instance().store(group="hydra/sweeper/sampler", name="tpe4", node=TPE4SamplerConf, provider="modrwkv")
