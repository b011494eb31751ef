"""torch.compile (Inductor) of the RWKV-7 blocks on a GPU: values and gradients equal the eager model's.

At the 1.5B width and 16K packed tokens, where Inductor's mix-order reduction returned (C,) gradients for the
(1, 1, C) mixing parameters (pytorch/pytorch#178080) or silently wrong ones (#193061) before
`modrwkv.backbone.compile.configure_inductor` switched it off. Skipped without CUDA; run on the device machine:
PYTHONPATH=src python -m pytest -q -m gpu tests/gpu/test_compile_gpu.py
"""

from __future__ import annotations

import pytest
import torch

from modrwkv.backbone.config import RWKV7Config
from modrwkv.backbone.model import RWKV7

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def rel(x, ref):
    return ((x.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()


def _run(model, ids, cu, dy):
    model.zero_grad(set_to_none=True)
    hidden, _ = model.forward_hidden(model.embed(ids), cu_seqlens=cu)
    (hidden.float() * dy).sum().backward()
    return hidden.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("recompute", [False, True])  # backbone recompute_elementwise, in the compiled model only
@pytest.mark.parametrize("size,tokens,dtype,tol", [("1.5b", 16384, torch.bfloat16, 3e-2),
                                                   ("0.1b", 4100, torch.float32, 2e-3)])
def test_compiled_blocks_match_eager(size, tokens, dtype, tol, recompute):
    seed = int(torch.randint(0, 2**31 - 1, ()))
    torch.manual_seed(seed)
    cfg = RWKV7Config.from_name(size, n_layer=2, vocab_size=1000)  # the real width and LoRA ranks, two layers
    width = cfg.n_embd
    eager = RWKV7(cfg).to("cuda", dtype)
    compiled = RWKV7(cfg).to("cuda", dtype)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_blocks()
    compiled.recompute_elementwise = recompute
    # packed sequences of uneven lengths, none a multiple of the kernel's chunk
    cuts = sorted({0, tokens, *torch.randint(1, tokens, (6,)).tolist()})
    cu = torch.tensor(cuts, device="cuda", dtype=torch.int32)
    ids = torch.randint(0, 1000, (1, tokens), device="cuda")
    dy = torch.randn(1, tokens, width, device="cuda")
    h_e, g_e = _run(eager, ids, cu, dy)
    h_c, g_c = _run(compiled, ids, cu, dy)
    errors = {"hidden": rel(h_c, h_e)}
    for name, g in g_e.items():
        if g is None:
            assert g_c[name] is None, name
            continue
        assert g_c[name].shape == g.shape, f"{name}: {tuple(g_c[name].shape)} vs {tuple(g.shape)}"
        errors[name] = rel(g_c[name], g)
    worst = max(errors, key=errors.get)
    print(f"seed {seed} width {width} {dtype}: worst {worst} {errors[worst]:.2e}")
    assert errors[worst] <= tol, f"seed {seed}: {worst} rel {errors[worst]:.2e} > {tol}"
