"""Activation memory: the bytes one block saves for its backward, per token, RWKV-7 against the Transformer baseline.

    python bench/activation_memory.py [--size 1.5b] [--tokens 64] [--compile] [--device cpu] [--out FILE]

Counted, not estimated: a forward of one block (layer 1 of RWKV-7: layer 0 has ln0 and no value residual; a
decoder block of the Transformer of the same width, `TransformerConfig.matched_to`) runs under
`modrwkv.kernels.testing.saved_activation_bytes`: every distinct storage autograd keeps (parameters excluded) is
summed: the block's input (the residual stream, which its first norm keeps) counts, RWKV-7's v_first (layer 0's
value, one tensor for all layers) does not. The result is in bytes per token per layer, and in GiB for a step of
``--step-tokens`` through all layers.

RWKV-7 runs in each setting of ``fused_mix`` and ``recompute_elementwise`` (backbone.module options) with the
Triton WKV-7 kernels the GPU trains with (on the CPU through Triton's interpreter, set here); ``--compile`` adds
the blocks compiled with Inductor (``dynamic=True``, as training compiles them), whose partitioner chooses what
to keep. What it counts is the saved-tensor set, which does not depend on the card; the peak memory of a GPU step
adds the weights, gradients, optimiser state and transient buffers (bench/train_throughput.py measures that).
"""

from __future__ import annotations

import argparse
import os
import sys


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1.5b", help="RWKV-7 size (the Transformer is matched to it)")
    ap.add_argument("--tokens", type=int, default=256,
                    help="tokens in the counted forward (the final WKV state adds C x 64 x 2 bytes per sequence)")
    ap.add_argument("--step-tokens", type=int, default=16384, help="tokens per training step for the GiB column")
    ap.add_argument("--compile", action="store_true", help="also count the blocks compiled with Inductor")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (aot_eager_decomp_partition: the same partitioner, no code generation)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="JSON path")
    return ap.parse_args(argv)


def rwkv_block_bytes(cfg, tokens: int, device, dtype, fused_mix: bool, recompute: bool, compile_backend=None) -> int:
    """Saved bytes of RWKV-7 layer 1 over one sequence of ``tokens``."""
    import torch

    from modrwkv.backbone.compile import configure_inductor
    from modrwkv.backbone.layers import Block

    torch.manual_seed(0)
    block = Block(cfg, 1).to(device, dtype)
    if compile_backend:
        configure_inductor()
        block.compile(backend=compile_backend, dynamic=True)
    x = torch.randn(1, tokens, cfg.n_embd, device=device, dtype=dtype, requires_grad=True)
    v_first = torch.randn(1, tokens, cfg.n_embd, device=device, dtype=dtype, requires_grad=True)
    from modrwkv.kernels.testing import saved_activation_bytes

    skip = [t.untyped_storage().data_ptr() for t in (*block.parameters(), v_first)]  # v_first: one for all layers
    return saved_activation_bytes(lambda: block(x, v_first, None, None, None, None, "triton", fused_mix, recompute),
                                  skip)


def transformer_block_bytes(cfg, tokens: int, device, dtype, compile_backend=None) -> int:
    """Saved bytes of one decoder block of the matched Transformer over one sequence of ``tokens``."""
    import torch
    from transformer_baseline import DecoderBlock, TransformerConfig, rope_tables

    tcfg = TransformerConfig.matched_to(cfg)
    torch.manual_seed(0)
    block = DecoderBlock(tcfg).to(device, dtype)
    if compile_backend:
        block.compile(backend=compile_backend, dynamic=True)
    cos, sin = rope_tables(tokens, tcfg.head_dim, tcfg.rope_theta, device)
    x = torch.randn(1, tokens, cfg.n_embd, device=device, dtype=dtype, requires_grad=True)
    from modrwkv.kernels.testing import saved_activation_bytes

    skip = [t.untyped_storage().data_ptr() for t in (*block.parameters(), cos, sin)]
    return saved_activation_bytes(lambda: block(x, cos, sin), skip)


def main(argv=None) -> list[dict]:
    args = parse(argv)
    if args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: the WKV-7 and token-mix kernels
    import common
    import torch

    from modrwkv.backbone.config import RWKV7Config

    cfg = RWKV7Config.from_name(args.size)
    dtype = torch.bfloat16
    rows = []

    def add(model, options, compiled, nbytes):
        per_token = nbytes / args.tokens
        rows.append({"model": model, "options": options, "compiled": compiled,
                     "bytes_per_token_layer": round(per_token, 1), "bytes_per_token_layer_per_C": round(per_token /
                     cfg.n_embd, 2), "step_gib": round(per_token * cfg.n_layer * args.step_tokens / 2**30, 2)})
        print(f"{model:11s} {options:34s} compiled={compiled!s:5s} {per_token / cfg.n_embd:6.2f} bytes/token/layer/C"
              f"  {rows[-1]['step_gib']:6.2f} GiB at {args.step_tokens} tokens x {cfg.n_layer} layers", flush=True)

    for backend in [None] + ([args.compile_backend] if args.compile else []):
        add("transformer", "", backend is not None,
            transformer_block_bytes(cfg, args.tokens, args.device, dtype, backend))
        for fused_mix in (False, True):
            for recompute in (False, True):
                nbytes = rwkv_block_bytes(cfg, args.tokens, args.device, dtype, fused_mix, recompute, backend)
                add("rwkv7", f"fused_mix={fused_mix} recompute={recompute}", backend is not None, nbytes)
    common.write_json(args.out or common.default_out("activation_memory.json"),
                      {"env": common.environment(), "args": vars(args), "rows": rows})
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
