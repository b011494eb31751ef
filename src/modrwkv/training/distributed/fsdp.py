"""The FSDP strategy of conf/trainer/fsdp.yaml: shards each RWKV-7 block (a config cannot name classes directly)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def fsdp_strategy(wrap: Sequence[str] = ("modrwkv.backbone.layers.Block",), checkpoint: Sequence[str] = (),
                  **kwargs):
    """Lightning's ``FSDPStrategy`` sharding each module of the classes named in ``wrap`` (dotted paths).

    ``checkpoint``: classes whose forward is recomputed in the backward (activation checkpointing by FSDP; leave
    empty when the backbone's own ``grad_checkpointing`` is on). Other ``kwargs`` go to ``FSDPStrategy`` (and from
    there to ``FullyShardedDataParallel``, e.g. ``use_orig_params``, needed when frozen and trainable parameters
    share a wrapped unit, as the frozen encoder and the trained adapter do in the root unit).
    """
    from lightning.pytorch.strategies import FSDPStrategy

    wrap_classes = {_import(p) for p in wrap}
    ckpt_classes = {_import(p) for p in checkpoint} or None
    return FSDPStrategy(auto_wrap_policy=wrap_classes, activation_checkpointing_policy=ckpt_classes, **kwargs)
