"""Where a training step's GPU time goes: torch.profiler over a few steps, kernels grouped by what they do.

Used by train_throughput.py --profile. Categories (by kernel name): the WKV-7 Triton kernels, matrix products
(cuBLAS/CUTLASS/nvjet), Inductor's fused Triton kernels, flash attention, the optimizer, eager elementwise/reduction
kernels, copies, and the rest. Times are summed device time per step; their total can exceed the step time only
when kernels overlap (rare here: one stream).
"""

from __future__ import annotations

import re

import torch

CATEGORIES = [  # first match wins
    ("wkv7", re.compile(r"wkv7", re.I)),
    ("flash_attention", re.compile(r"flash|fmha|attention", re.I)),
    ("optimizer", re.compile(r"adam|multi_tensor|foreach", re.I)),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|sm90_xmma|cublas|ampere_|sm80_|splitk", re.I)),
    ("inductor_fused", re.compile(r"^triton_|triton_(poi|red|per|tem)", re.I)),
    ("norm", re.compile(r"layer_norm|group_norm|norm", re.I)),
    ("copy", re.compile(r"copy|memcpy|memset|cat|index|scatter|gather|fill", re.I)),
    ("elementwise_eager", re.compile(r"elementwise|vectorized|reduce|unrolled", re.I)),
]


def categorize(name: str) -> str:
    for cat, pattern in CATEGORIES:
        if pattern.search(name):
            return cat
    return "other"


def profile_steps(step, steps: int = 2, top: int = 25) -> dict:
    """Run ``step`` ``steps`` times under the profiler; returns per-step ms by category and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels = {}
    for evt in prof.key_averages():
        t = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0)
        if t <= 0 or evt.key.startswith("ProfilerStep"):
            continue
        k = kernels.setdefault(evt.key, [0.0, 0])
        k[0] += t / 1e3 / steps  # ms per step
        k[1] += evt.count // steps
    by_cat: dict[str, float] = {}
    for name, (ms, _) in kernels.items():
        by_cat[categorize(name)] = by_cat.get(categorize(name), 0.0) + ms
    top_kernels = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]
    return {"ms_per_step_by_category": dict(sorted(by_cat.items(), key=lambda kv: -kv[1])),
            "kernel_ms_per_step": sum(by_cat.values()),
            "top_kernels": [{"name": n[:160], "ms": ms, "calls": c, "category": categorize(n)}
                            for n, (ms, c) in top_kernels]}


def print_profile(result: dict, title: str) -> None:
    total = result["kernel_ms_per_step"]
    print(f"-- profile: {title}: {total:.1f} ms of kernels per step", flush=True)
    for cat, ms in result["ms_per_step_by_category"].items():
        print(f"   {cat:18s} {ms:8.1f} ms  {100 * ms / total:5.1f} %")
    for k in result["top_kernels"]:
        print(f"   {k['ms']:8.2f} ms {k['calls']:5d}x [{k['category']}] {k['name'][:110]}")
