"""The fused token shift + mixes (kernels/token_mix*.py) against PyTorch, on RWKV-7's time-mix front end.

    PYTHONPATH=src python bench/token_mix.py [--size 1.5b] [--tokens 16384] [--out r.json]
    TRITON_INTERPRET=1 PYTHONPATH=src python bench/token_mix.py --smoke     # CPU, tiny: checks the script runs

The front end of one TimeMix layer: token shift of x (1, T, C) packed in sequences of 2048 tokens, the six mixes
and the products that read them (r, k, v: C x C; the w, a, g, v LoRA down-products), bf16. Variants, each checked
against eager (relative error of the outputs and of dx) and timed forward + backward (median ms):

    eager     token_shift + lerps + matmuls, PyTorch ops
    compiled  the same, torch.compile (Inductor)
    fused     token_mix_matmul: Triton mixes, products, mixes recomputed in the backward

with the bytes autograd keeps (distinct storages, weights left out) and the peak memory of the step. Also the mix
kernels alone (token_mix forward, backward) against their HBM floor (bytes moved / measured copy bandwidth).
"""

from __future__ import annotations

import argparse

import common
import torch

from modrwkv.backbone.layers import token_shift
from modrwkv.kernels.testing import saved_activation_bytes
from modrwkv.kernels.token_mix_matmul import token_mix_matmul
from modrwkv.kernels.triton_token_mix import token_mix_backward, token_mix_forward

SOURCES = [0, 2, 3, 1, 4, 5, 3]  # r, k, v, w1, a1, g1, v1 read mixes r, k, v, w, a, g, v


def eager(x, cu, mix, weights):
    shifted, _ = token_shift(x, None, cu)
    xx = shifted - x
    mixed = [x + xx * m for m in mix]
    return [mixed[s] @ w for s, w in zip(SOURCES, weights)]


def fused(x, cu, mix, weights):
    return token_mix_matmul(x, None, cu, mix, weights, SOURCES)[0]


def rel_err(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1.5b")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help="tiny width and length, no compiled variant")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/token_mix.json)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = common.rwkv_config("tiny" if args.smoke else args.size)
    T, C = (300, cfg.n_embd) if args.smoke else (args.tokens, cfg.n_embd)
    dtype = torch.bfloat16
    torch.manual_seed(0)
    cu = torch.arange(0, T + 1, min(2048, T), device=device, dtype=torch.int32).clamp_max(T).unique()
    x = torch.randn(1, T, C, device=device, dtype=dtype, requires_grad=True)
    mix = torch.rand(6, C, device=device, dtype=dtype, requires_grad=True)
    dims = [C, C, C, cfg.dim_w_lora, cfg.dim_a_lora, cfg.dim_g_lora, cfg.dim_v_lora]
    weights = [(torch.randn(C, d, device=device, dtype=dtype) / C**0.5).requires_grad_() for d in dims]
    grads = [torch.randn(1, T, d, device=device, dtype=dtype) for d in dims]
    skip = {w.untyped_storage().data_ptr() for w in (*weights, mix)}
    variants = {"eager": eager, "fused": fused}
    if not args.smoke:
        variants["compiled"] = torch.compile(eager, dynamic=False)
    env = common.environment()
    ceilings = common.measure_ceilings(device)
    rows, ref = [], None
    for name, fn in variants.items():
        def step(fn=fn):
            outs = fn(x, cu, mix, weights)
            return torch.autograd.grad(outs, (x, mix, *weights), grads)

        got = step()
        if ref is None:
            ref = got
        row = {"variant": name, "dx_rel": rel_err(got[0], ref[0]) if name != "eager" else 0.0,
               "dw_rel": max(rel_err(a, b) for a, b in zip(got[2:], ref[2:])) if name != "eager" else 0.0,
               "saved_MiB": saved_activation_bytes(lambda fn=fn: fn(x, cu, mix, weights), skip) / 2**20}
        common.reset_peak(device)
        row.update(common.time_fn(step, device, warmup=2, iters=args.iters), peak_gib=common.peak_gib(device))
        rows.append(row)
        print(row, flush=True)
    # the mix kernels alone: forward reads x, writes 6 mixes; backward reads x and 6 gradients, writes dx
    xd, md = x.detach(), mix.detach()
    dout = torch.randn(6, 1, T, C, device=device, dtype=dtype)
    nbytes = {"mix_forward": 7 * x.numel() * 2, "mix_backward": 8 * x.numel() * 2}
    fns = {"mix_forward": lambda: token_mix_forward(xd, None, cu, md, dtype),
           "mix_backward": lambda: token_mix_backward(dout, xd, None, cu, md)}
    for name, fn in fns.items():
        t = common.time_fn(fn, device, warmup=2, iters=args.iters)
        floor = nbytes[name] / (ceilings["copy_GBps"] * 1e6) if ceilings.get("copy_GBps") else None
        rows.append({"variant": name, **t, "floor_ms": floor})
        print(rows[-1], flush=True)
    result = {"bench": "token_mix", "env": env, "ceilings": ceilings, "args": vars(args), "T": T, "C": C,
              "rows": rows}
    common.write_json(args.out or common.default_out("token_mix.json"), result)
    common.print_table(rows, ["variant", "median_ms", "floor_ms", "saved_MiB", "peak_gib", "dx_rel", "dw_rel"],
                       f"time-mix front end, bf16, T={T}, C={C}, {env.get('gpu') or 'cpu'}")
    return result


if __name__ == "__main__":
    main()
