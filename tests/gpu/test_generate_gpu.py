"""The fast decoder on a real GPU (fused step + CUDA graphs + device sampling) against the eager loop, and the fused
step's Triton kernels against its torch step.

Skipped without CUDA. On the device machine: PYTHONPATH=src python -m pytest -q -m gpu tests/gpu/test_generate_gpu.py
(no open_clip/whisper/World tokenizer needed: a stand-in encoder and a byte tokenizer).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modrwkv.adapters import build_adapter
from modrwkv.backbone import RWKV7, RWKV7Config
from modrwkv.backbone.fused import FusedDecoder
from modrwkv.data.chat import ChatTemplate
from modrwkv.generation import FastDecoder, decode
from modrwkv.generation.fast import FastOptions, capture_graph
from modrwkv.model import ModRWKV
from tests.stand_ins import FixedImageInputs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _backbone(dtype, seed: int = 0, vocab: int = 65536) -> RWKV7:
    torch.manual_seed(seed)
    with torch.device("cuda"):
        bb = RWKV7(RWKV7Config.from_name("tiny", vocab_size=vocab))
    with torch.no_grad():
        for p in bb.parameters():  # BlinkDL's init zeroes block outputs: perturb every weight
            p.add_(torch.randn_like(p) * 0.1)
        bb.emb.weight.normal_()
    return bb.to(dtype).eval()


@torch.no_grad()
def _prefill(bb, n: int, t: int = 24, seed: int = 1):
    ids = torch.randint(0, bb.config.vocab_size, (n, t), generator=torch.Generator().manual_seed(seed)).cuda()
    logits, state = bb(ids, return_state=True)
    return logits[:, -1], state


def _stop_with_spread(outs):
    best, spread = None, -1
    for tok in {t for o in outs for t in o}:
        firsts = {o.index(tok) if tok in o else len(o) for o in outs}
        if len(firsts) > spread:
            best, spread = tok, len(firsts)
    return best


GEMV = [0, 4]  # generation.gemv_max_batch: the cuBLAS products, and the fused GEMV kernels up to batch 4


@pytest.mark.parametrize("gemv", GEMV)
@pytest.mark.parametrize("check_every", [1, 5])
def test_graph_greedy_equals_eager_fp32(check_every, gemv):
    bb = _backbone(torch.float32)
    logits, state = _prefill(bb, 7)
    free = decode(bb, logits, state.clone(), 40, stop_token=-1)
    stop = _stop_with_spread(free)
    want = decode(bb, logits, state.clone(), 40, stop_token=stop)
    assert len({len(o) for o in want}) >= 3  # sequences stop at different steps: rows dropped, buckets change
    dec = FastDecoder(bb, check_every=check_every, gemv_max_batch=gemv)
    assert dec.use_graphs
    assert dec.decode(logits, state, 40, stop_token=stop) == want
    captured = dec.captures
    assert dec.decode(logits, state, 40, stop_token=stop) == want
    assert dec.captures == captured  # every graph is captured once and replayed afterwards
    assert dec.decode(logits[:1], state.select([0]), 40, stop_token=-1) == free[:1]


@pytest.mark.parametrize("gemv", GEMV)
@pytest.mark.parametrize("batch", [1, 3])
def test_graph_greedy_equals_eager_bf16_for_64_tokens(batch, gemv):
    bb = _backbone(torch.bfloat16)
    logits, state = _prefill(bb, batch)
    want = decode(bb, logits, state.clone(), 64, stop_token=-1)
    got = FastDecoder(bb, gemv_max_batch=gemv).decode(logits, state, 64, stop_token=-1)
    first_diff = [next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), 64) for g, w in zip(got, want)]
    assert min(first_diff) >= 32, f"first differing token per sequence: {first_diff}"


def test_graph_sampling_is_seeded_and_draws_what_the_eager_sampler_draws():
    """Seeded sampling inside the graphs is reproducible and seed-dependent. From the same logits and generator
    the first token (sampled from the prefill's logits, identical on both paths) equals the eager sampler's; later
    tokens come from the fused step's logits, whose last-bit differences can move a draw over a CDF boundary of a
    near-uniform random-weight distribution (tests/test_generate_fast.py checks whole sequences in fp64)."""
    bb = _backbone(torch.float32)
    logits, state = _prefill(bb, 4)
    dec = FastDecoder(bb, check_every=4)
    for top_p in (1.0, 0.8):
        runs = []
        for seed in (3, 3, 4):
            gen = torch.Generator(device="cuda").manual_seed(seed)
            runs.append(dec.decode(logits, state, 24, 1.0, top_p, gen, stop_token=-1))
        gen = torch.Generator(device="cuda").manual_seed(3)
        eager = decode(bb, logits, state.clone(), 24, 1.0, top_p, gen, stop_token=-1)
        assert runs[0] == runs[1] and runs[0] != runs[2]
        assert [r[0] for r in runs[0]] == [e[0] for e in eager]


def test_graphs_follow_in_place_weight_updates():
    bb = _backbone(torch.float32)
    logits, state = _prefill(bb, 2)
    dec = FastDecoder(bb)
    first = dec.decode(logits, state, 16, stop_token=-1)
    captured = dec.captures
    with torch.no_grad():
        for blk in bb.blocks:
            blk.att.receptance.weight.mul_(-1.0)
            blk.ffn.key.weight.mul_(1.5)
    want = decode(bb, logits, state.clone(), 16, stop_token=-1)
    assert want != first
    assert dec.decode(logits, state, 16, stop_token=-1) == want and dec.captures == captured


class _PatchEncoder(FixedImageInputs, nn.Module):
    """A stand-in image encoder: 8x8 patches of a (3, 32, 32) tensor, linearly embedded (16 tokens)."""

    modality, variable_length, out_dim, num_tokens = "image", False, 48, 16

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(192, 48)

    def forward(self, x, lengths=None):  # (B, 3, 32, 32) -> (B, 16, 48)
        p = x.unfold(2, 8, 8).unfold(3, 8, 8).permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], 16, 192)
        return self.proj(p.to(self.proj.weight.dtype))


class _Bytes:
    def encode(self, text):
        return [b + 1 for b in text.encode()]

    def decode(self, ids):
        return bytes(i - 1 for i in ids if 1 <= i <= 256).decode(errors="replace")


@pytest.mark.parametrize("gemv", GEMV)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_generate_uses_the_fast_path_on_gpu_and_equals_eager(dtype, gemv):
    bb = _backbone(dtype, vocab=300)
    torch.manual_seed(1)
    enc = _PatchEncoder().cuda().to(dtype)
    model = ModRWKV(enc, build_adapter("mlp", 48, 128).cuda().to(dtype), bb, ChatTemplate(_Bytes()),
                    generation=FastOptions(gemv_max_batch=gemv)).eval()
    g = torch.Generator().manual_seed(2)
    samples = [{"modality": "image", "image": torch.randn(3, 32, 32, generator=g)} for _ in range(3)]
    prompts = ["<image>What is it?", "<image>Colour?", "<image>Describe the picture in detail."]
    eager = model.generate_ids(samples, prompts, max_new_tokens=40, fast=False)
    fast = model.generate_ids(samples, prompts, max_new_tokens=40)  # the default on a GPU
    assert model._fast_decoder is not None and model._fast_decoder.use_graphs
    n = 40 if dtype == torch.float32 else 32
    assert [o[:n] for o in fast] == [o[:n] for o in eager]
    prefix = model.encode_prefix(samples[0])
    qs = ["What is it?", "Is it round?"]
    got = model.answer_ids(prefix, qs, max_new_tokens=40)
    assert [o[:n] for o in got] == [o[:n] for o in model.answer_ids(prefix, qs, max_new_tokens=40, fast=False)]


def _rel(got, want) -> float:
    got, want = got.double(), want.double()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("batch", [1, 3, 6])  # the fused GEMV kernels (fma, dot), then cuBLAS products
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize("size", ["tiny", "1.5b"])
@torch.no_grad()
def test_triton_step_equals_torch_step_and_replays_in_a_cuda_graph(size, dtype, tol, batch):
    """`FusedDecoder`'s Triton kernels against its torch step (same products) over several tokens, at the tiny
    width and at the 1.5B width (C=2048, 32 heads, 1.5B LoRA ranks; 2 layers), then one step captured in a CUDA
    graph and replayed from a restored state: the graph's logits and state equal an eager call's. Batches of at
    most 4 take the fused GEMV kernels (kernels/triton_decode_gemv.py), larger ones the cuBLAS products."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        bb = RWKV7(RWKV7Config.from_name(size, n_layer=2, vocab_size=1000))
    with torch.no_grad():
        for p in bb.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        bb.emb.weight.normal_()
    bb = bb.to(dtype).eval()
    _, state = _prefill(bb, batch, t=8)
    tri, ref = FusedDecoder(bb, kernels="triton", gemv_max_batch=4), FusedDecoder(bb, kernels="torch")
    assert (tri.kernels, ref.kernels, tri.gemv_max_batch) == ("triton", "torch", 4)
    s_tri, s_ref = state.clone(), state.clone()
    g = torch.Generator().manual_seed(5)
    for _ in range(4):
        ids = torch.randint(0, 1000, (batch,), generator=g).cuda()
        got, want = tri.step_(ids, s_tri), ref.step_(ids, s_ref)
        errs = {name: _rel(getattr(s_tri, name), getattr(s_ref, name)) for name in ("att_shift", "wkv", "ffn_shift")}
        errs["logits"] = _rel(got, want)
        assert max(errs.values()) < tol, errs
    ids = torch.randint(0, 1000, (batch,), generator=g).cuda()
    static = state.clone()
    graph = capture_graph(lambda: tri.step_(ids, static))  # the warm-up calls advance `static`: restored below
    for dst, src in zip((static.att_shift, static.wkv, static.ffn_shift), (state.att_shift, state.wkv,
                                                                          state.ffn_shift)):
        dst.copy_(src)
    out = graph.replay()
    eager = state.clone()
    want = tri.step_(ids, eager)
    torch.cuda.synchronize()
    assert _rel(out, want) < tol / 10 and _rel(static.wkv, eager.wkv) < tol / 10
