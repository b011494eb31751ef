"""Divergence guard: a non-finite loss or gradient never reaches the weights, and a diverged run stops loudly.

A step whose gradients (after the all-reduce, so every rank agrees) hold a NaN or an infinity is skipped: its
gradients are dropped before the optimiser step, so the weights and the optimiser state stay as they were. Up to
``max_bad_steps`` such steps in a row are tolerated (a rare overflow); one more stops the run with
``DivergenceError`` naming the step. Checkpoints are checked too: a state with non-finite weights is never written,
so the last checkpoint on disk is always a finite one.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

log = logging.getLogger("modrwkv.guard")


class DivergenceError(RuntimeError):
    """The loss or the gradients stayed non-finite for more steps than ``guard.max_bad_steps`` allows."""


def _all_finite(tensors) -> bool:
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


class DivergenceGuard(L.Callback):
    """Skips steps with non-finite gradients; raises ``DivergenceError`` after ``max_bad_steps`` in a row.

    Args:
        max_bad_steps: non-finite steps tolerated in a row (each skipped, nothing updated); 0 stops at the first.
    """

    def __init__(self, max_bad_steps: int = 0):
        if max_bad_steps < 0:
            raise ValueError(f"guard.max_bad_steps must be >= 0, got {max_bad_steps}")
        self.max_bad_steps = int(max_bad_steps)
        self.bad_in_a_row = 0
        self.skipped_steps = 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        bad = not _all_finite([p.grad for p in params])
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)  # sharded gradients differ per rank
        if not bad:
            self.bad_in_a_row = 0
            return
        self.bad_in_a_row += 1
        self.skipped_steps += 1
        step = trainer.global_step
        if self.bad_in_a_row > self.max_bad_steps:
            raise DivergenceError(
                f"training diverged: non-finite loss or gradient at step {step} ({self.bad_in_a_row} such step(s) "
                f"in a row, guard.max_bad_steps={self.max_bad_steps}); the weights of the last checkpoint are "
                "finite: lower stage.lr or raise preset.warmup_steps, then resume= that checkpoint")
        log.warning("step %d: non-finite gradient, update skipped (%d in a row, guard.max_bad_steps=%d)",
                    step, self.bad_in_a_row, self.max_bad_steps)
        for p in params:  # the optimiser skips parameters without a gradient: nothing moves this step
            p.grad = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.skipped_steps:
            pl_module.log("train/skipped_nonfinite_steps", float(self.skipped_steps), rank_zero_only=True)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not _all_finite(v for v in checkpoint["state_dict"].values() if v.is_floating_point()):
            raise DivergenceError(f"step {trainer.global_step}: the weights are not finite; the checkpoint was not "
                                  "written (the last one on disk is kept)")

    def state_dict(self) -> dict:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
