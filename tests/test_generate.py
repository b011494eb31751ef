"""Generation: greedy decoding through the recurrent state equals repeated argmax of the full parallel forward;
answers from a cached prefix state equal answers from scratch; batched decoding, stopping, sampling."""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import pytest
import torch

from modrwkv.adapters import build_adapter
from modrwkv.backbone import RWKV7, RWKV7Config, RWKV7State, WorldTokenizer
from modrwkv.data.chat import TURN_END, ChatTemplate
from modrwkv.encoders import build_encoder
from modrwkv.generation import decode, select_next
from modrwkv.model import ModRWKV

TEMPLATE = ChatTemplate(WorldTokenizer())
N_NEW = 6


@lru_cache
def _backbone() -> RWKV7:
    # every weight perturbed: BlinkDL's init zeroes block outputs, which would make the context irrelevant
    torch.manual_seed(0)
    bb = RWKV7(RWKV7Config.from_name("tiny"))
    with torch.no_grad():
        for p in bb.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        bb.emb.weight.normal_()
    return bb


@lru_cache
def _model(encoder: str, adapter: str) -> ModRWKV:
    enc = build_encoder(encoder)
    bb = copy.deepcopy(_backbone())
    return ModRWKV(enc, build_adapter(adapter, enc.out_dim, bb.config.n_embd, scale=2), bb, TEMPLATE).double()


def _sample(modality: str, seed: int = 0, question: str = "What is it?") -> dict:
    rng = np.random.default_rng(seed)
    if modality == "image":
        from PIL import Image

        data = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    elif modality == "audio":
        data = (rng.standard_normal(5000 + 3000 * seed) * 0.1).astype(np.float32)
    else:
        data = rng.standard_normal(40 + 8 * seed).astype(np.float32)
    conv = [{"role": "user", "content": f"<{modality}>{question}"}, {"role": "assistant", "content": "x"}]
    return {"__key__": str(seed), "modality": modality, modality: data, "conversation": conv, "meta": {}}


def reference_greedy(model: ModRWKV, ids: list[int], mod: torch.Tensor, n_new: int) -> list[int]:
    """Re-run the full parallel forward over the whole sequence for every new token and take the argmax."""
    ids, out = list(ids), []
    for _ in range(n_new):
        emb = model.embed_inputs(torch.tensor([ids]), mod)  # (1, T, C)
        tok = int(model.backbone(inputs_embeds=emb)[0, -1].argmax())
        out.append(tok)
        if tok == TURN_END:
            break
        ids.append(tok)
    return out


@pytest.mark.parametrize("encoder,adapter", [("tiny-clip", "conv"), ("tiny-whisper", "audio_conv"),
                                             ("tiny-wavenet", "mlp")])
def test_greedy_generate_equals_repeated_parallel_argmax(encoder, adapter):
    model = _model(encoder, adapter)
    sample = _sample(model.encoder.modality)
    got = model.generate_ids([sample], max_new_tokens=N_NEW)[0]
    with torch.no_grad():
        mod = model._sample_tokens(sample)
        prompt = TEMPLATE.prompt_ids(sample["conversation"][:1], sample["modality"], mod.shape[0])
        ref = reference_greedy(model, prompt, mod, N_NEW)
    assert got == ref and len(got) == N_NEW
    assert model.generate(sample, max_new_tokens=N_NEW) == TEMPLATE.decode_answer(ref)


def test_decoding_never_rereads_the_prompt(monkeypatch):
    model = _model("tiny-clip", "conv")
    calls = []
    real = model.backbone.forward_hidden
    monkeypatch.setattr(model.backbone, "forward_hidden", lambda *a, **k: calls.append(1) or real(*a, **k))
    model.generate(_sample("image"), max_new_tokens=N_NEW)
    assert len(calls) == 1  # one parallel prefill; every new token is one recurrent step


def test_answers_from_a_cached_prefix_equal_answers_from_scratch():
    model = _model("tiny-clip", "conv")
    sample = _sample("image")
    prefix = model.encode_prefix(sample)
    questions = ["What is it?", "\nWhich colour is the top left?", "Is it round?"]
    cached = model.answer(prefix, questions, max_new_tokens=N_NEW)
    scratch = [model.generate(sample, f"<image>{q}", max_new_tokens=N_NEW) for q in questions]
    assert cached == scratch
    assert len(set(cached)) > 1  # the questions matter (so the comparison is not vacuous)
    # the cached state is untouched: asking again gives the same answer; generate() takes a prefix too
    assert model.answer(prefix, questions[1], max_new_tokens=N_NEW) == cached[1]
    assert model.generate(prefix, questions[2], max_new_tokens=N_NEW) == cached[2]


def test_cached_prefix_with_a_shared_prompt_equals_full_prefill():
    model = _model("tiny-whisper", "audio_conv")
    sample = _sample("audio", seed=1)
    shared = "Listen carefully.\n"
    prefix = model.encode_prefix(sample, prompt_prefix=shared)
    got = model.answer_ids(prefix, ["What word?", "Who speaks?"], max_new_tokens=N_NEW)
    with torch.no_grad():
        mod = model._sample_tokens(sample)
        for q, ids in zip(["What word?", "Who speaks?"], got):
            head, tail = TEMPLATE.cached_prompt_split(q, "audio", mod.shape[0], shared)
            assert prefix.num_tokens == len(head)
            assert ids == reference_greedy(model, head + tail, mod, N_NEW)


def test_batched_generation_equals_one_by_one():
    model = _model("tiny-wavenet", "mlp")
    samples = [_sample("series", seed=i, question=q) for i, q in enumerate(["Next?", "What comes next here?", "?"])]
    batched = model.generate_ids(samples, max_new_tokens=N_NEW)
    assert batched == [model.generate_ids([s], max_new_tokens=N_NEW)[0] for s in samples]
    with pytest.raises(ValueError, match="prompts"):
        model.generate_ids(samples, ["a"])


def test_generation_stops_at_turn_end():
    model = copy.deepcopy(_model("tiny-clip", "mlp"))
    with torch.no_grad():
        model.backbone.ln_out.weight.zero_()  # every hidden state becomes the all-ones bias ...
        model.backbone.ln_out.bias.fill_(1.0)
        model.backbone.head.weight[TURN_END] = 10.0  # ... on which token 24 wins by far
    ids = model.generate_ids([_sample("image")], max_new_tokens=N_NEW)[0]
    assert ids == [TURN_END] and model.generate(_sample("image"), max_new_tokens=N_NEW) == ""


class _CountingBackbone:
    """A stand-in backbone whose state counts steps per sequence and whose greedy token is 24 once a per-sequence
    budget (kept in the state) is used up: checks that finished sequences leave the state with the right rows."""

    def step(self, input_ids, state):
        count = state.att_shift + 1  # [1, N, 1]
        return self._logits(count, state.ffn_shift), RWKV7State(count, state.wkv, state.ffn_shift)

    @staticmethod
    def _logits(count, budget):
        n = count.shape[1]
        logits = torch.zeros(n, 100)
        done = (count[0, :, 0] >= budget[0, :, 0])
        logits[torch.arange(n), torch.where(done, TURN_END, 50 + count[0, :, 0].long())] = 1.0
        return logits


def test_decode_drops_finished_sequences_from_the_state():
    budgets = torch.tensor([3.0, 0.0, 5.0, 1.0])
    n = len(budgets)
    state = RWKV7State(torch.zeros(1, n, 1), torch.zeros(1, n, 1, 1, 1), budgets.view(1, n, 1))
    first = _CountingBackbone._logits(state.att_shift, state.ffn_shift)
    out = decode(_CountingBackbone(), first, state, max_new_tokens=10)
    assert out == [[50, 51, 52, TURN_END], [TURN_END], [50, 51, 52, 53, 54, TURN_END], [50, TURN_END]]
    assert decode(_CountingBackbone(), first, state, max_new_tokens=2) == [[50, 51], [TURN_END], [50, 51], [50, 24]]


def test_sampling_is_seeded_and_top_p_restricts_to_the_nucleus():
    model = _model("tiny-clip", "conv")
    sample = _sample("image")
    a = model.generate(sample, max_new_tokens=N_NEW, temperature=1.0, seed=3)
    assert a == model.generate(sample, max_new_tokens=N_NEW, temperature=1.0, seed=3)
    assert a != model.generate(sample, max_new_tokens=N_NEW, temperature=1.0, seed=4)
    greedy = model.generate(sample, max_new_tokens=N_NEW)
    assert model.generate(sample, max_new_tokens=N_NEW, temperature=1.0, top_p=1e-9, seed=5) == greedy
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([select_next(logits, 1.0, 0.7, gen) for _ in range(400)])
    assert set(draws.flatten().tolist()) == {0, 1}  # the smallest set reaching 0.7
    draws = torch.stack([select_next(logits, 1.0, 1.0, gen) for _ in range(400)])
    assert set(draws.flatten().tolist()) == {0, 1, 2, 3}
