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
def main(cfg: DictConfig) -> float | None:
    from modrwkv.training.run import train

    metrics = train(cfg)
    objective = cfg.get("objective")
    return metrics.get(objective) if objective else None


if __name__ == "__main__":
    main()
