"""Train a ModRWKV model (or pretrain a text backbone with task=lm). Configs: conf/train.yaml.

    python src/train.py                                        # the default tiny offline experiment
    python src/train.py -m encoder=siglip,clip adapter=mlp,conv  # a sweep, nested under one MLflow parent run
    python src/train.py -m +sweep=conv_reduction               # one of the paper's tables (sweeps/)
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

# run as `python src/train.py`, Python puts src/ first on sys.path, so this checkout's modrwkv is the one imported
from modrwkv.training.resolvers import register_resolvers
from modrwkv.training.sweep_group import register_sweeps

REPO = Path(__file__).resolve().parent.parent
CONF = str(REPO / "conf")
register_resolvers()
register_sweeps(REPO / "sweeps")  # sweeps/<name>.yaml is the config group option +sweep=<name>


@hydra.main(version_base="1.3", config_path=CONF, config_name="train")
def main(cfg: DictConfig) -> float | list[float] | None:
    from modrwkv.training.config_check import exit_on_config_error
    from modrwkv.training.run import train
    from modrwkv.training.search import objective_value

    metrics = exit_on_config_error(train, cfg)  # a bad option: one line on stderr, exit status 2
    return objective_value(cfg.get("objective"), metrics)  # raises when missing or not finite (a failed trial)


if __name__ == "__main__":
    main()
