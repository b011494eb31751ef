"""Evaluate a trained run on the paper's benchmarks. Configs: conf/eval.yaml, conf/benchmark/.

    python src/eval.py checkpoint=outputs/2026-01-01/12-00-00 benchmark=vqav2,textvqa,gqa,sqa_img,pope,mmbench,mmmu
    python src/eval.py checkpoint=<run>/checkpoints/last.ckpt benchmark=librispeech_clean,librispeech_other
    python src/eval.py checkpoint=<run> benchmark=ett_h1,ett_h2,ett_m1,ett_m2,ecl,weather,traffic benchmark.limit=100

Every call is a sweep over the benchmarks: one MLflow run each (metrics bench/<benchmark>/<metric>), nested under
one parent run and tagged with the training run's id.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from modrwkv.training.resolvers import register_resolvers

register_resolvers()

CONF = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="eval")
def main(cfg: DictConfig) -> None:
    from modrwkv.evaluation.eval_run import run_eval

    cfg.paths.root = str(Path(cfg.paths.root).resolve())
    run_eval(cfg)


if __name__ == "__main__":
    main()
