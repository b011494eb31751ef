"""torch.compile of the RWKV-7 blocks: the compiled model computes what the eager one does, values and gradients.

On the CPU the graphs are traced and partitioned by AOTAutograd but run eagerly ("aot_eager": Inductor's C++ build
takes minutes on two cores); Inductor itself is checked on the GPU (tests/gpu/test_compile_gpu.py), at the sizes
where its mix-order reduction used to break the gradients of the (1, 1, C) parameters.
"""

from __future__ import annotations

import torch

from modrwkv.backbone.config import RWKV7Config
from modrwkv.backbone.factory import build_backbone
from modrwkv.backbone.model import RWKV7


def _loss_and_grads(model, ids, cu):
    model.zero_grad(set_to_none=True)
    logits = model(ids, cu_seqlens=cu)
    logits.float().pow(2).mean().backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters()}


def test_compiled_blocks_match_eager_values_and_gradients():
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, ())))
    cfg = RWKV7Config.from_name("tiny", vocab_size=300)
    eager = RWKV7(cfg).double()
    compiled = RWKV7(cfg).double()
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_blocks(backend="aot_eager")
    assert list(compiled.state_dict()) == list(eager.state_dict())  # in-place compile: names unchanged
    # two packed batches with different lengths and sequence counts (the second one recompiles with dynamic shapes)
    for T, cuts in ((70, [0, 23, 70]), (45, [0, 5, 17, 45])):
        ids, cu = torch.randint(0, 300, (1, T)), torch.tensor(cuts)
        out_e, grads_e = _loss_and_grads(eager, ids, cu)
        out_c, grads_c = _loss_and_grads(compiled, ids, cu)
        torch.testing.assert_close(out_c, out_e, rtol=1e-10, atol=1e-12)
        for name, g in grads_e.items():
            if g is None:  # layer 0's value-residual LoRA: unused in both
                assert grads_c[name] is None, name
                continue
            assert grads_c[name].shape == g.shape, name
            torch.testing.assert_close(grads_c[name], g, rtol=1e-9, atol=1e-12, msg=name)


def test_compile_option_of_the_factory_compiles_in_place():
    model = build_backbone("tiny", compile=True)
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in model.blocks)
    assert build_backbone("tiny", device="meta", compile=True).blocks[0]._compiled_call_impl is None
