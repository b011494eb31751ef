"""WavLM and Timer: checkpoints written here in each released format load and give the reference's features,
the paper preset builds the real sizes, a missing file is named, and both run end to end at the tiny preset."""

import json
import math
from argparse import Namespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from analysis.sweep_configs import compose, compose_job, job_overrides
from modrwkv.encoders import TimerEncoder, WavLMEncoder, build_encoder
from modrwkv.encoders.timer import TIMER_CONFIGS
from modrwkv.encoders.wavlm import WAVLM_CONFIGS
from modrwkv.training.build import build_model
from modrwkv.weights import WeightFileMissing

CLIPS = [16000, 7000, 3201]  # samples: 1 s, 0.44 s, 0.2 s -> 49, 21, 9 features


def _hf_wavlm(name):
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(1)
    model = WavLMModel(WavLMConfig(**WAVLM_CONFIGS[name])).eval()
    with torch.no_grad():  # random values everywhere, also where transformers initialises constants
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _clips():
    rng = np.random.default_rng(0)
    return [(0.3 * rng.standard_normal(n) + 0.1).astype(np.float32) for n in CLIPS]


def _encode(enc, raws):
    x = enc.collate([enc.preprocess(r) for r in raws])
    lengths = torch.tensor([enc.feature_length(r) for r in raws])
    with torch.no_grad():
        return enc(x, lengths), lengths


@pytest.mark.parametrize("name, normalize, mask", [("tiny-wavlm-large", True, True),
                                                   ("tiny-wavlm-base-plus", False, False)])
def test_wavlm_hf_folder_matches_transformers_pipeline(tmp_path, name, normalize, mask):
    """save_pretrained + the feature extractor's config, then the paper's code path (processor -> model ->
    last_hidden_state) is the reference: padding mask for Large's layout, none for Base+'s."""
    from transformers import Wav2Vec2FeatureExtractor

    ref = _hf_wavlm(name)
    folder = tmp_path / name
    ref.save_pretrained(folder)
    proc = Wav2Vec2FeatureExtractor(do_normalize=normalize, return_attention_mask=mask)
    proc.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    enc = build_encoder(name, weights=tmp_path)
    assert isinstance(enc, WavLMEncoder) and enc.normalize is normalize and enc.frozen
    assert not any(p.requires_grad for p in enc.parameters())
    raws = _clips()
    feats, lengths = _encode(enc, raws)
    assert lengths.tolist() == [ref._get_feat_extract_output_lengths(n).item() for n in CLIPS] == [49, 21, 9]
    inputs = proc(raws, sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = ref(**inputs).last_hidden_state
    assert feats.shape == want.shape
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(feats[i, :n], want[i, :n], rtol=1e-4, atol=1e-4)


def test_wavlm_pytorch_model_bin_and_hidden_layer(tmp_path):
    """pytorch_model.bin as microsoft/wavlm-large has it: a plain state dict, the positional convolution's weight
    norm under the older weight_g / weight_v names."""
    ref = _hf_wavlm("tiny-wavlm-large")
    ref.config.save_pretrained(tmp_path)
    legacy = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    state = {}
    for k, v in ref.state_dict().items():
        for new, old in legacy.items():
            k = k.replace(new, old)
        state[k] = v
    assert "encoder.pos_conv_embed.conv.weight_g" in state
    torch.save(state, tmp_path / "pytorch_model.bin")
    enc = WavLMEncoder(WAVLM_CONFIGS["tiny-wavlm-large"], checkpoint=tmp_path, normalize=False, layer=1)
    x = torch.from_numpy(_clips()[0])[None]
    with torch.no_grad():
        want = ref(x, output_hidden_states=True).hidden_states[1]
        got = enc(x, torch.tensor([49]))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# the UniLM release's names of each transformers tensor (written out here, independently of the loader's mapping)
def _to_unilm(hf_key: str, group_norm: bool) -> str:
    layer = {"attention.gru_rel_pos_const": "self_attn.grep_a", "attention.gru_rel_pos_linear": "self_attn.grep_linear",
             "attention.rel_attn_embed": "self_attn.relative_attention_bias", "attention.k_proj": "self_attn.k_proj",
             "attention.q_proj": "self_attn.q_proj", "attention.v_proj": "self_attn.v_proj",
             "attention.out_proj": "self_attn.out_proj", "layer_norm": "self_attn_layer_norm",
             "feed_forward.intermediate_dense": "fc1", "feed_forward.output_dense": "fc2",
             "final_layer_norm": "final_layer_norm"}
    fixed = {"masked_spec_embed": "mask_emb",
             "feature_projection.layer_norm.weight": "layer_norm.weight",
             "feature_projection.layer_norm.bias": "layer_norm.bias",
             "feature_projection.projection.weight": "post_extract_proj.weight",
             "feature_projection.projection.bias": "post_extract_proj.bias",
             "encoder.pos_conv_embed.conv.bias": "encoder.pos_conv.0.bias",
             "encoder.pos_conv_embed.conv.parametrizations.weight.original0": "encoder.pos_conv.0.weight_g",
             "encoder.pos_conv_embed.conv.parametrizations.weight.original1": "encoder.pos_conv.0.weight_v",
             "encoder.layer_norm.weight": "encoder.layer_norm.weight",
             "encoder.layer_norm.bias": "encoder.layer_norm.bias"}
    if hf_key in fixed:
        return fixed[hf_key]
    parts = hf_key.split(".")
    if hf_key.startswith("feature_extractor.conv_layers."):
        i, kind, what = parts[2], parts[3], parts[4]
        # (conv, dropout, norm, GELU); the norm is GroupNorm (Base+, layer 0) or (Transpose, LayerNorm, Transpose)
        norm = "2" if group_norm else "2.1"
        return f"feature_extractor.conv_layers.{i}." + {"conv": "0", "layer_norm": norm}[kind] + f".{what}"
    i, rest = parts[2], ".".join(parts[3:])
    if rest in layer:  # gru_rel_pos_const: a parameter, not a module
        return f"encoder.layers.{i}.{layer[rest]}"
    return f"encoder.layers.{i}.{layer[rest.rsplit('.', 1)[0]]}.{parts[-1]}"


@pytest.mark.parametrize("name, large", [("tiny-wavlm-large", True), ("tiny-wavlm-base-plus", False)])
def test_wavlm_unilm_pt_matches_the_model_it_was_written_from(tmp_path, name, large):
    ref = _hf_wavlm(name)
    c = ref.config
    cfg = {"extractor_mode": "layer_norm" if large else "default", "encoder_layers": c.num_hidden_layers,
           "encoder_embed_dim": c.hidden_size, "encoder_ffn_embed_dim": c.intermediate_size,
           "encoder_attention_heads": c.num_attention_heads, "activation_fn": "gelu", "layer_norm_first": large,
           "conv_bias": False, "normalize": large,
           "conv_feature_layers": "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2", "conv_pos": 16,
           "conv_pos_groups": 2, "relative_position_embedding": True, "num_buckets": 32, "max_distance": 80,
           "gru_rel_pos": True, "dropout": 0.1, "feature_grad_mult": 1.0}
    state = {_to_unilm(k, group_norm=not large): v for k, v in ref.state_dict().items()}
    state["label_embs_concat"] = torch.zeros(4, 8)  # a pretraining-only tensor the encoder ignores
    file = "WavLM-Large.pt" if large else "WavLM-Base+.pt"
    torch.save({"cfg": cfg, "model": state}, tmp_path / file)
    enc = build_encoder(name, weights=tmp_path / file)
    assert enc.normalize is large  # the checkpoint's cfg["normalize"]
    raw = _clips()[1]
    feats, lengths = _encode(enc, [raw])
    wav = torch.from_numpy(raw)[None]
    with torch.no_grad():  # UniLM's recipe: layer_norm over the utterance when cfg.normalize
        want = ref(F.layer_norm(wav, wav.shape) if large else wav).last_hidden_state
    torch.testing.assert_close(feats, want, rtol=1e-3, atol=1e-3)


def test_wavlm_pt_that_needs_unpickling_is_refused_with_how_to_convert(tmp_path):
    path = tmp_path / "WavLM-Large.pt"
    torch.save({"cfg": Namespace(encoder_layers=2), "model": {}}, path)
    from modrwkv.safe_load import CheckpointError

    with pytest.raises(CheckpointError, match="cannot be read weights-only") as info:
        build_encoder("tiny-wavlm-large", weights=path)
    assert "re-save" in str(info.value) and "config.json" in str(info.value)


# -- Timer ------------------------------------------------------------------------------------------------------
# the released checkpoint's tensor names (thuml/timer-base-84m's model.safetensors), per layer i
_TIMER_LAYER_KEYS = ["self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight",
                     "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
                     "self_attn.o_proj.weight", "ffn_layer.gate_proj.weight", "ffn_layer.up_proj.weight",
                     "ffn_layer.down_proj.weight", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]


def _timer_keys(layers, heads):
    return ({"model.embed_layer.emb.weight", "model.norm.weight", "model.norm.bias"}
            | {f"model.layers.{i}.{k}" for i in range(layers) for k in _TIMER_LAYER_KEYS}
            | {f"lm_heads.{j}.weight" for j in range(heads)})


def _timer_reference(sd, cfg, x):
    """An independent Timer forward: explicit per-head softmax attention with a causal mask, rotary positions as
    rotations of (i, i + d/2) pairs, post-norm blocks, SwiGLU; x (B, L) -> features (B, N, D), forecast (B, P)."""
    p, d, nh = cfg["input_token_len"], cfg["hidden_size"], cfg["num_attention_heads"]
    hd = d // nh
    h = x.reshape(x.shape[0], -1, p) @ sd["model.embed_layer.emb.weight"].T  # (B, N, D)
    n = h.shape[1]
    theta = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)  # (hd/2,)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * theta[None]  # (N, hd/2)
    cos, sin = ang.cos().float(), ang.sin().float()

    def rope(t):  # (B, H, N, hd): pair (j, j + hd/2) rotated by angle pos * theta_j
        a, b = t[..., : hd // 2], t[..., hd // 2:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)

    def lin(t, name, bias=True):
        out = t @ sd[name + ".weight"].T
        return out + sd[name + ".bias"] if bias and name + ".bias" in sd else out

    def ln(t, name):
        mu, var = t.mean(-1, keepdim=True), t.var(-1, unbiased=False, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-5) * sd[name + ".weight"] + sd[name + ".bias"]

    causal = torch.ones(n, n, dtype=torch.bool).tril()
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        q, k, v = (lin(h, pre + f"self_attn.{w}_proj").view(h.shape[0], n, nh, hd).transpose(1, 2) for w in "qkv")
        s = rope(q) @ rope(k).transpose(-1, -2) / math.sqrt(hd)
        a = s.masked_fill(~causal, float("-inf")).softmax(-1) @ v  # (B, H, N, hd)
        attn = lin(a.transpose(1, 2).reshape(h.shape[0], n, d), pre + "self_attn.o_proj", bias=False)
        h = ln(h + attn, pre + "norm1")
        g = lin(h, pre + "ffn_layer.gate_proj", False)
        m = lin(g * torch.sigmoid(g) * lin(h, pre + "ffn_layer.up_proj", False), pre + "ffn_layer.down_proj", False)
        h = ln(h + m, pre + "norm2")
    h = ln(h, "model.norm")
    return h, h[:, -1] @ sd["lm_heads.0.weight"].T


def _write_timer_folder(folder, cfg):
    from safetensors.torch import save_file

    torch.manual_seed(2)
    keys = _timer_keys(cfg["num_hidden_layers"], len(cfg["output_token_lens"]))
    d, f, p = cfg["hidden_size"], cfg["intermediate_size"], cfg["input_token_len"]

    def shape(k):
        if "norm" in k or k.endswith(".bias"):
            return (d,)
        if "emb" in k:
            return (d, p)
        if "lm_heads" in k:
            return (cfg["output_token_lens"][0], d)
        return {"gate_proj": (f, d), "up_proj": (f, d), "down_proj": (d, f)}.get(k.split(".")[-2], (d, d))

    sd = {}
    for k in sorted(keys):
        t = torch.randn(shape(k)) / math.sqrt(shape(k)[-1])
        sd[k] = 1.0 + 0.1 * t if "norm" in k and k.endswith(".weight") else t
    folder.mkdir(parents=True)
    save_file(sd, str(folder / "model.safetensors"))
    published = {"architectures": ["TimerForPrediction"], "auto_map": {"AutoConfig": "configuration_timer.TimerConfig"},
                 "model_type": "timer", "use_cache": True, "rope_theta": 10000, "torch_dtype": "float32",
                 "initializer_range": 0.02, **cfg}
    (folder / "config.json").write_text(json.dumps(published))
    return sd


TINY_TIMER = {"input_token_len": 8, "hidden_size": 32, "intermediate_size": 64, "output_token_lens": [8],
              "num_hidden_layers": 2, "num_attention_heads": 2, "hidden_act": "silu", "max_position_embeddings": 256,
              "attention_dropout": 0.0}


def test_timer_hf_folder_loads_strictly_and_matches_an_independent_forward(tmp_path):
    sd = _write_timer_folder(tmp_path / "tiny-timer", TINY_TIMER)
    enc = build_encoder("tiny-timer", weights=tmp_path)
    assert isinstance(enc, TimerEncoder) and enc.frozen and not any(p.requires_grad for p in enc.parameters())
    assert set(enc.timer.state_dict()) == set(sd)  # the published names, nothing more (strict load)
    rng = np.random.default_rng(0)
    raws = [np.cumsum(rng.standard_normal(n)) + 5.0 for n in (64, 37, 8)]
    x = enc.collate([enc.preprocess(r) for r in raws])
    lengths = [enc.feature_length(r) for r in raws]
    assert lengths == [8, 5, 1] and x.shape == (3, 64)
    with torch.no_grad():
        feats = enc(x, torch.tensor(lengths))
        forecast = enc.timer(enc.preprocess(raws[0])[None])
    for i, n in enumerate(lengths):  # each series alone, unpadded, through the reference
        want, _ = _timer_reference(sd, TINY_TIMER, enc.preprocess(raws[i])[None])
        torch.testing.assert_close(feats[i, :n], want[0], rtol=1e-4, atol=1e-4)
    _, want_forecast = _timer_reference(sd, TINY_TIMER, enc.preprocess(raws[0])[None])
    torch.testing.assert_close(forecast, want_forecast, rtol=1e-4, atol=1e-4)


def test_timer_base_84m_has_the_released_size_and_names():
    with torch.device("meta"):
        enc = build_encoder("timer-base-84m", pretrained=False)
    cfg = TIMER_CONFIGS["timer-base-84m"]
    assert (enc.out_dim, enc.patch_size, cfg.num_hidden_layers) == (1024, 96, 8)
    assert set(enc.timer.state_dict()) == _timer_keys(8, 1)
    assert round(sum(p.numel() for p in enc.parameters()) / 1e6) == 84


# -- missing files, paper preset, end to end ------------------------------------------------------------------
@pytest.mark.parametrize("name, files", [("wavlm-large", ["model.safetensors", "WavLM-Large.pt"]),
                                         ("wavlm-base-plus", ["pytorch_model.bin", "WavLM-Base+.pt"]),
                                         ("timer-base-84m", ["model.safetensors"])])
def test_missing_weight_file_is_named(tmp_path, name, files):
    with pytest.raises(WeightFileMissing) as info:
        build_encoder(name, weights=tmp_path)
    assert all(f in str(info.value) for f in files) and str(tmp_path / name) in str(info.value)


@pytest.mark.parametrize("name", ["timer-base-84m", "wavlm-large"])
def test_hf_folder_without_config_json_is_named(tmp_path, name):
    (tmp_path / name).mkdir()
    (tmp_path / name / "model.safetensors").write_bytes(b"")
    with pytest.raises(WeightFileMissing, match="config.json") as info:
        build_encoder(name, weights=tmp_path)
    assert str(tmp_path / name) in str(info.value)


def test_paper_preset_builds_the_real_sizes_and_names_missing_files(tmp_path):
    shapes = ["preset=paper", "preset.pretrained_encoders=false", "backbone.checkpoint=null"]
    widths = {"wavlm": 1024, "wavlm_base_plus": 768, "whisper_medium": 1024, "whisper": 768, "wavenet": 256,
              "timer": 1024}
    for sweep in ("asr_encoder", "forecast_encoder"):
        for overrides in job_overrides(sweep):
            cfg = compose_job(sweep, overrides, shapes)
            with torch.device("meta"):
                model = build_model(cfg, device="meta")
            assert model.encoder.out_dim == widths[cfg.encoder.family] == model.adapter.in_dim
            assert model.adapter.out_dim == 1024  # the 0.4B backbone
            if cfg.encoder.family == "timer":  # frozen although experiment=forecast trains its encoder
                assert "encoder" in cfg.stage.train and model.encoder.frozen
    cfg = compose(["experiment=forecast", "encoder=timer", "preset=paper", f"paths.weights={tmp_path}"])
    with pytest.raises(Exception) as info:  # Hydra wraps the encoder's error
        build_model(cfg, device="meta")
    chain = [info.value]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    assert any(isinstance(e, WeightFileMissing) for e in chain)
    assert "model.safetensors" in str(info.value) and str(tmp_path / "timer-base-84m") in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("experiment, encoder, metric", [("asr", "wavlm", "test/wer"),
                                                         ("forecast", "timer", "test/mse")])
def test_experiment_runs_end_to_end_at_the_tiny_preset(tmp_path, monkeypatch, experiment, encoder, metric):
    import shutil

    from modrwkv.training.run import train

    if experiment == "asr" and shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng): the audio data cannot be generated")
    monkeypatch.setenv("MODRWKV_ROOT", str(tmp_path))
    cfg = compose([f"experiment={experiment}", f"encoder={encoder}", "preset.max_steps=2", "preset.val_every=2",
                   "preset.warmup_steps=1", "preset.data_sizes={train:16,val:8,test:8}", "preset.batch_size=8",
                   "preset.eval_batch_size=8", "preset.limit_val_batches=1", "eval.max_batches=1",
                   "eval.max_new_tokens=16", "logger=none", "trainer.enable_progress_bar=false",
                   "trainer.enable_model_summary=false",
                   f"paths.output={tmp_path / 'out'}", f"paths.data={tmp_path / 'data'}"])
    metrics = train(cfg)
    assert math.isfinite(metrics["test/loss"]) and math.isfinite(metrics[metric])
