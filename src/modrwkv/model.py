"""ModRWKV: a (frozen) modality encoder -> adapter -> RWKV-7 language model.

Training runs on packed rows (`cu_seqlens`, no padding) with the loss over assistant tokens only; the LM head is
applied at the labelled positions alone (a 65536-way head over every position would dominate memory).
Generation prefills the prompt in parallel, then decodes through the recurrent state: on a GPU with the fast decoder
(fused step, CUDA graphs, sampling on the device; `modrwkv.generation.fast`), else one eager `step` per token. A
prefix state (after the modality tokens and an optional shared prompt) can be kept and answered from many times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from modrwkv.backbone.state import RWKV7State
from modrwkv.data.chat import IGNORE_INDEX, PLACEHOLDER_ID, ChatTemplate
from modrwkv.generation import FastDecoder, decode, make_generator
from modrwkv.generation.encoder_graphs import EncoderGraphs
from modrwkv.generation.fast import FastOptions
from modrwkv.generation.inputs import (
    check_finite_input,
    check_options,
    check_prompt,
    check_questions,
    check_raw,
    check_samples,
)
from modrwkv.generation.prefill_graphs import PrefillGraphs
from modrwkv.generation.sampling import GREEDY, draw_uniform, sample_tokens, sampler_mode
from modrwkv.losses import labelled_token_loss, next_token_targets


@dataclass
class PrefixState:
    """The RWKV-7 state after "\\x16User: " + modality tokens + a shared prompt prefix (one sequence)."""

    state: object  # RWKV7State with one sequence
    num_tokens: int  # prompt tokens already read
    modality: str


class ModRWKV(nn.Module):
    """Encoder + adapter + RWKV-7 backbone.

    Args:
        encoder: a `modrwkv.encoders.ModalityEncoder`.
        adapter: an adapter module, or a callable (in_dim, llm_dim) -> adapter (e.g. a Hydra partial of
            `modrwkv.adapters.build_adapter`), so widths come from the encoder and backbone, never from config.
        backbone: an `RWKV7`.
        template: the ChatTemplate (default: World tokenizer, User / Assistant).
        generation: decoding options (`FastOptions` or a dict: fast, check_every, compile, step; config ``generation``).
    """

    def __init__(self, encoder, adapter: nn.Module | Callable[[int, int], nn.Module], backbone,
                 template: ChatTemplate | None = None, generation: FastOptions | dict | None = None):
        super().__init__()
        llm_dim = backbone.config.n_embd
        if not isinstance(adapter, nn.Module):
            adapter = adapter(encoder.out_dim, llm_dim)
        if getattr(adapter, "in_dim", encoder.out_dim) != encoder.out_dim:
            raise ValueError(f"adapter input width {adapter.in_dim} != encoder width {encoder.out_dim}")
        if getattr(adapter, "out_dim", llm_dim) != llm_dim:
            raise ValueError(f"adapter output width {adapter.out_dim} != backbone width {llm_dim}")
        self.encoder = encoder
        self.adapter = adapter
        self.backbone = backbone
        self.template = template if template is not None else ChatTemplate()
        if generation is not None and not isinstance(generation, FastOptions):
            generation = FastOptions(**dict(generation))
        self.generation = generation or FastOptions()
        self._fast_decoder: FastDecoder | None = None
        self._prefill_cache: PrefillGraphs | None = None
        self._encoder_cache: EncoderGraphs | None = None

    def __getstate__(self) -> dict:
        # the fast decoder holds CUDA graphs and weight copies: never pickled or deep-copied (rebuilt on demand)
        return {**super().__getstate__(), "_fast_decoder": None, "_prefill_cache": None, "_encoder_cache": None}

    # -- freezing -------------------------------------------------------------------------------------------
    def freeze(self, encoder: bool = True, adapter: bool = False, backbone: bool = True) -> ModRWKV:
        """Set which parts train (stage 1: freeze(True, False, True); stage 2: freeze(True, False, False))."""
        if hasattr(self.encoder, "set_frozen"):
            self.encoder.set_frozen(encoder)
        else:
            self.encoder.requires_grad_(not encoder)
        self.adapter.requires_grad_(not adapter)
        self.backbone.requires_grad_(not backbone)
        return self

    # -- modality tokens ------------------------------------------------------------------------------------
    def num_modality_tokens(self, feature_length: int) -> int:
        """Placeholder tokens for a sample whose encoder gives `feature_length` features."""
        out_len = getattr(self.adapter, "output_length", None)
        return int(out_len(feature_length)) if out_len is not None else int(feature_length)

    def encode_modality(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(N, ...) encoder inputs (+ per-sample feature counts) -> (M, C) modality embeddings, the valid tokens of
        sample 0, then sample 1, ... (M = sum of the adapter's output lengths)."""
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(needs_grad):  # a frozen encoder keeps no activations
            feats = self.encoder(inputs, lengths)  # (N, L, D)
        p = next(self.adapter.parameters(), None)
        if p is not None and p.is_floating_point() and feats.dtype != p.dtype:
            feats = feats.to(p.dtype)  # e.g. an fp32 frozen encoder feeding a bf16 adapter
        if lengths is not None:
            lengths = lengths.to(feats.device)
        out, out_lengths = self.adapter(feats, lengths)  # (N, L', C), (N,) or None
        if out_lengths is None:
            return out.reshape(-1, out.shape[-1])  # (N * L', C)
        valid = torch.arange(out.shape[1], device=out.device)[None, :] < out_lengths[:, None]  # (N, L')
        return out[valid]  # (M, C)

    def embed_inputs(self, input_ids: torch.Tensor, modality_tokens: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (B, T, C) with the placeholder positions replaced, in order, by `modality_tokens`."""
        mask = input_ids == PLACEHOLDER_ID  # (B, T)
        emb = self.backbone.embed(input_ids.masked_fill(mask, 0))  # (B, T, C)
        n_ph = int(mask.sum())
        _check_placeholders(n_ph, modality_tokens)
        if n_ph == 0:
            return emb
        return emb.masked_scatter(mask.unsqueeze(-1), modality_tokens.to(emb.dtype))

    # -- training -------------------------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict:
        """Packed batch (PackedCollate) -> {"loss": mean cross-entropy over assistant tokens, "num_tokens": int}."""
        input_ids, labels = batch["input_ids"], batch["labels"]  # (1, T)
        cu = batch.get("cu_seqlens")
        device = input_ids.device
        mod = None
        if batch.get("modality_inputs") is not None:
            mod = self.encode_modality(batch["modality_inputs"].to(device), _to(batch.get("modality_lengths"), device))
        emb = self.embed_inputs(input_ids, mod)  # (1, T, C)
        hidden, _ = self.backbone.forward_hidden(emb, cu_seqlens=None if cu is None else cu.to(device))  # (1, T, C)
        # position t predicts label t + 1; the last position of a packed sequence predicts nothing
        targets = next_token_targets(labels, cu, IGNORE_INDEX)  # (1, T - 1)
        loss, n = labelled_token_loss(self.backbone.head, hidden[:, :-1], targets, IGNORE_INDEX)
        return {"loss": loss, "num_tokens": n}

    # -- generation -----------------------------------------------------------------------------------------
    def _modality_tokens(self, samples: Sequence[dict], fast: bool | None = None) -> list[torch.Tensor]:
        """The samples' modalities through one batched encoder + adapter call -> per-sample (n_i, C) embeddings.
        Fixed-shape inputs go through recorded CUDA graphs on the fast path (`FastOptions.encoder_graphs`)."""
        device = self.backbone.emb.weight.device
        xs, feats = [], []
        for i, sample in enumerate(samples):
            raw = sample[sample["modality"]]
            check_raw(raw, i, sample["modality"])
            x = self.encoder.preprocess(raw)
            if x is not raw:  # a tensor passed through as is was checked by check_raw
                check_finite_input(x, i, sample["modality"])
            xs.append(x)
            feats.append(int(self.encoder.feature_length(raw)))
        lengths = torch.tensor(feats, device=device) if self.encoder.variable_length else None
        batch = self.encoder.collate(xs)
        if lengths is None and self._use_encoder_graphs(fast, device):
            tokens = self._encoder_graphs(device)(batch)  # (M, C)
        else:
            tokens = self.encode_modality(batch.to(device), lengths)  # (M, C)
        return list(tokens.split([self.num_modality_tokens(n) for n in feats]))

    def _sample_tokens(self, sample: dict, fast: bool | None = None) -> torch.Tensor:
        """One sample's modality -> (n, C) embeddings."""
        return self._modality_tokens([sample], fast)[0]

    def _use_encoder_graphs(self, fast: bool | None, device: torch.device) -> bool:
        """Whether the encoder + adapter run as recorded CUDA graphs: the fast path on a GPU, no gradients, and
        neither in training mode (dropout would be recorded once)."""
        return (device.type == "cuda" and self.generation.encoder_graphs and self._use_fast(fast, device)
                and not torch.is_grad_enabled() and not self.encoder.training and not self.adapter.training)

    def _encoder_graphs(self, device: torch.device) -> EncoderGraphs:
        cache = self._encoder_cache
        if (cache is None or cache.modules[0] is not self.encoder or cache.modules[1] is not self.adapter
                or cache.device != device):
            self._encoder_cache = cache = EncoderGraphs(self.encode_modality, (self.encoder, self.adapter), device)
        return cache

    def _prefill(self, pieces: list[tuple[list[int], torch.Tensor | None]], state=None, fast: bool | None = None):
        """Read N prompts (ids, modality embeddings) -> (next-token logits (N, V), state of the N sequences).

        Prompts are packed into rows of at most ``generation.prefill_chunk`` tokens, and a longer prompt is read in
        pieces of that many tokens carrying the recurrent state, so prefill memory is bounded whatever the batch or
        the prompt length (the result is the same function of the prompt)."""
        chunk = self.generation.prefill_chunk
        groups, size = [[]], 0  # consecutive prompts that share one packed row
        for i, (ids, _) in enumerate(pieces):
            if groups[-1] and size + len(ids) > chunk:
                groups.append([])
                size = 0
            groups[-1].append(i)
            size += len(ids)
        logits, states = [], []
        for g in groups:
            sub = None if state is None else (state if len(groups) == 1 else state.select(g))
            out = self._prefill_row([pieces[i] for i in g], sub, chunk, fast)
            logits.append(out[0])
            states.append(out[1])
        if len(groups) == 1:
            return logits[0], states[0]
        return torch.cat(logits), RWKV7State.cat(states)

    def _prefill_row(self, pieces, state, chunk: int, fast: bool | None):
        """Prompts packed into one row -> (logits (N, V), state); one prompt is read alone, in pieces of ``chunk``."""
        device = self.backbone.emb.weight.device
        ids = [t for p, _ in pieces for t in p]
        mods = [m for _, m in pieces if m is not None]
        emb = self._embed_prompt(ids, (mods[0] if len(mods) == 1 else torch.cat(mods)) if mods else None,
                                 device)  # (1, T, C)
        if len(pieces) == 1 and emb.is_cuda and self._use_fast(fast, emb.device):  # one prompt: recorded forwards
            hidden, state = self._prefill_graphs()(emb, state)
            return self.backbone.head(hidden), state  # (1, V)
        if len(pieces) == 1:  # one prompt: no packing, so no cu_seqlens (whose checks read it back to the host)
            for t0 in range(0, emb.shape[1], chunk):
                hidden, state = self.backbone.forward_hidden(emb[:, t0:t0 + chunk], state=state, return_state=True)
            return self.backbone.head(hidden[:, -1]), state  # (1, V)
        lens = torch.tensor([len(p) for p, _ in pieces], device=device)
        cu = torch.zeros(len(pieces) + 1, dtype=torch.int32, device=device)
        cu[1:] = lens.cumsum(0)
        hidden, state = self.backbone.forward_hidden(emb, cu_seqlens=cu, state=state, return_state=True)
        return self.backbone.head(hidden[0, cu[1:].long() - 1]), state  # (N, V)

    def _embed_prompt(self, ids: list[int], modality_tokens: torch.Tensor | None, device) -> torch.Tensor:
        """`embed_inputs` of one row of prompt ids given as a host list: the placeholders are found on the host, so
        nothing waits for the GPU (no count read back), and the ids travel in one asynchronous copy."""
        runs = placeholder_runs(ids)
        _check_placeholders(sum(end - start for start, end in runs), modality_tokens)
        if runs:
            ids = [0 if t == PLACEHOLDER_ID else t for t in ids]
        emb = self.backbone.embed(_host_ids(ids, device)[None])  # (1, T, C)
        done = 0
        for start, end in runs:  # the modality embeddings, in order, over the placeholder runs
            emb[0, start:end] = modality_tokens[done:done + end - start]
            done += end - start
        return emb

    def _prompt(self, sample: dict, prompt) -> list[dict] | str:
        if prompt is not None:
            return prompt
        conv = sample["conversation"]
        first_answer = next((i for i, t in enumerate(conv) if t["role"] != "user"), len(conv))
        return list(conv[:first_answer])

    def _decode(self, logits: torch.Tensor, state, max_new_tokens: int, temperature: float, top_p: float,
                seed: int | None, fast: bool | None) -> list[list[int]]:
        """Decode from the prefill's logits and state: the fast decoder or the eager loop (see `FastOptions`)."""
        gen = make_generator(seed, logits.device)
        if not self._use_fast(fast, logits.device):
            return decode(self.backbone, logits, state, max_new_tokens, temperature, top_p, gen)
        if max_new_tokens == 1:  # the one token comes from the prefill's logits, drawn as the fast decoder would
            mode = sampler_mode(temperature, top_p)
            u = None if mode == GREEDY else draw_uniform(logits.shape[0], logits.device, gen)
            return [[t] for t in sample_tokens(logits, mode, temperature, top_p, u).tolist()]
        opts, dec = self.generation, self._fast_decoder
        wanted = (opts.check_every, opts.compile, opts.step, opts.gemv_max_batch)
        if dec is None or dec.backbone is not self.backbone or \
                (dec.check_every, dec.compile, dec.step, dec.gemv_max_batch) != wanted:
            # a new decoder when the backbone or the options changed (its graphs were recorded for the old ones)
            self._fast_decoder = FastDecoder(self.backbone, opts.check_every, compile=opts.compile, step=opts.step,
                                             gemv_max_batch=opts.gemv_max_batch)
        return self._fast_decoder.decode(logits, state, max_new_tokens, temperature, top_p, gen)

    def _use_fast(self, fast: bool | None, device: torch.device) -> bool:
        """Whether generation takes the fast path (`FastOptions.fast`; None: on a GPU)."""
        fast = self.generation.fast if fast is None else fast
        return device.type == "cuda" if fast is None else bool(fast)

    def _prefill_graphs(self) -> PrefillGraphs:
        cache, opts = self._prefill_cache, self.generation
        if (cache is None or cache.backbone is not self.backbone or cache.eager_chunk != opts.prefill_chunk
                or cache.exact != opts.prefill_exact):
            self._prefill_cache = PrefillGraphs(self.backbone, eager_chunk=opts.prefill_chunk, exact=opts.prefill_exact)
        return self._prefill_cache

    def clear_generation_cache(self) -> None:
        """Free the fast decoder and the prefill and encoder graphs (CUDA graphs, static buffers, weight copies)."""
        self._fast_decoder = None
        self._prefill_cache = None
        self._encoder_cache = None

    @torch.no_grad()
    def generate_ids(self, samples: Sequence[dict], prompts: Sequence | None = None, max_new_tokens: int = 64,
                     temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                     fast: bool | None = None) -> list[list[int]]:
        """Generated token ids per sample (each ends with 24 unless `max_new_tokens` ran out); see generate_batch."""
        check_options(max_new_tokens, temperature, top_p, seed)
        check_samples(samples, prompts)
        prompts = list(prompts) if prompts is not None else [None] * len(samples)
        pieces = []
        for sample, prompt, mod in zip(samples, prompts, self._modality_tokens(samples, fast)):
            ids = self.template.prompt_ids(self._prompt(sample, prompt), sample["modality"], mod.shape[0])
            pieces.append((ids, mod))
        logits, state = self._prefill(pieces, fast=fast)
        return self._decode(logits, state, max_new_tokens, temperature, top_p, seed, fast)

    @torch.no_grad()
    def generate_batch(self, samples: Sequence[dict], prompts: Sequence | None = None, max_new_tokens: int = 64,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                       fast: bool | None = None) -> list[str]:
        """Answer several samples at once: packed parallel prefill, then batched recurrent decoding.

        `prompts[i]`: a user text (modality tag optional) or a conversation ending with a user turn; None: the
        sample's own conversation up to its first assistant turn. `fast`: None = `self.generation.fast` (the fast
        decoder on a GPU), False = the eager loop.
        """
        out = self.generate_ids(samples, prompts, max_new_tokens, temperature, top_p, seed, fast)
        return [self.template.decode_answer(o) for o in out]

    @torch.no_grad()
    def generate(self, sample_or_prefix: dict | PrefixState, prompt=None, max_new_tokens: int = 64,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                 fast: bool | None = None) -> str:
        """Answer one sample (or, given a PrefixState, one question from it): greedy at temperature 0, else nucleus
        sampling (`seed` makes it reproducible). Stops at token 24 or after `max_new_tokens`."""
        if isinstance(sample_or_prefix, PrefixState):
            if prompt is None:
                raise ValueError("generate(prefix) needs the question: generate(prefix, prompt='...')")
            if not isinstance(prompt, str):
                raise ValueError(f"with a PrefixState the prompt must be a question, not {type(prompt).__name__}")
            return self.answer(sample_or_prefix, prompt, max_new_tokens, temperature, top_p, seed, fast)
        if not isinstance(sample_or_prefix, dict):
            raise ValueError("generate takes one sample dict (or a PrefixState from encode_prefix); "
                             f"got {type(sample_or_prefix).__name__} (for several samples use generate_batch)")
        check_prompt(prompt)
        return self.generate_batch([sample_or_prefix], [prompt], max_new_tokens, temperature, top_p, seed, fast)[0]

    @torch.no_grad()
    def encode_prefix(self, sample: dict, prompt_prefix: str = "") -> PrefixState:
        """Read "\\x16User: " + the sample's modality tokens + `prompt_prefix` once and keep the state."""
        if not isinstance(prompt_prefix, str):
            raise ValueError(f"prompt_prefix must be a string, got {type(prompt_prefix).__name__}")
        check_samples([sample], [prompt_prefix])
        mod = self._sample_tokens(sample)
        head, _ = self.template.cached_prompt_split("", sample["modality"], mod.shape[0], prompt_prefix)
        _, state = self._prefill([(head, mod)])
        return PrefixState(state, len(head), sample["modality"])

    @torch.no_grad()
    def answer_ids(self, prefix: PrefixState, questions: Sequence[str], max_new_tokens: int = 64,
                   temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                   fast: bool | None = None) -> list[list[int]]:
        """Generated ids for each question, decoded together from copies of the cached prefix state."""
        if not isinstance(prefix, PrefixState):
            raise ValueError(f"answer needs a PrefixState from encode_prefix, got {type(prefix).__name__}")
        questions = check_questions(questions)
        check_options(max_new_tokens, temperature, top_p, seed)
        tails = [self.template.cached_prompt_split(q, prefix.modality, 0)[1] for q in questions]
        logits, state = self._prefill([(t, None) for t in tails], state=prefix.state.expand(len(tails)), fast=fast)
        return self._decode(logits, state, max_new_tokens, temperature, top_p, seed, fast)

    @torch.no_grad()
    def answer(self, prefix: PrefixState, questions: str | Sequence[str], max_new_tokens: int = 64,
               temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
               fast: bool | None = None) -> str | list[str]:
        """Answer one question (-> str) or several (-> list, decoded together) from a cached prefix, without
        re-reading the modality tokens. Equals generating from the full prompt "{tag}{prefix}{question}"
        (tokenised as `ChatTemplate.cached_prompt_split`); the prefix state itself is never modified."""
        single = isinstance(questions, str)
        out = self.answer_ids(prefix, questions, max_new_tokens, temperature, top_p, seed, fast)
        texts = [self.template.decode_answer(o) for o in out]
        return texts[0] if single else texts


def _to(t: torch.Tensor | None, device) -> torch.Tensor | None:
    return None if t is None else t.to(device)


def _check_placeholders(n_placeholders: int, modality_tokens: torch.Tensor | None) -> None:
    """ValueError unless a prompt's placeholder count equals its number of modality embeddings."""
    n_mod = 0 if modality_tokens is None else modality_tokens.shape[0]
    if n_placeholders != n_mod:
        raise ValueError(f"{n_placeholders} placeholder tokens but {n_mod} modality embeddings (the collate's token "
                         "count and the adapter disagree)")


def placeholder_runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """The [start, end) runs of `PLACEHOLDER_ID` in ``ids``, in order."""
    runs, start = [], None
    for i, t in enumerate(ids):
        if t == PLACEHOLDER_ID:
            if start is None:
                start = i
        elif start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(ids)))
    return runs


def _host_ids(ids: list[int], device: torch.device) -> torch.Tensor:
    """(T,) int64 ids on ``device``; to a GPU through a cached pinned block, so the host does not wait for it."""
    t = torch.tensor(ids, dtype=torch.long)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)
