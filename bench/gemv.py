"""Batch-1 matrix-vector products of the 1.5B decode step: our fused-kernel tiles against cuBLAS, same process.

    python bench/gemv.py [--out bench/results/gemv.json] [--quick]

First the four fused product kernels of one decode layer (kernels/triton_decode_gemv.py: ln1 + mixes + W_in,
W_out + residual, ln2 + mix + W_key + relu^2, W_value + residual) at batch 1 for a few tile settings (the module's
constants), each kernel's time and bandwidth and their sum over 24 layers; then the plain products below.

For each product of a 1.5B RWKV-7 layer (x (1, K) @ W^T, W (N, K) bf16) and the LM head: the median time of
`F.linear` (cuBLAS), of `torch.mm` against the (K, N) transposed copy the decode step used to stack, and of the
fused kernels' product (`proj_residual_`, plus a residual row) for every PROJ tile setting of the sweep; the
effective bandwidth (weight bytes over time) against the copy bandwidth measured in the same process. Timing as in
the decode step: the calls are replayed from a CUDA graph (`triton.testing.do_bench_cudagraph`, so no host launch
cost), each over enough distinct copies of W (>= 256 MB together) that none is still in the L2 cache when it is
read again. Outputs are checked against F.linear first.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools

import common
import torch
import torch.nn.functional as F
import triton

from modrwkv.kernels import triton_decode_gemv as kg

# (name, K in, N out) for C=2048, F=8192, LoRA ranks 64+96+96+256, vocab 65536
SHAPES = [("rkv+lora_down", 2048, 3 * 2048 + 512), ("out", 2048, 2048),
          ("key", 2048, 8192), ("value", 8192, 2048), ("head", 2048, 65536)]


def proj_configs(quick: bool) -> list[dict]:
    """PROJ tile settings of the plain-product sweep (batch 1: the register-accumulating variant)."""
    allc = [dict(PROJ_BLOCK_N=bn, PROJ_BLOCK_K=bk, PROJ_WARPS=nw, PROJ_STAGES=ns)
            for bn, bk, nw, ns in itertools.product((8, 16, 32), (256, 512, 1024, 2048), (4, 8), (1, 2))]
    return allc[::4] if quick else allc


@contextlib.contextmanager
def tile_settings(settings: dict):
    """The kernel module's tile constants set to ``settings`` inside the block, restored after."""
    saved = {k: getattr(kg, k) for k in settings}
    try:
        for k, v in settings.items():
            setattr(kg, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(kg, k, v)


# (MIX_BLOCK_N, MIX_BLOCK_K, MIX_WARPS, MIX_STAGES), (PROJ_BLOCK_N, PROJ_BLOCK_K, PROJ_WARPS, PROJ_STAGES);
# the first is the module's default
_TILE_SETS = [((32, 256, 4, 3), (16, 1024, 8, 2)), ((16, 256, 4, 3), (16, 512, 4, 3)),
              ((64, 256, 8, 3), (32, 512, 8, 2)), ((32, 512, 8, 2), (16, 2048, 8, 1)),
              ((32, 128, 4, 4), (16, 256, 4, 4)), ((16, 512, 8, 2), (32, 1024, 8, 2))]
TILES = [dict(zip(("MIX_BLOCK_N", "MIX_BLOCK_K", "MIX_WARPS", "MIX_STAGES"), mix),
              **dict(zip(("PROJ_BLOCK_N", "PROJ_BLOCK_K", "PROJ_WARPS", "PROJ_STAGES"), proj)))
         for mix, proj in _TILE_SETS]


def graph_us(op, n: int) -> float:
    """Microseconds per call of op(i) for i in range(n), replayed from a CUDA graph."""
    ms = triton.testing.do_bench_cudagraph(lambda: [op(i) for i in range(n)], rep=10, return_mode="median")
    return ms * 1e3 / n


def fused_rows(copy_bw: float, dev) -> list[dict]:
    """The fused decode-layer product kernels at the 1.5B shapes, batch 1, for each tile setting of TILES."""
    C, F_, D, ranks = 2048, 8192, 256, (64, 96, 96, 256)
    bf = dict(device=dev, dtype=torch.bfloat16)
    copies = 8  # 8 layers' weights (> 50 MB of L2 for every kernel)
    w_in = [torch.randn(3 * C + 4 * D, C, **bf) * 0.02 for _ in range(copies)]
    w_out = [torch.randn(C, C, **bf) * 0.02 for _ in range(copies)]
    w_key = [torch.randn(F_, C, **bf) * 0.02 for _ in range(copies)]
    w_value = [torch.randn(C, F_, **bf) * 0.02 for _ in range(copies)]
    x, shift, xa, kin = (torch.randn(1, C, **bf), torch.randn(1, C, **bf), torch.randn(1, C, **bf),
                         torch.randn(1, F_, **bf))
    ln_w, ln_b, mix6, mix1 = torch.ones(C, **bf), torch.zeros(C, **bf), torch.rand(6, C, **bf), torch.rand(1, C, **bf)
    rows = []
    att_rows = 3 * C + sum(ranks)
    for tiles in TILES:
        with tile_settings(tiles):
            lora = [(3 * C + i * D, r, 2 + i, kg.ACT_NONE) for i, r in enumerate(ranks)]
            att = kg.mix_table([(i * C, C, i, kg.ACT_NONE) for i in range(3)] + lora, kg.MIX_BLOCK_N, dev)
            ffn = kg.mix_table([(0, F_, 0, kg.ACT_RELU_SQUARE)], kg.MIX_BLOCK_N, dev)
            kernels = {
                "ln1+mix+W_in": (lambda i, t=att: kg.mix_proj_(x, shift, ln_w, ln_b, mix6, w_in[i], t), att_rows * C),
                "W_out+residual": (lambda i: kg.proj_residual_(xa, w_out[i], x), C * C),
                "ln2+mix+W_key+relu2": (lambda i, t=ffn: kg.mix_proj_(x, shift, ln_w, ln_b, mix1, w_key[i], t), F_ * C),
                "W_value+residual": (lambda i: kg.proj_residual_(kin, w_value[i], x, copy=(xa, shift)), C * F_),
            }
            row = dict(tiles, layer_us=0.0, layer_floor_us=0.0)
            for name, (op, n_el) in kernels.items():
                us = graph_us(op, copies)
                row[name] = {"us": us, "GBps": n_el * 2 / us / 1e3}
                row["layer_us"] += us
                row["layer_floor_us"] += n_el * 2 / copy_bw * 1e6
        row["x_floor"] = row["layer_us"] / row["layer_floor_us"]
        rows.append(row)
        print(f"fused layer products {tiles}: {row['layer_us']:.1f} us per layer ({row['x_floor']:.2f}x floor "
              f"{row['layer_floor_us']:.1f}); " + ", ".join(f"{k} {row[k]['us']:.1f} us {row[k]['GBps']:.0f} GB/s"
                                                         for k in kernels), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=common.default_out("gemv"))
    ap.add_argument("--quick", action="store_true", help="every fourth configuration")
    args = ap.parse_args()
    dev = torch.device("cuda")
    ceilings = common.measure_ceilings(dev)
    copy_bw = ceilings["copy_GBps"] * 1e9
    torch.manual_seed(0)
    fused = fused_rows(copy_bw, dev)
    common.free_memory()
    rows = []
    for name, K, N in SHAPES:
        nbytes = N * K * 2
        copies = max(2, -(-2**28 // nbytes))
        ws = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
        wts = [w.t().contiguous() for w in ws]  # (K, N)
        w = ws[0]
        x = torch.randn(1, K, device=dev, dtype=torch.bfloat16)
        ref = F.linear(x, w).float()
        floor_us = nbytes / copy_bw * 1e6
        resid = torch.zeros(1, N, device=dev, dtype=torch.bfloat16)
        base = {"cublas_linear": graph_us(lambda i, x=x, ws=ws: F.linear(x, ws[i]), copies),
                "cublas_mm_KN": graph_us(lambda i, x=x, wts=wts: torch.mm(x, wts[i]), copies)}
        best = None
        for cfg in proj_configs(args.quick):
            with tile_settings(cfg):
                try:
                    y = kg.proj_residual_(x, w, resid)
                except Exception as e:  # a tile that does not compile (resources) is reported, not fatal
                    print(f"{name} {cfg}: {type(e).__name__}: {str(e)[:120]}")
                    continue
                err = ((y.float() - ref).abs().max() / ref.abs().max()).item()
                if err > 2e-2:
                    print(f"{name} {cfg}: WRONG (max rel err {err:.3g})")
                    continue
                us = graph_us(lambda i, x=x, ws=ws, r=resid: kg.proj_residual_(x, ws[i], r), copies)
            row = dict(shape=name, K=K, N=N, us=us, GBps=nbytes / us / 1e3, x_floor=us / floor_us, **cfg)
            rows.append(row)
            if best is None or us < best["us"]:
                best = row
        print(f"{name:14s} K={K:5d} N={N:6d} floor {floor_us:7.1f} us | cuBLAS linear {base['cublas_linear']:7.1f} "
              f"mm(K,N) {base['cublas_mm_KN']:7.1f} | best triton {best['us']:7.1f} us "
              f"({best['GBps']:.0f} GB/s, {best['x_floor']:.2f}x floor) {best}", flush=True)
        rows.append(dict(shape=name, K=K, N=N, floor_us=floor_us, **base, best=best))
        del ws, wts
        common.free_memory()
    common.write_json(args.out, {"bench": "gemv", "env": common.environment(), "ceilings": ceilings, "rows": rows,
                                 "fused": fused})


if __name__ == "__main__":
    main()
