"""preset=paper: every job of every sweep builds the paper's real architecture (on the meta device: shapes, no memory,
no weights), and running without the weight files fails at once with a message naming the missing file."""


import pytest
import torch

from analysis.sweep_configs import compose_job, job_overrides
from analysis.tokens import conv_tokens
from modrwkv.backbone import RWKV7Config
from modrwkv.training.build import build_model
from modrwkv.weights import WeightFileMissing

# the paper's backbones (RWKV-7 releases) and vision towers: (layers, width) and (width, tokens)
BACKBONES = {"0.4b": (24, 1024), "1.5b": (24, 2048), "2.9b": (32, 2560)}
TOWERS = {"siglip2": (768, 576), "clip": (1024, 577)}
PAPER_SWEEPS = ["encoder_size", "conv_reduction", "adapter_scale", "backbone_init"]
# shapes only: random encoder init instead of the real files, and no backbone checkpoint to read
SHAPES_ONLY = ["preset=paper", "preset.pretrained_encoders=false", "backbone.checkpoint=null"]


def _meta_model(cfg):
    with torch.device("meta"):  # the encoders too: CLIP-L/14 would otherwise allocate 1.2 GB per build
        return build_model(cfg, device="meta")


@pytest.mark.parametrize("name", PAPER_SWEEPS)
def test_paper_architectures_on_meta(name):
    for overrides in job_overrides(name):
        cfg = compose_job(name, overrides, SHAPES_ONLY)
        model = _meta_model(cfg)
        assert all(p.is_meta for p in model.parameters())
        bb = model.backbone.config
        assert bb == RWKV7Config.from_name(cfg.backbone.scale)
        assert (bb.n_layer, bb.n_embd) == BACKBONES[cfg.backbone.scale]
        assert (model.adapter.in_dim, model.adapter.out_dim) == (model.encoder.out_dim, bb.n_embd)
        if name == "adapter_scale":
            assert model.encoder.modality == "series"
            assert model.adapter.hidden == int(cfg.adapter.scale) * bb.n_embd  # 2x, 4x, 8x the LLM width
            continue
        width, tokens = TOWERS[cfg.encoder.family]
        assert (model.encoder.out_dim, model.encoder.num_tokens) == (width, tokens)
        conv = f"{cfg.adapter.kernel_size},{cfg.adapter.stride}" if cfg.adapter.kind == "conv" else "none"
        assert model.num_modality_tokens(tokens) == conv_tokens(tokens, conv)


def test_conv_reduction_token_counts_match_the_paper():
    """577 -> 288 / 192 / 144 (the paper counts 577 for SigLIP2; the tower itself gives 576 -> 287 / 191 / 143)."""
    counts = []
    for overrides in job_overrides("conv_reduction"):
        model = _meta_model(compose_job("conv_reduction", overrides, SHAPES_ONLY))
        counts.append((model.num_modality_tokens(577), model.num_modality_tokens(model.encoder.num_tokens)))
    assert counts == [(577, 576), (288, 287), (192, 191), (144, 143)]


def _cause_chain(e: BaseException) -> list[BaseException]:
    out = [e]
    while out[-1].__cause__ is not None:
        out.append(out[-1].__cause__)
    return out


@pytest.mark.parametrize("name, overrides, missing, kind", [
    # the encoder is built first, so its missing file is what a run without any weights reports
    ("encoder_size", ["encoder=clip", "backbone.scale=2.9b"], "open_clip_model.safetensors", WeightFileMissing),
    # with the encoders' random init allowed, the backbone checkpoint the sweep asks for is the missing file
    ("backbone_init", ["backbone=g1", "preset.pretrained_encoders=false"], "rwkv7-g1-0.4b.pth", WeightFileMissing),
    ("conv_reduction", ["adapter=conv_3_2", "preset.pretrained_encoders=false"], "rwkv7-base-1.5b.pth",
     WeightFileMissing),
])
def test_paper_preset_without_weights_names_the_missing_file(name, overrides, missing, kind, tmp_path, monkeypatch):
    from modrwkv.training.run import train

    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("MODRWKV_ROOT", str(tmp_path))
    monkeypatch.setenv("MODRWKV_WEIGHTS", str(weights))
    cfg = compose_job(name, overrides, ["preset=paper", "logger=none", f"paths.output={tmp_path / 'out'}"])
    with pytest.raises(Exception) as info:
        train(cfg)
    chain = _cause_chain(info.value)
    assert any(isinstance(e, kind) for e in chain), chain
    assert missing in str(info.value) and str(weights) in str(info.value)
    assert not (tmp_path / "data").exists()  # failed before any work
