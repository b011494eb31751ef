"""An lmms-eval model plugin: any lmms-eval task on a trained ModRWKV run (``pip install -e .[eval]``).

Registered through the ``lmms_eval.models`` entry point (pyproject.toml) as model ``modrwkv``:

    python -m lmms_eval --model modrwkv --model_args checkpoint=<run folder or .ckpt>,device=cuda --tasks <task>

``generate_until`` answers a batch at once through ``ModRWKV.generate_batch`` (packed prefill, batched decoding);
``loglikelihood`` scores a continuation as the assistant's answer after the task's context.
"""

from __future__ import annotations

import numpy as np
import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest

from modrwkv.modalities import get_modality

from .checkpoint import load_trained_run
from .eval_run import pick_device


def manifest() -> ModelManifest:
    """The entry point's payload: model id ``modrwkv`` -> ``ModRWKVLmms``."""
    return ModelManifest(model_id="modrwkv", simple_class_path="modrwkv.evaluation.lmms_plugin.ModRWKVLmms")


class ModRWKVLmms(lmms):
    """lmms-eval's model interface over a trained run (model_args: checkpoint, device, batch_size,
    max_new_tokens)."""

    def __init__(self, checkpoint: str, device: str = "auto", batch_size: int | str = 8, max_new_tokens: int = 64,
                 **kwargs) -> None:
        super().__init__()
        self.model, self.run = load_trained_run(checkpoint, pick_device(str(device)))
        self.spec = get_modality(self.run.cfg.modality.name)
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)

    # ---- inputs --------------------------------------------------------------------------------------------
    def _data(self, visuals):
        """The first visual of a request as this model's modality data (PIL image; audio {"array",
        "sampling_rate"} resampled to 16 kHz)."""
        items = [v for v in (visuals if isinstance(visuals, list | tuple) else [visuals]) if v is not None]
        if not items:
            raise ValueError(f"lmms-eval request without a visual: a {self.spec.name} model needs one per question")
        item = items[0]
        if isinstance(item, dict) and "array" in item:  # an audio feature of Hugging Face datasets
            from modrwkv.data.audio_io import resample

            item = resample(np.asarray(item["array"], np.float32), int(item["sampling_rate"]))
        elif hasattr(item, "convert"):  # a PIL image in any mode
            item = item.convert("RGB")
        return self.spec.codec().coerce(item)

    def _sample(self, context: str, visuals) -> dict:
        prompt = context if self.spec.tag in context else f"{self.spec.tag}\n{context}"
        return {"__key__": "lmms", "modality": self.spec.name, self.spec.name: self._data(visuals),
                "conversation": [{"role": "user", "content": prompt}], "meta": {}}

    def _doc(self, doc_id, task, split):
        return self.task_dict[task][split][doc_id]

    # ---- lmms-eval's interface -------------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy answers, ``batch_size`` requests at a time, cut at the first of the task's ``until`` strings."""
        out: list[str] = []
        for i in range(0, len(requests), self.batch_size):
            chunk = [r.args for r in requests[i:i + self.batch_size]]
            samples = [self._sample(ctx, to_visual(self._doc(doc_id, task, split)))
                       for ctx, _, to_visual, doc_id, task, split in chunk]
            budget = max(int(g.get("max_new_tokens", self.max_new_tokens)) for _, g, *_ in chunk)
            answers = self.model.generate_batch(samples, max_new_tokens=budget)
            for (_, gen_kwargs, *_), answer in zip(chunk, answers):
                until = gen_kwargs.get("until") or []
                for stop in [until] if isinstance(until, str) else until:
                    if stop:
                        answer = answer.split(stop)[0]
                out.append(answer)
        return out

    @torch.no_grad()
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """log p(continuation | context) with the continuation as the assistant's answer, and whether greedy
        decoding would produce exactly it."""
        out = []
        for ctx, to_target, to_visual, doc_id, task, split in (r.args for r in requests):
            doc = self._doc(doc_id, task, split)
            continuation = to_target if isinstance(to_target, str) else to_target(doc)
            out.append(self._continuation_logprob(self._sample(ctx, to_visual(doc)), str(continuation)))
        return out

    def _continuation_logprob(self, sample: dict, continuation: str) -> tuple[float, bool]:
        model, template = self.model, self.model.template
        encoder, raw = model.encoder, sample[sample["modality"]]
        device = model.backbone.emb.weight.device
        n_feats = int(encoder.feature_length(raw))
        lengths = torch.tensor([n_feats], device=device) if encoder.variable_length else None
        mod = model.encode_modality(encoder.collate([encoder.preprocess(raw)]).to(device), lengths)  # (n, C)
        prompt = template.prompt_ids(sample["conversation"], sample["modality"], mod.shape[0])
        cont = template.answer_ids(continuation.strip())[:-1]  # " {text}", without the turn end
        ids = torch.tensor(prompt + cont, device=device)[None]  # (1, T)
        hidden, _ = model.backbone.forward_hidden(model.embed_inputs(ids, mod))  # (1, T, C)
        logits = model.backbone.head(hidden[0, len(prompt) - 1:-1]).float()  # (len(cont), V): predicts cont
        target = torch.tensor(cont, device=device)
        logprob = torch.log_softmax(logits, -1).gather(-1, target[:, None]).sum()
        return float(logprob), bool((logits.argmax(-1) == target).all())

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("ModRWKV's lmms-eval plugin answers single-round tasks (generate_until)")
