"""Registers and spills of the WKV-7 gradient kernel compiled for the H100 (sm_90a) on a machine without a GPU.

    python bench/ptxas_check.py [--maxnreg 168] [--gate]

Triton compiles the kernel for sm_90 to PTX and the ptxas that Triton ships reports registers and spill bytes, which
is how the gradient kernel's phase order was chosen before a device run (bench/NOTES_wkv7.md). The local Triton may
be newer than the device's: compare variants with each other, not with the device's counts.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import ASTSource

POINTER_TYPES = {"states": "*bf16", "dstates": "*bf16", "ubuf": "*fp16", "dxbuf": "*fp16", "uexp": "*i8",
                 "dxexp": "*i8", "flag": "*i32", "gmax": "*fp32"}
NOT_USED_DENSE = ("cu_seqlens", "state_offsets", "chunk_index")  # None for dense (not varlen) inputs


def _kernels():
    """The kernel module, its @triton.jit functions made for the real compiler: the interpreter switch is read when
    the module is imported, so it is cleared first."""
    os.environ.pop("TRITON_INTERPRET", None)
    from modrwkv.kernels import triton_chunk

    return triton_chunk


def compile_grad_kernel(maxnreg: int | None, gate: bool, warps: int = 4) -> dict:
    """ptxas -v of _wkv7_bwd_grad_kernel (H=32, K=V=64, BT=16, bf16 inputs; fp16 products, or tf32 for the gate)."""
    fn = _kernels()._wkv7_bwd_grad_kernel
    constexprs = dict(H=32, K=64, V=64, BT=16, IS_VARLEN=False, INV_PREC="ieee", DOT="tf32" if gate else "fp16",
                      DOTS="tf32" if gate else "bf16",
                      GSCALE=not gate, CHECK=not gate, GATE=gate, SCALED_UX=gate)
    constexprs.update(dict.fromkeys(NOT_USED_DENSE))
    signature = {}
    for i, name in enumerate(fn.arg_names):
        if fn.params[i].is_constexpr or name in NOT_USED_DENSE:
            signature[name] = "constexpr"
        elif name in ("T", "n_chunks"):
            signature[name] = "i32"
        else:
            signature[name] = POINTER_TYPES.get(name, "*bf16")
    # pointers are 16-byte aligned, as the JIT assumes for torch tensors (else the loads come out scalar)
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names) if signature[n].startswith("*")}
    options = {"num_warps": warps, **({"maxnreg": maxnreg} if maxnreg else {})}
    kernel = triton.compile(ASTSource(fn, signature, constexprs=constexprs, attrs=attrs),
                            target=GPUTarget("cuda", 90, 32), options=options)
    ptx = kernel.asm["ptx"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.ptx"
        path.write_text(ptx)
        ptxas = Path(triton.__file__).parent / "backends/nvidia/bin/ptxas"
        report = subprocess.run([str(ptxas), "-v", "--gpu-name", "sm_90a", str(path), "-o", os.devnull],
                                capture_output=True, text=True, check=True).stderr
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    return {"registers": int(re.search(r"Used (\d+) registers", report).group(1)),
            "spill_store_bytes": int(spills.group(1)), "spill_load_bytes": int(spills.group(2)),
            "bar_sync": ptx.count("bar.sync")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--maxnreg", type=int, default=_kernels().CONFIG["MAXNREG_GRAD"], help="register cap (0: none)")
    p.add_argument("--gate", action="store_true", help="the gated tf32 fallback instead of the fp16 kernel")
    args = p.parse_args()
    print(f"maxnreg={args.maxnreg or None} gate={args.gate}: {compile_grad_kernel(args.maxnreg or None, args.gate)}")


if __name__ == "__main__":
    main()
