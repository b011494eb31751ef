"""sweeps/: every search composes into the jobs the paper's table needs, and one job of each runs at the tiny preset."""

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from analysis.sweep_configs import compose_job, job_overrides, sweep_names, sweep_params  # noqa: E402

# what each sweep must vary (the rows of the paper's table) and the config every job of it must have
EXPECTED = {
    "encoder_size": {"encoder": ["siglip2", "clip"], "backbone.scale": ["0.4b", "1.5b", "2.9b"]},
    "conv_reduction": {"adapter": ["mlp", "conv_3_2", "conv_4_3", "conv_5_4"]},
    "adapter_scale": {"adapter.scale": ["2", "4", "8"]},
    "backbone_init": {"backbone": ["random", "base", "g1"]},
    "smoke": {"adapter": ["mlp", "conv_3_2"]},
    "asr_encoder": {"encoder": ["wavlm", "wavlm_base_plus", "whisper_medium", "whisper"]},
    "forecast_encoder": {"encoder": ["wavenet", "timer"]},
}
# tiny test sizes: a handful of steps on a few samples
TINY = ["preset.max_steps=2", "preset.val_every=2", "preset.warmup_steps=1",
        "preset.data_sizes={train:32,val:8,test:8}", "preset.batch_size=8", "preset.eval_batch_size=8",
        "preset.limit_val_batches=1", "eval.max_batches=1", "logger=none", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "test_after_training=true"]


def test_every_sweep_file_is_checked():
    assert sweep_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sweep_params(name):
    assert sweep_params(name) == EXPECTED[name]
    jobs = job_overrides(name)
    assert len(jobs) == math.prod(len(v) for v in EXPECTED[name].values())
    cfg = compose_job(name, jobs[0])
    assert cfg.sweep_name == name  # the MLflow parent run's name, which summarize.py selects by


def test_conv_reduction_jobs():
    """Table 7's configurations: SigLIP2, the 1.5B stand-in, base checkpoint; (k, s) and no padding per option."""
    seen = []
    for overrides in job_overrides("conv_reduction"):
        cfg = compose_job("conv_reduction", overrides)
        assert (cfg.encoder.family, cfg.backbone.scale, cfg.backbone.name) == ("siglip2", "1.5b", "base")
        assert cfg.backbone.size == "small"  # the tiny preset's stand-in for 1.5B
        seen.append((cfg.adapter.kind, cfg.adapter.kernel_size, cfg.adapter.stride, cfg.adapter.get("padding", 0)))
    assert seen == [("mlp", None, None, 0), ("conv", 3, 2, 0), ("conv", 4, 3, 0), ("conv", 5, 4, 0)]


def test_encoder_size_and_backbone_init_jobs():
    sizes = {compose_job("encoder_size", o).backbone.size for o in job_overrides("encoder_size")}
    assert sizes == {"tiny", "small", "medium"}
    checkpoints = [compose_job("backbone_init", o).backbone.checkpoint for o in job_overrides("backbone_init")]
    assert checkpoints == [None, "tiny-lm-base.pth", "tiny-lm-g1.pth"]  # what task=lm writes (test_lm.py)


def test_adapter_scale_is_the_forecasting_task():
    for overrides, scale in zip(job_overrides("adapter_scale"), (2, 4, 8)):
        cfg = compose_job("adapter_scale", overrides)
        assert (cfg.modality.name, cfg.encoder.family, cfg.adapter.kind, cfg.adapter.scale) == (
            "series", "wavenet", "mlp", scale)


def test_command_line_overrides_win_over_the_sweep():
    params = sweep_params("backbone_init", ["backbone.scale=0.4b"])
    assert params["backbone"] == ["random", "base", "g1"]
    cfg = compose_job("backbone_init", ["backbone=g1", "backbone.scale=1.5b"])
    assert cfg.backbone.checkpoint == "small-lm-g1.pth"


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", [
    ("encoder_size", ["encoder=clip", "backbone.scale=0.4b", "backbone=random"]),  # base: see test_lm.py
    ("conv_reduction", ["adapter=conv_5_4", "backbone=random", "backbone.scale=0.4b"]),
    ("adapter_scale", ["adapter.scale=8"]),
])
def test_one_job_of_each_sweep_trains(name, overrides, tmp_path, monkeypatch):
    """A job of each sweep trains a couple of steps, validates with generation and tests (in-process, tiny)."""
    from modrwkv.training.run import train

    monkeypatch.setenv("MODRWKV_ROOT", str(tmp_path))
    cfg = compose_job(name, overrides, TINY + [f"paths.output={tmp_path / 'out'}"])
    metrics = train(cfg)
    assert math.isfinite(metrics["test/loss"])
    main = "test/mse" if cfg.modality.name == "series" else "test/accuracy"
    assert main in metrics and math.isfinite(metrics[main])
