"""Adapters: the paper's MLP with the LayerNorm residual, the Conv1d token reduction and its length formula,
and every encoder x adapter combination forward and backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modrwkv.adapters import ADAPTERS, ConvMLPAdapter, MLPAdapter, build_adapter, conv_output_length
from modrwkv.encoders import build_encoder

LLM_DIM = 48

RAW = {
    "image": lambda i: Image.fromarray(np.random.default_rng(i).integers(0, 256, (30, 45, 3), dtype=np.uint8)),
    "audio": lambda i: (np.random.default_rng(i).standard_normal(8000 + 3210 * i) * 0.1).astype(np.float32),
    "series": lambda i: np.random.default_rng(i).standard_normal(50 + 17 * i).astype(np.float32),
}


def test_mlp_adapter_is_the_papers():
    torch.manual_seed(0)
    ad = MLPAdapter(in_dim=37, llm_dim=LLM_DIM, scale=4)
    assert ad.fc1.weight.shape == (4 * LLM_DIM, 37) and ad.fc2.weight.shape == (LLM_DIM, 4 * LLM_DIM)
    x = torch.randn(2, 5, 37)
    out, lengths = ad(x)
    p = ad.fc2(torch.relu(ad.fc1(x)))
    torch.testing.assert_close(out, p + torch.nn.functional.layer_norm(p, (LLM_DIM,), ad.norm.weight, ad.norm.bias))
    assert lengths is None and ad.output_length(577) == 577
    for scale in (2, 4, 8):
        assert MLPAdapter(37, LLM_DIM, scale).hidden == scale * LLM_DIM


@pytest.mark.parametrize("k,s,expected", [(3, 2, 288), (4, 3, 192), (5, 4, 144)])
def test_conv_reduction_token_counts_of_table_7(k, s, expected):
    ad = build_adapter("conv", 24, LLM_DIM, kernel_size=k, stride=s, padding=0)
    assert ad.output_length(577) == expected
    out, _ = ad(torch.randn(1, 577, 24))
    assert out.shape == (1, expected, LLM_DIM)


@pytest.mark.parametrize("k,s,p", [(1, 1, 0), (2, 2, 0), (3, 2, 1), (3, 2, 2), (5, 3, 2), (4, 4, 0)])
@pytest.mark.parametrize("length", [5, 16, 17, 50])
def test_conv_output_length_formula_matches_the_convolution(k, s, p, length):
    ad = ConvMLPAdapter(8, LLM_DIM, k, s, p)
    out, _ = ad(torch.randn(2, length, 8))
    assert out.shape[1] == ad.output_length(length) == (length + 2 * p - k) // s + 1
    assert conv_output_length(torch.tensor([length]), k, s, p).item() == out.shape[1]


def test_audio_adapter_halves_the_rate():
    ad = build_adapter("audio_conv", 64, LLM_DIM)
    assert ad.conv.out_channels == 2 * LLM_DIM and (ad.kernel_size, ad.stride, ad.padding) == (3, 2, 2)
    assert ad.output_length(1500) == 751 and ad.output_length(50) == 26


def test_conv_with_lengths_equals_each_sample_alone():
    torch.manual_seed(0)
    ad = build_adapter("audio_conv", 16, LLM_DIM)
    lengths = torch.tensor([30, 11])
    x = torch.randn(2, 30, 16)
    out, out_len = ad(x, lengths)
    assert out_len.tolist() == [ad.output_length(30), ad.output_length(11)]
    alone, _ = ad(x[1:, :11])
    torch.testing.assert_close(out[1, : out_len[1]], alone[0])


def test_too_short_input_and_unknown_adapter_are_clear_errors():
    with pytest.raises(ValueError, match="too few"):
        ConvMLPAdapter(8, LLM_DIM, kernel_size=5, stride=1, padding=0).output_length(3)
    with pytest.raises(ValueError, match="unknown adapter"):
        build_adapter("qformer", 8, LLM_DIM)


@pytest.mark.parametrize("encoder", ["tiny-siglip", "tiny-clip", "tiny-whisper", "tiny-wavenet"])
@pytest.mark.parametrize("kind", ADAPTERS)
def test_every_encoder_with_every_adapter_runs_forward_and_backward(encoder, kind):
    torch.manual_seed(0)
    enc = build_encoder(encoder)
    ad = build_adapter(kind, enc.out_dim, LLM_DIM, scale=2)
    raws = [RAW[enc.modality](i) for i in range(2)]
    x = enc.collate([enc.preprocess(r) for r in raws])
    feat_len = torch.tensor([enc.feature_length(r) for r in raws])
    feats = enc(x, feat_len if enc.variable_length else None)  # (2, L, D)
    assert feats.shape[0] == 2 and feats.shape[2] == enc.out_dim
    assert feats.shape[1] == (enc.num_tokens if enc.modality != "series" else int(feat_len.max()))
    out, out_len = ad(feats, feat_len if enc.variable_length else None)
    expected = ad.output_length(feats.shape[1])
    assert out.shape == (2, expected, LLM_DIM)
    if enc.variable_length:
        assert out_len.tolist() == [ad.output_length(int(n)) for n in feat_len]
    out.square().mean().backward()
    assert all(p.grad is not None for p in ad.parameters())
    # frozen pretrained encoders get no gradient; the WaveNet (trained from scratch) does
    assert all((p.grad is not None) == (not enc.frozen) for p in enc.parameters())
