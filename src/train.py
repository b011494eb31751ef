"""Train a ModRWKV model (or pretrain a text backbone with task=lm). Configs: conf/train.yaml.

    python src/train.py                                        # the default tiny offline experiment
    python src/train.py -m encoder=siglip,clip adapter=mlp,conv  # a sweep, nested under one MLflow parent run
    python src/train.py -m +sweep=conv_reduction               # one of the paper's tables (sweeps/)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # src/ (the package is also installed with pip -e)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from modrwkv.training.resolvers import register_resolvers  # noqa: E402

register_resolvers()

CONF = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="train")
def main(cfg: DictConfig) -> float | list[float] | None:
    from modrwkv.training.config_check import exit_on_config_error
    from modrwkv.training.run import train
    from modrwkv.training.search import objective_value

    metrics = exit_on_config_error(train, cfg)  # a bad option: one line on stderr, exit status 2
    return objective_value(cfg.get("objective"), metrics)  # raises when missing or not finite (a failed trial)


if __name__ == "__main__":
    main()
