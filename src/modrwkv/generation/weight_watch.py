"""A cheap per-call check that modules still hold the tensors a CUDA graph was recorded over.

A recorded graph reads parameters and buffers at fixed addresses, so it must be dropped when a tensor is replaced
(``.to()``, assigning a new `nn.Parameter`, swapping a submodule, ``param.data = ...``); in-place updates (an
optimiser step, ``load_state_dict``) need nothing. Rather than walk the module tree through ``module.parameters()``
on every call (a generator per submodule, a memo set, a new tuple of every address), `WeightWatch` keeps, from its
last snapshot, each submodule's parameter / buffer / child dicts and the tensors in them, and checks those (dict
lookups, identity, addresses) in two flat loops; only a change takes a new snapshot.

Entering or leaving ``torch.inference_mode`` counts as a change too: buffers made inside it are inference tensors,
which cannot be updated in place outside it (generating in a validation loop, then after it), so whatever a cache
built over the old snapshot must be built again.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightWatch:
    """``changed()`` is True on the first call and whenever a parameter or buffer of ``modules`` is no longer the
    tensor (object, address, dtype) of the previous snapshot, the module tree itself changed, or
    ``torch.inference_mode`` was entered or left since."""

    def __init__(self, *modules: nn.Module):
        self.modules = modules
        self._tensors: list[tuple] = []  # (owning dict, name, tensor, address, dtype)
        self._tree: list[tuple] = []  # (module, #params, #buffers, children dict, children tuple)
        self._valid = False
        self._inference = False  # torch.inference_mode at the last snapshot

    def _snapshot(self) -> None:
        seen, tensors, tree = set(), [], []
        for root in self.modules:
            for m in root.modules():
                if id(m) in seen:
                    continue
                seen.add(id(m))
                tree.append((m, len(m._parameters), len(m._buffers), m._modules, tuple(m._modules.values())))
                for store in (m._parameters, m._buffers):
                    for name, t in store.items():
                        if t is not None:
                            tensors.append((store, name, t, t.data_ptr(), t.dtype))
        self._tensors, self._tree, self._valid = tensors, tree, True
        self._inference = torch.is_inference_mode_enabled()

    def _same(self) -> bool:
        if torch.is_inference_mode_enabled() != self._inference:
            return False
        for m, n_params, n_buffers, children, kids in self._tree:
            if (len(m._parameters) != n_params or len(m._buffers) != n_buffers or m._modules is not children
                    or tuple(children.values()) != kids):
                return False
        for store, name, t, address, dtype in self._tensors:
            if store.get(name) is not t or t.data_ptr() != address or t.dtype != dtype:
                return False
        return True

    def versions(self) -> tuple[int, ...]:
        """The in-place version counters of the snapshot's tensors (they move with every in-place update)."""
        return tuple(t._version for _, _, t, _, _ in self._tensors)

    def changed(self) -> bool:
        """Whether the tensors or the inference mode changed since the last call (then a new snapshot is taken)."""
        if self._valid and self._same():
            return False
        self._snapshot()
        return True
