"""Checks of what a caller passes to generation, before any work: one-line messages that say what to change."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch


def check_options(max_new_tokens, temperature, top_p, seed) -> None:
    """The decoding options: ``max_new_tokens`` an int >= 0, ``temperature`` a finite number >= 0, ``top_p`` in
    (0, 1], ``seed`` None or an int."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not _real(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if not _real(top_p) or not (0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be a number in (0, 1] (1: no nucleus cut), got {top_p!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")


def check_samples(samples, prompts) -> None:
    """A non-empty sequence of sample dicts, each with its modality's data, and prompts that fit them."""
    if isinstance(samples, dict) or not isinstance(samples, Sequence) or len(samples) == 0:
        raise ValueError("generate_batch needs a non-empty list of sample dicts (each with 'modality' and its data); "
                         f"got {_brief(samples)}")
    for i, s in enumerate(samples):
        if not isinstance(s, dict) or "modality" not in s or s["modality"] not in s:
            raise ValueError(f"sample {i} must be a dict with 'modality' and the data under that key "
                             f"(e.g. {{'modality': 'image', 'image': <PIL image>}}); got {_brief(s)}")
    if prompts is not None and (isinstance(prompts, str) or len(prompts) != len(samples)):
        n = "a string" if isinstance(prompts, str) else len(prompts)
        raise ValueError(f"{len(samples)} samples but {n} prompts: pass one prompt per sample (or None)")
    for i, s in enumerate(samples):
        p = None if prompts is None else prompts[i]
        check_prompt(p, f"prompt {i}")
        if p is None and not isinstance(s.get("conversation"), Sequence):
            raise ValueError(f"sample {i} has no 'conversation' to take the prompt from: pass prompt=<question>")


def check_prompt(prompt, name: str = "prompt") -> None:
    """None, a user text, or a conversation (a list of {"role", "content"} dicts ending with a user turn)."""
    if prompt is None or isinstance(prompt, str):
        return
    if isinstance(prompt, Sequence) and len(prompt) > 0 and all(isinstance(t, dict) for t in prompt):
        return
    raise ValueError(f"{name} must be a string, a non-empty list of {{'role', 'content'}} turns, or None; "
                     f"got {_brief(prompt)}")


def check_questions(questions) -> list[str]:
    """One question (a string) or a non-empty list of strings -> the list."""
    qs = [questions] if isinstance(questions, str) else questions
    if not isinstance(qs, Sequence) or len(qs) == 0 or not all(isinstance(q, str) for q in qs):
        raise ValueError(f"questions must be a string or a non-empty list of strings; got {_brief(questions)}")
    return list(qs)


def check_raw(raw, index: int, modality: str) -> None:
    """The modality data itself: a non-empty image, a non-empty array of finite numbers."""
    size = getattr(raw, "size", None)
    if hasattr(raw, "getbbox") and isinstance(size, tuple):  # a PIL image
        if size[0] == 0 or size[1] == 0:
            raise ValueError(f"sample {index}: the {modality} is empty ({size[0]}x{size[1]} pixels)")
        if raw.mode in ("F", "I"):
            raw = np.asarray(raw)
        else:
            return
    if isinstance(raw, np.ndarray):
        if raw.size == 0:
            raise ValueError(f"sample {index}: the {modality} is empty (shape {raw.shape})")
        if np.issubdtype(raw.dtype, np.floating) and not bool(np.isfinite(raw).all()):
            raise ValueError(f"sample {index}: the {modality} holds NaN or infinite values")
    elif isinstance(raw, torch.Tensor):
        if raw.numel() == 0:
            raise ValueError(f"sample {index}: the {modality} is empty (shape {tuple(raw.shape)})")
        check_finite_input(raw, index, modality)


def check_finite_input(x: torch.Tensor, index: int, modality: str) -> None:
    """A preprocessed encoder input with NaN/inf (e.g. from a float image) would give an empty answer silently."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"sample {index}: the preprocessed {modality} holds NaN or infinite values")


def _real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _brief(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."
