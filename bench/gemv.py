"""Batch-1 matrix-vector products of the 1.5B decode step: our Triton GEMV tiles against cuBLAS, same process.

    python bench/gemv.py [--out bench/results/gemv.json] [--quick]

For each product of a 1.5B RWKV-7 layer (x (1, K) @ W^T, W (N, K) bf16) and the LM head: the median time of
`F.linear` (cuBLAS), of `torch.mm` against the (K, N) transposed copy the decode step used to stack, and of
`modrwkv.kernels.triton_gemv.gemv` for every tile configuration of the sweep; the effective bandwidth (weight bytes
over time) against the copy bandwidth measured in the same process. Timing as in the decode step: the calls are
replayed from a CUDA graph (`triton.testing.do_bench_cudagraph`, so no host launch cost), each over enough distinct
copies of W (>= 256 MB together) that none is still in the L2 cache when it is read again. Outputs are checked
against F.linear first.
"""

from __future__ import annotations

import argparse
import itertools

import common
import torch
import torch.nn.functional as F
import triton

from modrwkv.kernels.triton_gemv import gemv

# (name, K in, N out) for C=2048, F=8192, LoRA ranks 64+96+96+256, vocab 65536
SHAPES = [("rkv+lora_down", 2048, 3 * 2048 + 512), ("out", 2048, 2048),
          ("key", 2048, 8192), ("value", 8192, 2048), ("head", 2048, 65536)]


def configs(quick: bool):
    dot = [dict(variant="dot", block_n=bn, block_k=bk, num_warps=4, num_stages=ns)
           for bn, bk, ns in itertools.product((16, 32, 64), (256, 512), (3, 5))]
    dot += [dict(variant="dot", block_n=bn, block_k=256, num_warps=nw, num_stages=4)
            for bn, nw in itertools.product((16, 32), (2, 8))]
    fma = [dict(variant="fma", block_n=bn, block_k=bk, num_warps=nw, num_stages=1)
           for bn, bk, nw in itertools.product((4, 8, 16), (512, 1024), (4, 8))]
    allc = dot + fma
    return allc[::4] if quick else allc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=common.default_out("gemv"))
    ap.add_argument("--quick", action="store_true", help="every fourth configuration")
    args = ap.parse_args()
    dev = torch.device("cuda")
    ceilings = common.measure_ceilings(dev)
    copy_bw = ceilings["copy_GBps"] * 1e9
    torch.manual_seed(0)
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

        def per_call_us(op, mats):
            ms = triton.testing.do_bench_cudagraph(lambda: [op(m) for m in mats], rep=10, return_mode="median")
            return ms * 1e3 / len(mats)

        base = {"cublas_linear": per_call_us(lambda m, x=x: F.linear(x, m), ws),
                "cublas_mm_KN": per_call_us(lambda m, x=x: torch.mm(x, m), wts)}
        best = None
        for cfg in configs(args.quick):
            try:
                y = gemv(x, w, **cfg)
            except Exception as e:  # a tile that does not compile (resources) is reported, not fatal
                print(f"{name} {cfg}: {type(e).__name__}: {str(e)[:120]}")
                continue
            err = ((y.float() - ref).abs().max() / ref.abs().max()).item()
            if err > 2e-2:
                print(f"{name} {cfg}: WRONG (max rel err {err:.3g})")
                continue
            us = per_call_us(lambda m, x=x, cfg=cfg: gemv(x, m, **cfg), ws)
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
    common.write_json(args.out, {"bench": "gemv", "env": common.environment(), "ceilings": ceilings, "rows": rows})


if __name__ == "__main__":
    main()
