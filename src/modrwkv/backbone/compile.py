"""torch.compile for the RWKV-7 blocks: Inductor fuses the many small ops of a block into a few kernels.

An eager RWKV-7 block is mostly elementwise passes over (T, C) activations: the token shift and six mixes, the four
LoRA activations, the key normalisation, GroupNorm + r.k bonus + gate, the channel-mix square-ReLU. Each is a read
and a write of the whole activation in HBM and a tensor kept for the backward. Compiled, they fuse into the
neighbouring kernels and the partitioner recomputes the cheap ones in the backward instead of saving them.

The WKV-7 recurrence stays outside the graphs (`layers.wkv7` is compiler-disabled): it is already one Triton kernel
per direction, and its varlen host code (chunk layout from ``cu_seqlens``) is data-dependent. Dynamo splits each
block's forward there into a compiled "before" and "after" graph.
"""

from __future__ import annotations

from torch import nn

# every block shares one code object: layer 0 (ln0, v_first is None), the other layers, grad on/off, packed or not,
# static then dynamic lengths each take a cache entry; the default limit (8) would silently fall back to eager
CACHE_SIZE_LIMIT = 64


def configure_inductor() -> None:
    """Process-wide Inductor settings the RWKV-7 blocks need.

    Mix-order reductions are switched off: in torch 2.10-2.13 they return gradients of the wrong shape for the
    (1, 1, C) mixing parameters (pytorch/pytorch#178080: "CompiledFunctionBackward returned an invalid gradient at
    index 5 - got [2048] but expected shape compatible with [1, 1, 2048]", at 16K tokens per step) or
    silently wrong ones beyond ~16K rows (pytorch/pytorch#193061). Those are exactly the reductions of a
    parameter-gradient over all tokens next to a per-token LayerNorm that every RWKV-7 block has.
    """
    import torch._dynamo
    import torch._inductor.config as inductor_config

    if hasattr(inductor_config.triton, "mix_order_reduction"):
        inductor_config.triton.mix_order_reduction = False
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, CACHE_SIZE_LIMIT)
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = max(
            torch._dynamo.config.accumulated_cache_size_limit, 8 * CACHE_SIZE_LIMIT)


def compile_blocks(blocks: nn.ModuleList, mode: str | None = None, backend: str = "inductor",
                   dynamic: bool | None = True) -> None:
    """Compile each block's forward in place (``nn.Module.compile``: parameter names and state dicts unchanged).

    Compilation happens lazily at the first call. ``dynamic=True`` (default) compiles for any length and number of
    packed sequences at once: training batches differ in both, and ``None`` would compile each graph twice (static,
    then dynamic at the first new length). ``Block.step`` (decoding) is not compiled.
    """
    configure_inductor()
    for block in blocks:
        block.compile(mode=mode, backend=backend, dynamic=dynamic)
