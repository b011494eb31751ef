"""Text pretraining of the RWKV-7 backbone alone (``task=lm``): the checkpoints the backbone_init sweep starts from.

    python src/train.py task=lm backbone.scale=0.4b                  # writes ${paths.weights}/tiny-lm-base.pth
    python src/train.py task=lm backbone.scale=0.4b task.variant=g1  # base trained further -> tiny-lm-g1.pth

conf/task/lm.yaml makes ``training.tasks.text_lm`` the run's builder (``build_text_lm`` and data=text's
``text_data``); the model trains with the same LightningModule as the multimodal runs (modality "text": loss-only
validation). The checkpoint is written at the end of training by the
``SaveBackbone`` callback that conf/task/lm.yaml adds, in BlinkDL's .pth format, under the file name the preset
expects (``preset.checkpoints.<variant>``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.text_corpus import CorpusConfig, load_split, prepare_corpus
from ..losses import labelled_token_loss, next_token_targets
from ..weights import resolve_checkpoint
from .resolvers import lookup

log = logging.getLogger("modrwkv.train")


class TextLM(nn.Module):
    """The backbone as a language model: next-token cross-entropy on every token of packed rows."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, batch: dict) -> dict:
        """{"input_ids": (1, T), "cu_seqlens": (N+1,)} -> {"loss": mean over predicted tokens, "num_tokens": int}."""
        ids = batch["input_ids"]
        cu = batch["cu_seqlens"].to(ids.device)
        hidden, _ = self.backbone.forward_hidden(self.backbone.embed(ids), cu_seqlens=cu)  # (1, T, C)
        targets = next_token_targets(ids, cu)  # (1, T - 1): each position predicts the next token of its sequence
        loss, n = labelled_token_loss(self.backbone.head, hidden[:, :-1], targets)  # CE + L2Wrap, as BlinkDL
        return {"loss": loss, "num_tokens": n}


class TokenChunks(Dataset):
    """Consecutive, non-overlapping windows of ``seq_len`` tokens from one split's token array."""

    def __init__(self, tokens: np.ndarray, seq_len: int):
        if len(tokens) < seq_len:
            raise ValueError(f"a split of {len(tokens)} tokens is shorter than task.seq_len={seq_len}")
        self.tokens, self.seq_len = tokens, seq_len

    def __len__(self) -> int:
        return len(self.tokens) // self.seq_len

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.tokens[i * self.seq_len:(i + 1) * self.seq_len], dtype=np.int64))


def pack(chunks: list[torch.Tensor]) -> dict:
    """Chunks -> one packed row with cu_seqlens (the layout ModRWKV batches use)."""
    ids = torch.cat(chunks)[None]  # (1, T)
    lengths = torch.tensor([len(c) for c in chunks])
    cu = torch.zeros(len(chunks) + 1, dtype=torch.int32)
    cu[1:] = lengths.cumsum(0)
    return {"input_ids": ids, "labels": ids, "cu_seqlens": cu}


def pack_eval(chunks: list[torch.Tensor]) -> tuple[dict, list[dict]]:
    """Evaluation batches are (packed, samples) as for the multimodal data; text has no per-sample metrics."""
    return pack(chunks), [{"__key__": str(i)} for i in range(len(chunks))]


class EpochShuffle(torch.utils.data.Sampler[int]):
    """A permutation of ``range(n)`` seeded by ``(seed, epoch)`` (Lightning calls ``set_epoch``), optionally
    starting after the first ``skip`` indices: a resumed run continues the epoch exactly where it stopped."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.skip = n, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n - self.skip

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        skip, self.skip = self.skip, 0  # a resume applies to one epoch only
        return iter(order[skip:])


class TextDataModule(L.LightningDataModule):
    """The cached text corpus (built on first use under ``root``) as packed batches of ``batch_size`` windows.

    The training order is a per-epoch permutation; the checkpoint holds the epoch and the batches delivered in
    it, so ``resume=`` continues with the next batch of the same order."""

    def __init__(self, root: str, corpus: CorpusConfig, seq_len: int, batch_size: int, eval_batch_size: int,
                 seed: int = 0):
        super().__init__()
        self.root, self.corpus, self.seq_len = root, corpus, seq_len
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.folder: Path | None = None
        self._epoch, self._batches, self._resume_state = 0, 0, None

    def prepare_data(self):
        self.folder = prepare_corpus(self.root, self.corpus)

    def _loader(self, split: str, train: bool) -> DataLoader:
        if self.folder is None:
            self.prepare_data()
        data = TokenChunks(load_split(self.folder, split), self.seq_len)
        if not train:
            return DataLoader(data, batch_size=self.eval_batch_size, collate_fn=pack_eval)
        sampler = EpochShuffle(len(data), self.seed)
        state, self._resume_state = self._resume_state, None
        if state is not None and self.trainer is not None and state["epoch"] == self.trainer.current_epoch:
            sampler.skip = state["batches"] * self.batch_size
            self._epoch, self._batches = state["epoch"], state["batches"]
        return DataLoader(data, batch_size=self.batch_size, sampler=sampler, drop_last=True, collate_fn=pack)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer.training:
            if self.trainer.current_epoch != self._epoch:
                self._epoch, self._batches = self.trainer.current_epoch, 0
            self._batches += 1
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_state = dict(state_dict)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)


class SaveBackbone(L.Callback):
    """Writes the trained backbone as a BlinkDL .pth when training ends (atomically: no half-written file)."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0 or getattr(trainer, "fast_dev_run", False):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        pl_module.model.backbone.save_checkpoint(tmp, format="blinkdl")
        os.replace(tmp, self.path)
        log.info("backbone checkpoint written to %s", self.path)


def export_backbone(lightning_ckpt: str | Path, out: str | Path) -> Path:
    """The backbone of a task=lm Lightning checkpoint (e.g. an interrupted run's ``last.ckpt``) as a BlinkDL .pth."""
    from ..backbone import RWKV7
    from ..backbone.checkpoint import infer_config
    from ..safe_load import read_checkpoint

    state = read_checkpoint(lightning_ckpt, what="export_backbone")["state_dict"]
    prefix = "model.backbone."
    sd = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if not sd:
        raise ValueError(f"{lightning_ckpt} holds no {prefix}* weights (not a task=lm checkpoint)")
    model = RWKV7(infer_config(sd))
    model.load_state_dict(sd)
    out = Path(out)
    model.save_checkpoint(out, format="blinkdl")
    return out


def init_checkpoint(cfg: DictConfig) -> str | None:
    """Where the LM starts: ``task.init_from`` if set; for the g1 variant, the base checkpoint; else random init."""
    if cfg.task.get("init_from"):
        return str(cfg.task.init_from)
    if cfg.task.variant == "g1":
        return str(lookup(cfg.preset.checkpoints.base, cfg.backbone.scale))
    if cfg.task.variant != "base":
        raise ValueError(f"task.variant must be base or g1, got {cfg.task.variant!r}")
    return None


def build_text_lm(cfg: DictConfig) -> TextLM:
    """The backbone of ``cfg.backbone`` as a ``TextLM``, from ``init_checkpoint(cfg)``: a missing start file raises
    WeightFileMissing naming it, before any work (task=lm's model, ``training.tasks.text_lm``)."""
    ckpt = init_checkpoint(cfg)
    if ckpt:
        resolve_checkpoint(ckpt, cfg.paths.weights)  # a missing file: WeightFileMissing naming it, before any work
    backbone = instantiate(cfg.backbone.module, checkpoint=ckpt)
    if ckpt:
        log.info("text pretraining continues from %s", ckpt)
    backbone.requires_grad_(True)
    return TextLM(backbone)


def text_data(root: str, corpus: dict, seq_len: int, batch_size: int, eval_batch_size: int,
              seed: int = 0) -> TextDataModule:
    """The ``TextDataModule`` of conf/data/text.yaml (task=lm), its corpus options given as a mapping."""
    corpus = CorpusConfig(sources=tuple(corpus["sources"]), max_chars=int(corpus["max_chars"]),
                          val_fraction=float(corpus["val_fraction"]), test_fraction=float(corpus["test_fraction"]))
    return TextDataModule(root, corpus, seq_len=int(seq_len), batch_size=int(batch_size),
                          eval_batch_size=int(eval_batch_size), seed=int(seed))
