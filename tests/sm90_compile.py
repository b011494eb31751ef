"""Compile every variant of the decode-step Triton kernels for the H100 (sm_90) without a GPU; exit 1 on any error.

    env -u TRITON_INTERPRET python tests/sm90_compile.py   # tests/test_decode_kernels_compile.py runs it

Triton's CPU interpreter runs the kernels' arithmetic but skips parts of the compiler's checks (for example that all
return statements of a jit function agree in type, also in branches a constexpr rules out), so a kernel can pass
every interpreter test and still fail to compile on the GPU. This compiles the real code path (TRITON_INTERPRET
unset) to PTX and through the ptxas Triton ships, for each constexpr combination the library launches, with the
modules' tile settings.
"""

from __future__ import annotations

import importlib
import os
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import ASTSource

INTS = ("M", "N", "K", "C", "D", "stride_out", "stride_h", "plane", "numel",
        "d_v", "d_w", "d_a", "d_g")
FLOATS = ("eps", "gn_eps", "norm_eps")


def compile_sm90(fn, constexprs: dict, dtype: str = "bf16", pointers: dict | None = None, num_warps: int = 4,
                 num_stages: int = 3) -> None:
    """triton.compile of ``fn`` for sm_90 with the given constexprs; pointer arguments are ``*dtype`` unless named
    in ``pointers``."""
    pointers = pointers or {}
    signature = {}
    for i, name in enumerate(fn.arg_names):
        if fn.params[i].is_constexpr:
            signature[name] = "constexpr"
        elif name in INTS:
            signature[name] = "i32"
        elif name in FLOATS:
            signature[name] = "fp32"
        else:
            signature[name] = pointers.get(name, f"*{dtype}")
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names) if signature[n].startswith("*")}
    triton.compile(ASTSource(fn, signature, constexprs=constexprs, attrs=attrs), target=GPUTarget("cuda", 90, 32),
                   options={"num_warps": num_warps, "num_stages": num_stages})


def variants():
    """(name, thunk) for each kernel variant the decode step launches (bf16 and fp32 weights)."""
    kg, kl = (importlib.import_module(f"modrwkv.kernels.{m}") for m in ("triton_decode_gemv", "triton_decode_layer"))
    for dtype in ("bf16", "fp32"):
        ieee = dtype == "fp32"
        for bm in (1, kg.MAX_ROWS):
            yield f"mix_proj {dtype} BLOCK_M={bm}", lambda d=dtype, b=bm, i=ieee: compile_sm90(
                kg._mix_proj_kernel, dict(BLOCK_M=b, BLOCK_N=kg.MIX_BLOCK_N, BLOCK_K=kg.MIX_BLOCK_K, IEEE=i), d,
                {"table": "*i32"}, kg.MIX_WARPS, kg.MIX_STAGES)
            for copy in (False, True):
                block_k = kg.PROJ_BLOCK_K if dtype == "bf16" else kg.PROJ_BLOCK_K // 2
                constexprs = dict(BLOCK_M=bm, BLOCK_N=kg.PROJ_BLOCK_N, BLOCK_K=block_k, IEEE=ieee, HAS_COPY=copy)
                yield f"proj_residual {dtype} BLOCK_M={bm} copy={copy}", lambda d=dtype, c=constexprs: compile_sm90(
                    kg._proj_residual_kernel, c, d, {}, kg.PROJ_WARPS, kg.PROJ_STAGES)
        for first in (True, False):
            yield f"lora_wkv {dtype} first={first}", lambda d=dtype, f=first: compile_sm90(
                kg._lora_wkv_kernel, dict(H=32, K=64, BLOCK_D=64, FIRST=f, DECAY_SCALE=-0.6065306597126334), d,
                {"state": "*fp32"})
            yield f"wkv {dtype} first={first}", lambda d=dtype, f=first: compile_sm90(
                kl._wkv_kernel, dict(H=32, K=64, FIRST=f, DECAY_SCALE=-0.6065306597126334), d, {"state": "*fp32"})
        yield f"mix {dtype}", lambda d=dtype: compile_sm90(
            kl._mix_kernel, dict(J=6, HAS_LN0=False, HAS_DX=True, BLOCK=2048), d, {}, 8)


def main() -> int:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":  # triton and the kernel modules read it on import
        raise SystemExit("sm90_compile: run it with TRITON_INTERPRET unset (it compiles the GPU code path)")
    failed = []
    for name, thunk in variants():
        try:
            thunk()
            print(f"ok      {name}", flush=True)
        except Exception as e:  # every variant is tried; the errors are listed
            failed.append(name)
            print(f"FAILED  {name}: {type(e).__name__}: {str(e)[-600:]}", flush=True)
    print(f"{len(failed)} failed" if failed else "all compiled")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
