"""The LightningModule: one training step is the model's loss; validation adds generation-based metrics."""

from __future__ import annotations

import time

import lightning as L
import torch

from ..evaluation.metrics import build_metrics
from ..modalities import get_modality
from .optim import build_optimizer, warmup_cosine


class ModRWKVModule(L.LightningModule):
    """Trains any model whose ``forward(batch)`` returns ``{"loss", "num_tokens"}`` (ModRWKV, or a text LM).

    Args:
        model: the model (its trainable parts already chosen with ``freeze``).
        modality: a registered modality (``modrwkv.modalities``): "image" | "audio" | "series" (generation
            metrics) or "text" (loss and perplexity only).
        optim: lr, weight_decay, betas, eps, warmup_steps, min_lr_ratio.
        eval: generate (bool), max_batches (int, generation on this many validation batches), max_new_tokens.
        skip_counter: the data's SkipCounter, logged as data/skipped and per split (data/skipped_train, ...).
    """

    def __init__(self, model: torch.nn.Module, modality: str, optim: dict, eval: dict | None = None,
                 skip_counter=None):
        super().__init__()
        self.model = model
        self.spec = get_modality(modality)
        self.modality = self.spec.name
        self.optim_cfg = dict(optim)
        self.eval_cfg = {"generate": True, "max_batches": 4, "max_new_tokens": None, **dict(eval or {})}
        self.skip_counter = skip_counter
        generative = self.spec.generative
        self.val_metrics = build_metrics(self.modality).clone(prefix="val/") if generative else None
        self.test_metrics = build_metrics(self.modality).clone(prefix="test/") if generative else None
        self._tokens_seen = 0
        self._t0 = None

    # ---- training ------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if batch is None:  # every sample of this batch was corrupt (counted by the collate)
            if self.trainer.world_size > 1:  # the other ranks wait in the gradient all-reduce: join with zeros
                return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
            return None
        out = self.model(batch)
        n = int(batch["cu_seqlens"].numel() - 1) if batch.get("cu_seqlens") is not None else 1
        self._tokens_seen += int(batch["input_ids"].numel())
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=n)
        self.log("train/tokens_seen", float(self._tokens_seen), batch_size=n)
        if self._t0 is not None:
            self.log("train/tokens_per_s", self._tokens_seen / max(1e-9, time.perf_counter() - self._t0),
                     batch_size=n)
        self._log_skips(batch_size=n)
        return out["loss"]

    def _log_skips(self, **kwargs):
        """data/skipped (all), data/skipped_train, data/skipped_val, data/skipped_test, data/skip_fraction."""
        if self.skip_counter is not None:
            self.log_dict(self.skip_counter.metrics(), **kwargs)

    def on_train_start(self):
        self._t0 = time.perf_counter()

    # ---- evaluation ----------------------------------------------------------------------------------------
    def _eval_step(self, batch, batch_idx, split: str, metrics):
        packed, samples = batch
        if packed is None:
            return
        out = self.model(packed)
        self.log(f"{split}/loss", out["loss"], batch_size=len(samples), sync_dist=True)
        if metrics is None or not self.eval_cfg["generate"] or self._sharded():
            return
        limit = self.eval_cfg["max_batches"]
        if limit is not None and batch_idx >= limit:
            return
        keys = set(packed.get("keys") or [])
        kept = [s for s in samples if s.get("__key__") in keys] if keys else samples  # corrupt ones were dropped
        max_new = self.eval_cfg["max_new_tokens"] or self.spec.max_new_tokens
        preds = self.model.generate_batch(kept, max_new_tokens=max_new)
        extra = self.spec.score(metrics, kept, preds)
        for k, v in extra.items():
            self.log(f"{split}/{k}", v, reduce_fx="sum", batch_size=len(kept), sync_dist=True)
        if batch_idx == 0 and self.global_rank == 0:
            self._example = (kept[0].get("conversation"), preds[0])

    def _sharded(self) -> bool:
        """Parameters sharded over ranks (FSDP): generation steps through blocks outside FSDP's forward, which would
        see only this rank's shard, so the generation metrics are skipped (the loss is still evaluated)."""
        return type(self.trainer.strategy).__name__.startswith("FSDP")

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "test", self.test_metrics)

    def _log_metrics(self, metrics):
        if metrics is None:
            return
        updated = any(m.update_called for m in metrics.values())
        # compute() gathers the states of all ranks, so every rank must call it (or none): decide together
        if self.trainer.strategy.reduce_boolean_decision(updated, all=False):
            self.log_dict(metrics.compute(), prog_bar=True, sync_dist=True)  # equal on all ranks: a no-op mean
        metrics.reset()

    def on_validation_epoch_end(self):
        self._log_metrics(self.val_metrics)
        self._log_skips()
        self._log_wkv7_fallbacks()

    def _log_wkv7_fallbacks(self):
        """wkv7/fp16_fallbacks_{forward,backward}: how many WKV-7 kernel calls so far on this rank had an fp16
        product overflow and were recomputed with tf32 (kernels/triton_chunk.py); nothing before a CUDA launch."""
        from ..kernels.triton_chunk import overflow_fallbacks

        counts = overflow_fallbacks()
        if counts:
            self.log_dict({f"wkv7/fp16_fallbacks_{k}": float(v) for k, v in counts.items()}, rank_zero_only=True)

    def on_test_epoch_end(self):
        self._log_metrics(self.test_metrics)
        self._log_skips()

    # ---- optimisation --------------------------------------------------------------------------------------
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip by norm under FSDP too: Lightning's FSDP precision plugin refuses norm clipping (it needs the
        FSDP module, Lightning-AI/pytorch-lightning#19235), so under FSDP the root module's ``clip_grad_norm_``
        computes the norm over all ranks' shards; every other strategy takes Lightning's own path."""
        if gradient_clip_val and self._sharded() and gradient_clip_algorithm in (None, "norm"):
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val,
                            gradient_clip_algorithm=gradient_clip_algorithm)

    def configure_optimizers(self):
        cfg = self.optim_cfg
        opt = build_optimizer(self.model, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0),
                              betas=cfg.get("betas", (0.9, 0.99)), eps=cfg.get("eps", 1e-8))
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(cfg.get("warmup_steps", 0))
        min_ratio = float(cfg.get("min_lr_ratio", 0.0))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total, min_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
