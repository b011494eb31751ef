"""Time-to-first-token host work on the CPU: when the encoder takes its CUDA graphs (the graphs themselves:
tests/gpu/test_encoder_graphs_gpu.py), the weight watch that drops recorded graphs, the host-side placeholder
splice, and the one-token shortcut of the fast path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modrwkv.data.chat import PLACEHOLDER_ID
from modrwkv.generation import FastDecoder, encoder_graphs, make_generator, prefill_graphs
from modrwkv.generation.encoder_graphs import EncoderGraphs
from modrwkv.generation.fast import FastOptions
from modrwkv.generation.prefill_graphs import PrefillGraphs
from modrwkv.generation.weight_watch import WeightWatch
from modrwkv.model import ModRWKV, placeholder_runs

from .graph_fakes import use_fake_graphs
from .test_generate import _model, _sample

CUDA = torch.device("cuda")  # only compared against: nothing here touches a GPU


@pytest.fixture
def eval_model():
    """The shared tiny models of tests/test_generate.py in eval mode, their mode and options restored after."""
    used = []

    def get(encoder: str):
        model = _model(encoder, "mlp")
        used.append((model, model.training, model.generation))
        return model.eval()

    yield get
    for model, training, generation in used:
        model.train(training)
        model.generation = generation


def test_encoder_graphs_only_on_the_fast_gpu_path_without_grad_in_eval(eval_model):
    model = eval_model("tiny-clip")
    with torch.no_grad():
        assert model._use_encoder_graphs(None, CUDA)
        assert not model._use_encoder_graphs(None, torch.device("cpu"))
        assert not model._use_encoder_graphs(False, CUDA)
        model.generation = FastOptions(encoder_graphs=False)
        assert not model._use_encoder_graphs(None, CUDA)
        model.generation = FastOptions(fast=False)
        assert not model._use_encoder_graphs(None, CUDA) and model._use_encoder_graphs(True, CUDA)
        model.generation = FastOptions()
        model.adapter.train()
        assert not model._use_encoder_graphs(None, CUDA)  # dropout in training mode would be recorded once
        model.adapter.eval()
    assert not model._use_encoder_graphs(None, CUDA)  # gradients: never through a graph
    with pytest.raises(ValueError, match="generation.encoder_graphs"):
        FastOptions(encoder_graphs="yes")


class _Recorder:
    """Stands in for `EncoderGraphs`: records the inputs and answers with the eager encode."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, x):
        self.calls.append(tuple(x.shape))
        return self.model.encode_modality(x)


@pytest.mark.parametrize("encoder,graphed", [("tiny-clip", True), ("tiny-wavenet", False)])
def test_fixed_shape_inputs_go_to_the_graphs_variable_length_ones_stay_eager(monkeypatch, eval_model, encoder,
                                                                             graphed):
    model = eval_model(encoder)
    rec = _Recorder(model)
    monkeypatch.setattr(ModRWKV, "_use_encoder_graphs", lambda self, fast, device: True)  # as on a GPU
    monkeypatch.setattr(ModRWKV, "_encoder_graphs", lambda self, device: rec)
    samples = [_sample(model.encoder.modality, seed=i) for i in range(2)]
    with torch.no_grad():
        got = model._modality_tokens(samples)
    assert bool(rec.calls) == graphed
    if graphed:
        assert rec.calls == [(2, 3, model.encoder.image_size, model.encoder.image_size)]
    monkeypatch.undo()
    with torch.no_grad():
        want = model._modality_tokens(samples)
    assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))


@torch.no_grad()
def test_one_graph_per_shape_and_dtype_least_recently_used_leave_new_weights_drop_all(monkeypatch):
    """The cache's logic on the CPU with re-run stand-ins for the graphs (tests/graph_fakes.py)."""
    use_fake_graphs(monkeypatch, encoder_graphs)
    net = _net()
    seen = []

    def encode(x):  # (N, 4) -> (N, 4); records which static buffer each "replay" reads
        seen.append(x.data_ptr())
        return net(x.to(net[0].weight.dtype))

    graphs = EncoderGraphs(encode, (net,), CUDA, max_graphs=2)
    graphs.device = torch.device("cpu")  # the buffers on the CPU: nothing here touches a GPU
    x1, x2, x3 = (torch.randn(n, 4) for n in (1, 2, 3))
    for x in (x1, x1, x2, x1.double()):
        assert torch.equal(graphs(x), encode(x))
    assert graphs.captures == 3  # (1, 4) fp32 once, (2, 4), (1, 4) fp64
    assert list(graphs.graphs) == [graphs.key(x2), graphs.key(x1.double())]  # (1, 4) fp32 left first
    graphs(x2)  # now the most recently used
    graphs(x3)
    assert graphs.captures == 4 and list(graphs.graphs) == [graphs.key(x2), graphs.key(x3)]
    graphs(x1)
    assert graphs.captures == 5
    net[0].weight.mul_(3.0)  # in place: the same graphs, reading the new values
    assert torch.equal(graphs(x1), encode(x1)) and graphs.captures == 5
    net[0].weight = nn.Parameter(net[0].weight.detach().clone())  # a new tensor: every graph dropped
    seen.clear()
    assert torch.equal(graphs(x1), encode(x1))
    assert graphs.captures == 6 and len(graphs.graphs) == 1
    static = graphs.graphs[graphs.key(x1)][0]
    assert seen[0] == static.data_ptr()  # the recorded call reads the static input buffer


def test_encoder_graphs_refuse_a_cpu_encoder():
    with pytest.raises(ValueError, match="CUDA device"):
        EncoderGraphs(lambda x: x, (nn.Linear(2, 2),), torch.device("cpu"))


def _net():
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    net.register_buffer("scale", torch.ones(4))
    return net


def test_weight_watch_sees_new_tensors_but_not_in_place_updates():
    net, other = _net(), _net()
    watch = WeightWatch(net, other)
    assert watch.changed() and not watch.changed()
    with torch.no_grad():
        net[0].weight.mul_(2.0)  # in place: recorded graphs read it where it is
        other.scale.add_(1.0)
    assert not watch.changed()
    changes = [
        lambda: setattr(net[0], "weight", nn.Parameter(net[0].weight.detach().clone())),  # a new Parameter
        lambda: setattr(net[1].weight, "data", net[1].weight.detach().clone()),  # same Parameter, new storage
        lambda: setattr(other, "scale", torch.ones(4)),  # a new buffer
        lambda: net.__setitem__(1, nn.LayerNorm(4)),  # a new submodule
        lambda: net[0].register_parameter("extra", nn.Parameter(torch.zeros(1))),  # a parameter added
        lambda: other.double(),  # every tensor converted
    ]
    for change in changes:
        change()
        assert watch.changed(), change
        assert not watch.changed()


@pytest.mark.parametrize("ids,want", [
    ([1, 2, 3], []),
    ([PLACEHOLDER_ID] * 3, [(0, 3)]),
    ([5, PLACEHOLDER_ID, PLACEHOLDER_ID, 6, PLACEHOLDER_ID], [(1, 3), (4, 5)]),
    ([], []),
])
def test_placeholder_runs(ids, want):
    assert placeholder_runs(ids) == want


def test_host_splice_equals_embed_inputs():
    model = _model("tiny-clip", "mlp")
    C = model.backbone.config.n_embd
    ids = [3, PLACEHOLDER_ID, PLACEHOLDER_ID, 7, 8, PLACEHOLDER_ID, PLACEHOLDER_ID, PLACEHOLDER_ID, 9]
    mod = torch.randn(5, C, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        got = model._embed_prompt(ids, mod, torch.device("cpu"))
        want = model.embed_inputs(torch.tensor([ids]), mod)
        assert torch.equal(got, want)
        assert torch.equal(model._embed_prompt([3, 4], None, torch.device("cpu")),
                           model.embed_inputs(torch.tensor([[3, 4]]), None))
        with pytest.raises(ValueError, match="5 placeholder tokens but 4 modality embeddings"):
            model._embed_prompt(ids, mod[:4], torch.device("cpu"))


@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (1.0, 1.0), (0.9, 0.7)])
def test_one_new_token_equals_the_fast_decoders_first(temperature, top_p):
    model = _model("tiny-wavenet", "mlp")
    bb = model.backbone
    ids = torch.randint(0, bb.config.vocab_size, (3, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits, state = bb(ids, return_state=True)
    logits = logits[:, -1] * 0.05  # flat enough that sampling depends on the uniforms
    runs = {}
    for seed in (11, 12):
        got = model._decode(logits, state, 1, temperature, top_p, seed, True)
        want = FastDecoder(bb).decode(logits, state, 1, temperature, top_p, make_generator(seed, logits.device))
        assert got == want and all(len(o) == 1 for o in got)
        assert got == model._decode(logits, state, 1, temperature, top_p, seed, False)  # the eager loop's too
        runs[seed] = got
    if temperature > 0:
        assert runs[11] != runs[12]  # the shortcut does draw from the seed


def test_generation_caches_follow_inference_mode(monkeypatch):
    """Buffers made under torch.inference_mode (Lightning's validation loop generates there) are inference tensors,
    which cannot be updated in place outside it: the decoder and both graph caches rebuild when the mode changes."""
    use_fake_graphs(monkeypatch, encoder_graphs, prefill_graphs)
    model = _model("tiny-wavenet", "mlp")
    bb = model.backbone
    ids = torch.randint(0, bb.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits, state = bb(ids, return_state=True)
        logits, emb = logits[:, -1], bb.embed(ids[:1])
    dec, pre = FastDecoder(bb), PrefillGraphs(bb)
    enc = EncoderGraphs(lambda x: x * 2.0, (nn.Linear(2, 2),), CUDA)
    enc.device = torch.device("cpu")
    outs = []
    for mode in (torch.inference_mode, torch.no_grad, torch.inference_mode):
        with mode():
            outs.append((dec.decode(logits, state, 4, stop_token=-1), pre(emb)[0], enc(torch.ones(3, 2))))
    for got in outs[1:]:
        assert got[0] == outs[0][0] and torch.equal(got[1], outs[0][1]) and torch.equal(got[2], outs[0][2])
    assert pre.captures == 3 and enc.captures == 3  # recorded again at each change of mode
