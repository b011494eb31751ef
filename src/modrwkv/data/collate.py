"""Packing collate: a list of samples -> one packed row (cu_seqlens, no padding) for ModRWKV.forward.

Per sample: encoder.preprocess(raw) -> model input; encoder.feature_length(raw) features -> adapter.output_length(.)
placeholder tokens; the chat template tokenises the conversation around them. Samples whose preprocessing fails
(corrupt image / audio / series, malformed conversation) are skipped and counted, never fatal.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

import torch

from .chat import ChatTemplate
from .skips import CorruptSample

log = logging.getLogger("modrwkv.data")


class BatchTooLongError(ValueError):
    """The packed batch (or one sample) exceeds `max_tokens`."""


class PackedCollate:
    """Turn samples (docs/ARCHITECTURE.md schema) into the packed batch dict.

    Args:
        template: the ChatTemplate.
        encoder: the modality encoder (its preprocess / feature_length / collate and `modality`).
        token_counter: the adapter (its `output_length`), or any callable features -> tokens; None: unchanged.
        max_tokens: most tokens in the packed row (None: no limit); over it is a BatchTooLongError.
        skip_counter: optional `modrwkv.data.skips.SkipCounter`, called with each corrupt sample's exception
            (shared across DataLoader workers; raises when there are too many).

    The batch also carries `num_skipped` (corrupt samples dropped from this batch, for the trainer's log) and `keys`.
    When every sample of a batch is corrupt the collate returns None (the training step should skip it).
    """

    def __init__(self, template: ChatTemplate, encoder, token_counter=None, max_tokens: int | None = None,
                 skip_counter: Callable[[BaseException], bool] | None = None):
        self.template = template
        self.encoder = encoder
        if token_counter is None:
            self.count_tokens = lambda n: n
        elif hasattr(token_counter, "output_length"):
            self.count_tokens = token_counter.output_length
        elif callable(token_counter):
            self.count_tokens = token_counter
        else:
            raise TypeError("token_counter must be an adapter (with output_length) or a callable")
        self.max_tokens = max_tokens
        self.skip_counter = skip_counter
        self.num_skipped = 0  # in this process (the batch's num_skipped is the cross-process truth)
        self.skip_reasons: Counter[str] = Counter()

    def encode_sample(self, sample: dict) -> tuple[torch.Tensor, int, list[int], list[int]]:
        """One sample -> (model input, feature length, input_ids, labels); raises on corrupt data."""
        modality = sample["modality"]
        raw = sample[modality]
        x = self.encoder.preprocess(raw)
        n_feat = int(self.encoder.feature_length(raw))
        n_tok = int(self.count_tokens(n_feat))
        enc = self.template.encode(sample["conversation"], modality, n_tok)
        return x, n_feat, enc.input_ids, enc.labels

    def __call__(self, samples: Sequence[dict]) -> dict | None:
        inputs, feat_lengths, ids, labels, metas, keys, seqlens = [], [], [], [], [], [], []
        skipped = 0
        for sample in samples:
            if sample.get("modality") != self.encoder.modality:  # a configuration error, not a corrupt sample
                raise ValueError(f"sample {sample.get('__key__')!r} has modality {sample.get('modality')!r}, "
                                 f"the encoder expects {self.encoder.modality!r}")
            try:
                x, n_feat, s_ids, s_labels = self.encode_sample(sample)
            except (ValueError, TypeError, KeyError, OSError, RuntimeError) as exn:
                skipped += 1
                self._count_skip(sample, exn)
                continue
            if self.max_tokens is not None and len(s_ids) > self.max_tokens:
                raise BatchTooLongError(
                    f"sample {sample.get('__key__')!r} alone has {len(s_ids)} tokens > max_tokens={self.max_tokens}; "
                    "raise max_tokens, reduce modality tokens (conv adapter) or filter long samples")
            inputs.append(x)
            feat_lengths.append(n_feat)
            ids += s_ids
            labels += s_labels
            seqlens.append(len(s_ids))
            metas.append(sample.get("meta", {}))
            keys.append(sample.get("__key__"))
        if not inputs:
            return None
        total = len(ids)
        if self.max_tokens is not None and total > self.max_tokens:
            raise BatchTooLongError(
                f"packed batch of {len(inputs)} samples has {total} tokens > max_tokens={self.max_tokens} "
                f"(per sample: {seqlens}); lower the batch size or raise max_tokens")
        cu = torch.zeros(len(seqlens) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(torch.tensor(seqlens), 0)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long)[None],  # (1, T_total)
            "labels": torch.tensor(labels, dtype=torch.long)[None],  # (1, T_total)
            "cu_seqlens": cu,  # (N + 1,)
            "modality_inputs": self.encoder.collate(inputs),  # (N, ...)
            "modality_lengths": torch.tensor(feat_lengths) if self.encoder.variable_length else None,  # (N,)
            "meta": metas,
            "keys": keys,
            "num_skipped": skipped,
        }

    def _count_skip(self, sample: dict, exn: BaseException) -> None:
        self.num_skipped += 1
        self.skip_reasons[type(exn).__name__] += 1
        if self.skip_counter is not None:  # may raise TooManySkipsError
            self.skip_counter(CorruptSample(sample.get("__url__"), sample.get("__key__"), exn))
        elif self.num_skipped <= 10:
            log.warning("skipped corrupt sample %r: %r", sample.get("__key__"), exn)
