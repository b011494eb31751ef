"""The fast decoder on the CPU (fused step, static buffers, buckets, stop checks every k tokens; no CUDA graphs
here, tests/gpu/test_generate_gpu.py covers those): token for token the eager loop's output."""

from __future__ import annotations

import copy

import pytest
import torch

from modrwkv.backbone import RWKV7, RWKV7Config
from modrwkv.generation import FastDecoder, bucket_size, decode
from modrwkv.generation.fast import FastOptions

from .test_generate import N_NEW, _model, _sample


def _backbone(seed: int = 0) -> RWKV7:
    torch.manual_seed(seed)
    cfg = RWKV7Config(n_layer=2, n_embd=128, head_size=64, vocab_size=97, dim_w_lora=16, dim_a_lora=24,
                      dim_v_lora=8, dim_g_lora=32)
    bb = RWKV7(cfg).double()
    with torch.no_grad():
        for p in bb.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return bb


def _prefill(bb: RWKV7, n: int, t: int = 5, seed: int = 1):
    ids = torch.randint(0, bb.config.vocab_size, (n, t), generator=torch.Generator().manual_seed(seed))
    logits, state = bb(ids, return_state=True)
    return logits[:, -1], state


def _stop_token_with_spread(outs: list[list[int]]) -> int:
    """A token that sequences first emit at different steps (or never): as the stop token, sequences finish at
    different times, so the decoder drops rows and changes buckets."""
    best, spread = None, -1
    for tok in {t for o in outs for t in o}:
        firsts = {o.index(tok) if tok in o else len(o) for o in outs}
        if len(firsts) > spread:
            best, spread = tok, len(firsts)
    assert spread >= 3
    return best


def test_bucket_sizes():
    assert [bucket_size(n) for n in (1, 2, 3, 4, 5, 8, 9, 64, 65)] == [1, 2, 4, 4, 8, 8, 16, 64, 128]


@pytest.mark.parametrize("check_every", [1, 3])
def test_fast_greedy_equals_eager_with_sequences_finishing_at_different_steps(check_every):
    bb = _backbone()
    logits, state = _prefill(bb, 7)
    free = decode(bb, logits, state.clone(), 14, stop_token=-1)
    stop = _stop_token_with_spread(free)
    want = decode(bb, logits, state.clone(), 14, stop_token=stop)
    assert len({len(o) for o in want}) >= 3
    dec = FastDecoder(bb, check_every=check_every)
    before = state.clone()
    assert dec.decode(logits, state, 14, stop_token=stop) == want
    assert all(torch.equal(a, b) for a, b in zip((state.att_shift, state.wkv), (before.att_shift, before.wkv)))
    # reused for another batch size and the first again: same answers
    assert dec.decode(logits[:3], state.select([0, 1, 2]), 14, stop_token=stop) == want[:3]
    assert dec.decode(logits, state, 14, stop_token=stop) == want
    assert dec.decode(logits, state, 1, stop_token=stop) == [o[:1] for o in want]
    assert dec.decode(logits, state, 0) == [[] for _ in want]


@pytest.mark.parametrize("top_p", [1.0, 0.6])
def test_fast_sampling_equals_eager_sampling_for_the_same_seed(top_p):
    bb = _backbone()
    logits, state = _prefill(bb, 3)
    runs = []
    for fast in (False, True):
        gen = torch.Generator().manual_seed(7)
        if fast:
            runs.append(FastDecoder(bb, check_every=4).decode(logits, state, 10, 1.0, top_p, gen, stop_token=-1))
        else:
            runs.append(decode(bb, logits, state.clone(), 10, 1.0, top_p, gen, stop_token=-1))
    assert runs[0] == runs[1]
    assert runs[0] != decode(bb, logits, state.clone(), 10, stop_token=-1)  # sampling, not greedy


def test_fast_decoder_follows_in_place_weight_updates_and_new_weights():
    bb = _backbone()
    logits, state = _prefill(bb, 2)
    dec = FastDecoder(bb)
    first = dec.decode(logits, state, 8, stop_token=-1)
    with torch.no_grad():  # what an optimiser step does: the same tensors, new values
        for blk in bb.blocks:
            blk.att.key.weight.mul_(-1.5)
            blk.att.w1.add_(0.5)
    want = decode(bb, logits, state.clone(), 8, stop_token=-1)
    assert want != first
    assert dec.decode(logits, state, 8, stop_token=-1) == want
    bb.float()  # new tensors (another dtype): the decoder rebuilds itself
    lf, sf = logits.float(), state.to(dtype=torch.float32)
    assert dec.decode(lf, sf, 8, stop_token=-1) == decode(bb, lf, sf.clone(), 8, stop_token=-1)


def test_model_generate_fast_equals_eager():
    model = _model("tiny-wavenet", "mlp")
    samples = [_sample(model.encoder.modality, seed=i, question=q) for i, q in enumerate(["What?", "Next one?"])]
    eager = model.generate_batch(samples, max_new_tokens=N_NEW, fast=False)
    assert model.generate_batch(samples, max_new_tokens=N_NEW, fast=True) == eager
    assert model.generate(samples[0], max_new_tokens=N_NEW, fast=True) == eager[0]
    prefix = model.encode_prefix(samples[0])
    qs = ["What is it?", "Is it round?"]
    assert model.answer(prefix, qs, max_new_tokens=N_NEW, fast=True) == model.answer(prefix, qs, N_NEW, fast=False)
    # the decoder cache is never copied with the model
    assert model._fast_decoder is not None and copy.deepcopy(model)._fast_decoder is None


def test_generation_options_switch_the_decoder():
    model = copy.deepcopy(_model("tiny-wavenet", "mlp"))
    sample = _sample("series")
    model.generation = FastOptions(fast=True, check_every=2)
    fast = model.generate(sample, max_new_tokens=N_NEW)
    assert model._fast_decoder is not None and model._fast_decoder.check_every == 2
    model.clear_generation_cache()
    model.generation = FastOptions(fast=False)
    assert model.generate(sample, max_new_tokens=N_NEW) == fast and model._fast_decoder is None
    with pytest.raises(ValueError, match="check_every"):
        FastOptions(check_every=0)
    with pytest.raises(ValueError, match="generation.fast"):
        FastOptions(fast="yes")


def test_config_generation_key_reaches_the_model():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from modrwkv.training.build import build_model
    from modrwkv.training.resolvers import register_resolvers

    register_resolvers()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(str(conf), version_base=None):
        cfg = compose("train", overrides=["generation.fast=false", "generation.check_every=4"])
    with torch.device("meta"):
        model = build_model(cfg, device="meta")
    assert model.generation == FastOptions(fast=False, check_every=4, compile=False, prefill_chunk=16384)
    with initialize_config_dir(str(conf), version_base=None):
        cfg = compose("train", overrides=["generation.check_every=0"])
    with pytest.raises(ValueError, match="generation.check_every must be an integer >= 1"):
        build_model(cfg, device="meta")


def test_prefill_in_pieces_equals_one_packed_forward():
    """Prompts read in rows of at most prefill_chunk tokens (a long one piecewise, carrying the state) give the
    same logits, states and answers as one packed forward."""
    model = copy.deepcopy(_model("tiny-wavenet", "mlp"))
    samples = [_sample("series", seed=i, question=q) for i, q in enumerate(["Next?", "What comes next here?", "?"])]
    whole = model.generate_ids(samples, max_new_tokens=N_NEW)
    with torch.no_grad():
        mods = model._modality_tokens(samples)
        pieces = [(model.template.prompt_ids(model._prompt(s, None), "series", m.shape[0]), m)
                  for s, m in zip(samples, mods)]
        ref_logits, ref_state = model._prefill(pieces)
        model.generation = FastOptions(prefill_chunk=11)  # shorter than every prompt: each one is read piecewise
        logits, state = model._prefill(pieces)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(state.wkv, ref_state.wkv)
    torch.testing.assert_close(state.att_shift, ref_state.att_shift)
    assert model.generate_ids(samples, max_new_tokens=N_NEW) == whole
    model.generation = FastOptions(prefill_chunk=max(len(p) for p, _ in pieces) + 2)  # one prompt per row
    assert model.generate_ids(samples, max_new_tokens=N_NEW) == whole
    with pytest.raises(ValueError, match="prefill_chunk"):
        FastOptions(prefill_chunk=0)
