"""Training losses: cross-entropy at the labelled positions, with RWKV's L2Wrap."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class L2Wrap(torch.autograd.Function):
    """Identity on the loss; in the backward, adds ``1e-4 / n * max logit`` at each row's argmax (BlinkDL's trainer).

    It keeps the logits from growing without bound (docs/RWKV7.md, "Training details"); the loss value is unchanged.
    """

    @staticmethod
    def forward(ctx, loss: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits)
        return loss

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (logits,) = ctx.saved_tensors  # (n, V)
        factor = 1e-4 / max(1, logits.shape[0])
        maxx, ids = torch.max(logits, dim=-1, keepdim=True)
        grad_logits = torch.zeros_like(logits).scatter_(-1, ids, maxx * factor)
        return grad_output, grad_logits


def next_token_targets(labels: torch.Tensor, cu_seqlens: torch.Tensor | None,
                       ignore_index: int = -100) -> torch.Tensor:
    """Targets for positions 0..T-2 of packed rows: position t predicts label t + 1, within its own sequence.

    labels (1, T) -> (1, T - 1); the last position of each packed sequence predicts nothing (``ignore_index``).
    """
    targets = labels[:, 1:].clone()
    if cu_seqlens is not None and cu_seqlens.numel() > 2:
        targets[:, cu_seqlens[1:-1].to(labels.device).long() - 1] = ignore_index
    return targets


def labelled_token_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                        ignore_index: int = -100, l2wrap: bool = True) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of ``head(hidden)`` against ``targets`` where a target is given.

    hidden (B, T, C) predicts targets (B, T); the head (65536-way) runs only at the n labelled positions, and the
    softmax is taken in fp32 at least. Returns (loss, n); n == 0 gives a zero loss that keeps the graph.
    """
    sel = targets != ignore_index
    n = int(sel.sum())
    if n == 0:
        return hidden.sum() * 0.0, 0
    logits = head(hidden[sel])  # (n, V)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    loss = F.cross_entropy(logits, targets[sel])
    if l2wrap and torch.is_grad_enabled():
        loss = L2Wrap.apply(loss, logits)
    return loss, n
