"""Encoders: features equal the reference libraries' own outputs for the same weights (loaded from files in the
public formats), the family's preprocessing, token counts, freezing, registry and clear weight-file errors."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import open_clip
import pytest
import torch
import whisper
from PIL import Image

from modrwkv.encoders import (
    ENCODERS,
    WeightsNotFoundError,
    build_encoder,
    list_encoders,
    normalize_series,
    register_tiny_open_clip_configs,
)
from modrwkv.encoders.audio import WHISPER_DIMS


def _image(w=40, h=28, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _save_open_clip(name: str, folder, filename: str):
    """A randomly initialised open_clip model of config `name`, saved as a state-dict checkpoint file."""
    register_tiny_open_clip_configs()
    torch.manual_seed(1)
    model = open_clip.create_model(name)
    with torch.no_grad():  # make the final norm non-trivial so a skipped norm would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = folder / filename
    if filename.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    return path


def _captured(module: torch.nn.Module, fn):
    """Run fn() and return the output of `module` inside it (a forward hook)."""
    seen = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        fn()
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("name,filename", [("tiny-siglip", "open_clip_pytorch_model.bin"),
                                           ("tiny-clip", "open_clip_model.safetensors")])
def test_vision_features_equal_open_clip_tokens(tmp_path, name, filename):
    path = _save_open_clip(name, tmp_path, filename)
    ref = open_clip.create_model(name, pretrained=str(path)).eval()  # open_clip's own loader
    enc = build_encoder(name, weights=tmp_path)  # finds the file in the folder
    x = torch.stack([enc.preprocess(_image(seed=i)) for i in range(2)])  # (2, 3, 32, 32)
    feats = enc(x)
    # the tokens open_clip computes inside its own encode_image, before pooling
    norm = ref.visual.trunk.norm if name == "tiny-siglip" else ref.visual.ln_post
    inside = _captured(norm, lambda: ref.encode_image(x))
    torch.testing.assert_close(feats, inside, rtol=1e-5, atol=1e-5)
    # and open_clip's forward_intermediates of the last block, normalised, prefix tokens included
    out = ref.visual.forward_intermediates(x, indices=1, normalize_intermediates=True, intermediates_only=True,
                                           output_fmt="NLC", output_extra_tokens=(name == "tiny-clip"))
    tokens = out["image_intermediates"][0]
    if name == "tiny-clip":
        tokens = torch.cat([out["image_intermediates_prefix"][0], tokens], 1)
    torch.testing.assert_close(feats, tokens, rtol=1e-5, atol=1e-5)
    assert feats.shape == (2, enc.num_tokens, enc.out_dim)
    assert enc.num_tokens == (16 if name == "tiny-siglip" else 17)  # (32/8)^2 patches (+ CLS for CLIP)
    # a file given directly works too, and a random init differs (the weights really were loaded)
    torch.testing.assert_close(build_encoder(name, weights=path)(x), feats)
    assert not torch.allclose(build_encoder(name)(x), feats)


def test_vision_preprocessing_is_the_familys():
    grey = Image.new("RGB", (48, 20), (51, 102, 204))
    sig = build_encoder("tiny-siglip").preprocess(grey)
    clip = build_encoder("tiny-clip").preprocess(grey)
    assert sig.shape == clip.shape == (3, 32, 32)
    rgb = torch.tensor([51, 102, 204]) / 255.0
    torch.testing.assert_close(sig.mean((1, 2)), (rgb - 0.5) / 0.5, atol=1e-3, rtol=0)  # SigLIP: mean = std = 0.5
    mean = torch.tensor(open_clip.constants.OPENAI_DATASET_MEAN)
    std = torch.tensor(open_clip.constants.OPENAI_DATASET_STD)
    torch.testing.assert_close(clip.mean((1, 2)), (rgb - mean) / std, atol=1e-3, rtol=0)  # CLIP: OpenAI stats
    # SigLIP squashes the whole image; CLIP centre-crops the shortest side: a left-edge stripe shows the difference
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :16] = 255
    s, c = (build_encoder(n).preprocess(Image.fromarray(img)) for n in ("tiny-siglip", "tiny-clip"))
    assert s[:, :, 1].mean() > 0.5 and c[:, :, 1].mean() < -1.0


def test_whisper_features_equal_whisper_encoder(tmp_path):
    dims = WHISPER_DIMS["tiny-whisper"]
    torch.manual_seed(2)
    model = whisper.model.Whisper(dims).eval()
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, tmp_path / "tiny-whisper.pt")
    enc = build_encoder("tiny-whisper", weights=tmp_path / "tiny-whisper.pt")
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in (16000, 23456)]
    x = torch.stack([enc.preprocess(a) for a in clips])  # (2, 80, 3000)
    assert x.shape == (2, 80, 3000)
    feats = enc(x)  # (2, 1500, 64)
    for i, audio in enumerate(clips):
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio))  # whisper's documented usage
        ref = model.encoder(mel[None])[0]  # (1500, 64)
        n = enc.feature_length(audio)
        assert n == math.ceil(len(audio) / 320)
        torch.testing.assert_close(feats[i, :n], ref[:n], rtol=1e-5, atol=1e-5)
    assert feats.shape == (2, 1500, 64) and enc.out_dim == 64 and enc.num_tokens == 1500


def test_whisper_lengths_and_bad_audio():
    enc = build_encoder("tiny-whisper")
    assert enc.feature_length(np.zeros(16000, np.float32)) == 50
    assert enc.feature_length(np.zeros(16001, np.float32)) == 51
    assert enc.feature_length(np.zeros(16000 * 40, np.float32)) == 1500  # past 30 s whisper trims
    for bad in (np.zeros(0, np.float32), np.full(100, np.nan, np.float32), np.zeros((2, 100), np.float32)):
        with pytest.raises(ValueError):
            enc.preprocess(bad)


def test_whisper_wrong_size_file_is_rejected(tmp_path):
    dims = WHISPER_DIMS["tiny-whisper"]
    torch.save({"dims": asdict(dims), "model_state_dict": whisper.model.Whisper(dims).state_dict()},
               tmp_path / "small.pt")
    with pytest.raises(ValueError, match="differ from the expected"):
        build_encoder("whisper-small", weights=tmp_path)


@pytest.mark.parametrize("name,filename", [("whisper-medium", "medium.pt"), ("siglip2-b16-384", "open_clip_model"),
                                           ("clip-l14-336", "open_clip_model")])
def test_missing_weights_name_file_and_folder(tmp_path, monkeypatch, name, filename):
    with pytest.raises(WeightsNotFoundError) as err:
        build_encoder(name, weights=tmp_path)
    assert filename in str(err.value) and str(tmp_path) in str(err.value)
    monkeypatch.delenv("MODRWKV_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError, match="MODRWKV_WEIGHTS"):
        build_encoder(name)
    with pytest.raises(WeightsNotFoundError, match="missing.pt"):
        build_encoder(name, weights=tmp_path / "missing.pt")


@pytest.mark.parametrize("name,tokens,width", [("siglip2-b16-384", 576, 768), ("siglip-b16", 196, 768),
                                               ("siglip-so400m", 729, 1152), ("clip-l14-336", 577, 1024),
                                               ("whisper-small", 1500, 768), ("whisper-medium", 1500, 1024)])
def test_real_sizes_token_counts_and_widths(name, tokens, width):
    with torch.device("meta"):  # the real architecture without allocating it
        enc = build_encoder(name, pretrained=False)
    assert (enc.num_tokens, enc.out_dim) == (tokens, width)


def test_registry_has_every_family_and_tiny_variants():
    names = list_encoders()
    for n in ("siglip2-b16-384", "siglip-b16", "siglip-so400m", "clip-l14-336", "whisper-small", "whisper-medium",
              "wavenet", "tiny-siglip", "tiny-clip", "tiny-whisper", "tiny-wavenet"):
        assert n in names
    assert set(list_encoders("audio")) == {n for n, s in ENCODERS.items() if s.modality == "audio"}
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("siglip3")


@pytest.mark.parametrize("name", ["tiny-siglip", "tiny-clip", "tiny-whisper"])
def test_pretrained_encoders_are_frozen_and_stay_in_eval(name):
    enc = build_encoder(name)
    parent = torch.nn.Sequential(enc)
    parent.train()
    assert enc.frozen and not enc.training and not any(p.requires_grad for p in enc.parameters())
    enc.set_frozen(False)
    parent.train()
    assert enc.training and all(p.requires_grad for p in enc.parameters())


def test_wavenet_trains_by_default_and_normalises_per_series():
    enc = build_encoder("tiny-wavenet")
    assert not enc.frozen and all(p.requires_grad for p in enc.parameters())
    series = np.linspace(100.0, 300.0, 37).astype(np.float32)
    x = enc.preprocess(series)
    assert len(x) == 40  # left-padded to a multiple of the patch (8)
    torch.testing.assert_close(x[3:].mean(), torch.tensor(0.0), atol=1e-5, rtol=0)  # the context's own mean / std
    torch.testing.assert_close(x[3:].std(unbiased=False), torch.tensor(1.0), atol=1e-4, rtol=0)
    assert torch.all(x[:3] == x[3])  # padding repeats the oldest value
    assert enc.feature_length(series) == 5 == math.ceil(37 / 8)
    normed, mean, std = normalize_series(series * 10)
    assert mean == pytest.approx(2000.0) and normed.dtype == np.float32
    assert enc.feature_length(np.zeros(1000)) == enc.num_tokens == 32  # keeps the newest max_length=256 values
    with pytest.raises(ValueError):
        enc.preprocess(np.full(10, np.nan))


def test_wavenet_tokens_do_not_see_padding_or_the_future():
    torch.manual_seed(0)
    enc = build_encoder("tiny-wavenet")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(64), rng.standard_normal(24)
    xa, xb = enc.preprocess(a), enc.preprocess(b)
    batch = enc.collate([xa, xb])  # (2, 64), b right-padded
    assert batch.shape == (2, 64)
    out = enc(batch)  # (2, 8, 32)
    torch.testing.assert_close(out[1, :3], enc(xb[None])[0])
    # causal: changing the last patch leaves earlier tokens unchanged
    xa2 = xa.clone()
    xa2[-8:] += 1.0
    torch.testing.assert_close(enc(xa2[None])[0, :-1], out[0, :-1])
    out.sum().backward()
    assert enc.patch.weight.grad is not None
