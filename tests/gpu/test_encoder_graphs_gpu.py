"""Graph-replayed encoder + adapter (`EncoderGraphs`) against the eager encode, and `ModRWKV` generation through
it against ``fast=False``, on a real GPU (the encoder a tiny timm SigLIP-style ViT: the bench tower's structure).

Skipped without CUDA. On the device: PYTHONPATH=src python -m pytest -q -m gpu tests/gpu/test_encoder_graphs_gpu.py
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modrwkv.adapters import build_adapter
from modrwkv.backbone import RWKV7, RWKV7Config
from modrwkv.data.chat import ChatTemplate
from modrwkv.generation.encoder_graphs import EncoderGraphs
from modrwkv.model import ModRWKV
from tests.stand_ins import FixedImageInputs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


class _ViT(FixedImageInputs, nn.Module):
    """timm's ViT with SigLIP's settings (no class token, MAP head not run) at width 64: (B, 3, 32, 32) ->
    (B, 16, 64) features, with the data side `ModRWKV.generate` calls (the image is a (3, 32, 32) tensor)."""

    modality, variable_length, out_dim, num_tokens = "image", False, 64, 16

    def __init__(self):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.trunk = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2,
                                       class_token=False, global_pool="map", num_classes=0)

    def forward(self, x, lengths=None):
        return self.trunk.forward_features(x.to(self.trunk.patch_embed.proj.weight.dtype))


class _Bytes:
    def encode(self, text):
        return [b + 1 for b in text.encode()]

    def decode(self, ids):
        return bytes(i - 1 for i in ids if 1 <= i <= 256).decode(errors="replace")


def _model(dtype) -> ModRWKV:
    torch.manual_seed(0)
    with torch.device("cuda"):
        bb = RWKV7(RWKV7Config.from_name("tiny", vocab_size=300))
        enc = _ViT()
        adapter = build_adapter("mlp", 64, bb.config.n_embd)
    with torch.no_grad():
        for p in list(bb.parameters()) + list(enc.parameters()) + list(adapter.parameters()):
            p.add_(torch.randn_like(p) * 0.1)  # BlinkDL's init zeroes block outputs: perturb every weight
        bb.emb.weight.normal_()
    return ModRWKV(enc.to(dtype), adapter.to(dtype), bb.to(dtype), ChatTemplate(_Bytes())).eval()


def _close(got, want, tol):
    err = ((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-6)).item()
    assert err < tol, err


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def no_tf32(monkeypatch):
    """fp32 convolutions without TF32, so an eager and a recorded run may only differ by fp32 rounding."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


@torch.no_grad()
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_graphed_encode_equals_eager_and_is_recorded_once_per_shape(no_tf32, dtype, tol):
    model = _model(dtype)
    graphs = EncoderGraphs(model.encode_modality, (model.encoder, model.adapter), torch.device("cuda"))
    x = _images(2)
    want = model.encode_modality(x.cuda())  # (2 * 16, C)
    got = graphs(x)  # from the CPU: a pinned, asynchronous copy into the graph's input
    assert got.shape == want.shape and got.dtype == want.dtype
    _close(got, want, tol)
    kept = got.clone()
    assert torch.equal(graphs(x.cuda()), got)  # from the device: the same replay
    other = graphs(_images(2, seed=2))
    _close(other, model.encode_modality(_images(2, seed=2).cuda()), tol)
    assert torch.equal(got, kept)  # a returned tensor is not overwritten by later calls
    assert graphs.captures == 1
    _close(graphs(_images(3)), model.encode_modality(_images(3).cuda()), tol)
    assert graphs.captures == 2  # another batch size: another graph


@torch.no_grad()
def test_weights_in_place_are_seen_new_tensors_rerecord_and_old_shapes_leave(no_tf32):
    model = _model(torch.float32)
    graphs = EncoderGraphs(model.encode_modality, (model.encoder, model.adapter), torch.device("cuda"), max_graphs=2)
    x = _images(1)
    graphs(x)
    model.adapter.fc1.weight.mul_(-0.5)  # in place: the graph reads it where it is
    model.encoder.trunk.blocks[0].attn.qkv.weight.mul_(2.0)
    _close(graphs(x), model.encode_modality(x.cuda()), 1e-5)
    assert graphs.captures == 1
    model.adapter.fc1.weight = nn.Parameter(model.adapter.fc1.weight * 3.0)  # a new tensor: recorded again
    _close(graphs(x), model.encode_modality(x.cuda()), 1e-5)
    assert graphs.captures == 2
    for n in (2, 3):  # at most two shapes kept: 1 leaves when 3 comes
        graphs(_images(n))
    assert graphs.captures == 4 and len(graphs.graphs) == 2
    graphs(_images(3))
    assert graphs.captures == 4
    _close(graphs(x), model.encode_modality(x.cuda()), 1e-5)
    assert graphs.captures == 5


@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_generate_through_encoder_graphs_equals_fast_false(no_tf32, dtype):
    """fp32: token for token the eager path (eager encoder, packed or plain forwards, eager decode loop), for a
    batch, one sample (prefill graphs too) and one new token (the time-to-first-token call). bf16: the modality
    embeddings and next-token logits within bf16 tolerance of the eager ones."""
    model = _model(dtype)
    images = _images(3, seed=5)
    samples = [{"modality": "image", "image": images[i]} for i in range(3)]
    prompts = ["<image>What is it?", "<image>Colour?", "<image>Describe the picture in detail."]
    if dtype == torch.float32:
        eager = model.generate_ids(samples, prompts, max_new_tokens=24, fast=False)
        assert model._encoder_cache is None  # fast=False: the eager encoder
        assert model.generate_ids(samples, prompts, max_new_tokens=24) == eager
        assert model._encoder_cache is not None and model._encoder_cache.captures == 1
        one = model.generate_ids(samples[:1], prompts[:1], max_new_tokens=24, fast=False)
        assert model.generate_ids(samples[:1], prompts[:1], max_new_tokens=24) == one
        assert model.generate_ids(samples[:1], prompts[:1], max_new_tokens=1) == [one[0][:1]]
        assert model._encoder_cache.captures == 2  # one image: its own graph, recorded once
        return
    mods_graph = model._modality_tokens(samples)
    mods_eager = model._modality_tokens(samples, fast=False)
    assert model._encoder_cache.captures == 1
    for g, e in zip(mods_graph, mods_eager):
        _close(g, e, 2e-2)
    ids = model.template.prompt_ids(prompts[0], "image", mods_eager[0].shape[0])
    logits_fast, _ = model._prefill([(ids, mods_graph[0])])  # prefill graphs
    logits_eager, _ = model._prefill([(ids, mods_eager[0])], fast=False)
    _close(logits_fast, logits_eager, 5e-2)
