"""Generation through the public API: `ModRWKV.generate` / `generate_batch` / `encode_prefix` + `answer`, a 1.5B
RWKV-7 with a SigLIP2-B/16-384-shaped tower (random weights, bf16), as a user who serves the model calls it.

    python bench/generate_api.py [--size 1.5b] [--ctx 1024 16384 65536] [--new 129] [--batch 64] [--peer]
    python bench/generate_api.py --smoke        # CPU, tiny sizes, seconds (fused step, no CUDA graphs)
    python bench/generate_api.py --step triton --compare-step torch   # also the torch step's batch-1 row

Measured, in this order, in one process:
- first call: the very first `generate` (one image + a 32-token question, 32 new tokens) of the process, wall clock:
  Triton compilation, CUDA-graph capture and all (run it with fresh TRITON_CACHE_DIR / TORCHINDUCTOR_CACHE_DIR);
- time to first token: `generate(..., max_new_tokens=1)` for one 384 px image + the 32-token question, wall clock
  (preprocess, encoder, adapter, prefill, first token, back on the host), median of repeats; then split three ways:
  synchronised stages (wall and summed kernel ms each), the host time of each part inside one unsynchronised call
  (where the host waits), and the same call with the encoder run eagerly (``generation.encoder_graphs=false``);
- per-token latency at batch 1 for each context: the context (image + random text) is read once with
  `encode_prefix`, then ms/token = (time of `answer` with --new tokens - time with 2 tokens) / (--new - 2); the peak
  memory of those calls must not grow with the context (asserted);
- the eager loop (``fast=False``) at the first context, for the speed-up;
- batch --batch: --batch questions answered together from the first context's prefix, tokens/s against batch 1;
- batch 16 x 16k (the peer's row): `generate_ids` over 16 samples with 16k-token prompts: ms per decode step (the
  decoding part of the call, timed around `ModRWKV._decode`: the prefill's variance exceeds the whole decode) and
  the peak memory of the call;
- the weight-read floor: bytes a decode step must read (every weight once, the embedding table excepted, plus the
  WKV state read and written) over the copy bandwidth measured in the same run;
- ``--ttft-compile``: last, time to first token again with the blocks compiled (`RWKV7.compile_blocks`, as
  ``backbone.compile=true``): the prefill graphs then record Inductor's fused kernels;
- ``--peer``: Hugging Face transformers' `generate` (static cache, compiled by transformers) of a Qwen2-1.5B-shaped
  model with random weights, the same per-token method: batch 1 at every context, and batch 16 x --b16-ctx with
  its peak memory.

The LM head row of the stop token (24) is zeroed, so greedy decoding on random weights never stops early: every
timed call makes exactly the tokens it asks for (checked).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import common
import numpy as np
import torch

from modrwkv.backbone.fused import KERNELS
from modrwkv.data.chat import TURN_END
from modrwkv.generation.fast import FastOptions
from modrwkv.kernels.triton_chunk import CONFIG as WKV_CONFIG


class ApiVisionTower(common.BenchVisionTower):
    """The bench tower with the data side `ModRWKV.generate` calls: the sample's image is a (3, S, S) tensor."""

    def preprocess(self, raw) -> torch.Tensor:
        return torch.as_tensor(raw, dtype=torch.float32)

    def feature_length(self, raw) -> int:
        return self.num_tokens

    def collate(self, xs):
        return torch.stack(xs)


def build(size: str, device, dtype, tiny: bool):
    backbone = common.build_backbone("rwkv", size, device, dtype).eval()
    encoder = ApiVisionTower(tiny=tiny).to(device=device, dtype=dtype)
    with torch.device(device):
        adapter = common.build_adapter("mlp", encoder.out_dim, backbone.config.n_embd)
    model = common.ModRWKV(encoder, adapter.to(dtype), backbone, template=common.ChatTemplate(common.ByteTokenizer()))
    with torch.no_grad():
        backbone.head.weight[TURN_END].zero_()  # never the argmax: every call makes the tokens it asks for
    return model.eval()


def wall(fn, device, reps: int) -> float:
    """Median wall-clock seconds of ``fn`` (synchronised before and after)."""
    times = []
    for _ in range(reps):
        common.sync(device)
        t0 = time.perf_counter()
        fn()
        common.sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_token(call, new: int, device, reps: int) -> dict:
    """``call(n)`` generates n tokens per sequence (returns the ids); ms per step from the difference of n and 2
    tokens (a call for one token takes its token from the prefill: no decode step, no decoder set-up)."""
    out = call(new)
    assert all(len(o) == new for o in out), [len(o) for o in out]
    t2 = wall(lambda: call(2), device, reps)
    tn = wall(lambda: call(new), device, reps)
    return {"ms_per_step": (tn - t2) / (new - 2) * 1e3, "t2_s": t2, "tn_s": tn, "batch": len(out)}


class DecodeTimer:
    """Wall time of the decoding part (after prefill) of the model's generate calls: wraps ``model._decode``."""

    def __init__(self, model):
        self.model, self.last_s = model, None
        inner = model._decode

        def timed(*a, **k):
            common.sync(model.backbone.emb.weight.device)
            t0 = time.perf_counter()
            out = inner(*a, **k)
            common.sync(model.backbone.emb.weight.device)
            self.last_s = time.perf_counter() - t0
            return out

        model._decode = timed

    def remove(self):
        del self.model._decode


def kernel_profile(fn, device, top: int = 8) -> tuple[float, list]:
    """Summed GPU kernel ms of one call of ``fn`` (torch.profiler) and its ``top`` kernels as (name, calls, ms):
    against the wall time, what is launch-bound, and where the GPU time goes."""
    if device != "cuda":
        return 0.0, []
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_device_time_total)
    rows = [(e.key[:90], e.count, e.self_device_time_total / 1e3) for e in events if e.self_device_time_total > 0]
    return sum(r[2] for r in rows), rows[:top]


def ttft_stages(model, sample, prompt, device, reps: int) -> dict:
    """Time to first token split into its stages, each synchronised: wall ms and summed kernel ms."""
    stages = {}
    box = {}

    def encode():
        box["mod"] = model._modality_tokens([sample])[0]

    def prefill():
        ids = model.template.prompt_ids(prompt, sample["modality"], box["mod"].shape[0])
        box["logits"], box["state"] = model._prefill([(ids, box["mod"])])

    def first_token():
        model._decode(box["logits"], box["state"], 1, 0.0, 1.0, None, None)

    for name, fn in (("encode", encode), ("prefill", prefill), ("first_token", first_token)):
        total, top = kernel_profile(fn, device)
        stages[name] = {"wall_ms": wall(fn, device, reps) * 1e3, "kernel_ms": total, "top_kernels": top}
    return stages


class HostSplit:
    """Host seconds spent inside ``model``'s generation parts during one call, without added syncs: wraps
    ``_modality_tokens``, ``_prefill`` and ``_decode`` (a part that waits for the GPU shows it here)."""

    PARTS = ("_modality_tokens", "_prefill", "_decode")

    def __init__(self, model):
        self.model, self.times = model, {}
        for name in self.PARTS:
            setattr(model, name, self._timed(name, getattr(model, name)))

    def _timed(self, name, inner):
        def timed(*a, **k):
            t0 = time.perf_counter()
            out = inner(*a, **k)
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
            return out
        return timed

    def remove(self):
        for name in self.PARTS:
            delattr(self.model, name)


def host_split(model, fn, reps: int) -> dict:
    """Median host ms of each generation part over ``reps`` calls of ``fn``, and of the whole call."""
    rows = []
    for _ in range(reps):
        common.sync(model.backbone.emb.weight.device)
        split = HostSplit(model)
        t0 = time.perf_counter()
        fn()
        total = time.perf_counter() - t0
        split.remove()
        rows.append({"total": total, **split.times})
    out = {k.lstrip("_") + "_ms": statistics.median(r.get(k, 0.0) for r in rows) * 1e3 for k in rows[0]}
    out["other_ms"] = out["total_ms"] - sum(v for k, v in out.items() if k != "total_ms")
    return out


def measure_ttft(model, sample, prompt, device, reps: int, label: str = "") -> dict:
    """Time to first token of ``generate(sample, prompt, max_new_tokens=1)`` (median wall ms of ``reps``) for a
    prompt length read before (its one-piece prefill graph, ``generation.prefill_exact``), its synchronised stages,
    the host split of one call, and the same call with the encoder run eagerly, with the two-piece prefill (a
    length seen for the first time) and with the WKV-7 sequence-parallel passes. The model's generation options
    are restored afterwards."""
    opts = model.generation

    def call():
        return model.generate(sample, prompt, max_new_tokens=1)

    call()  # this prompt length a second time: its one-piece prefill graph is recorded here
    row = {"ttft_ms": wall(call, device, reps) * 1e3}
    enc_graphs = model._encoder_cache
    row["encoder_graphs"] = enc_graphs is not None and enc_graphs.captures > 0
    row["encoder_graph_captures"] = enc_graphs.captures if enc_graphs else 0
    row["prefill_graph_captures"] = model._prefill_cache.captures if model._prefill_cache else 0
    row["prefill_exact_lengths"] = sorted(model._prefill_cache.exact_lengths) if model._prefill_cache else []
    print(f"{label}time to first token (1 image, 32-token question): {row['ttft_ms']:.1f} ms (encoder graphs "
          f"{row['encoder_graphs']}, captures {row['encoder_graph_captures']}; prefill graph captures "
          f"{row['prefill_graph_captures']})", flush=True)
    row["ttft_stages"] = ttft_stages(model, sample, prompt, device, reps)
    print("  stages (wall ms / GPU kernel ms): " + ", ".join(
        f"{k} {v['wall_ms']:.1f}/{v['kernel_ms']:.1f}" for k, v in row["ttft_stages"].items()), flush=True)
    for name, calls, ms in row["ttft_stages"]["prefill"]["top_kernels"]:
        print(f"    prefill kernel {ms:7.2f} ms  x{calls:<5d} {name}", flush=True)
    row["ttft_host_split"] = host_split(model, call, reps)
    print("  host ms inside one call: " + ", ".join(f"{k} {v:.2f}" for k, v in row["ttft_host_split"].items()),
          flush=True)
    model.generation = dataclasses.replace(opts, encoder_graphs=False)  # the peer: the encoder run eagerly
    row["ttft_ms_eager_encoder"] = wall(call, device, reps) * 1e3
    print(f"  same call, encoder eager (generation.encoder_graphs=false): {row['ttft_ms_eager_encoder']:.1f} ms",
          flush=True)
    model.generation = dataclasses.replace(opts, prefill_exact=0)  # the peer: two prefill pieces (new graphs)
    call()
    row["ttft_ms_two_pieces"] = wall(call, device, reps) * 1e3
    print(f"  same call, two-piece prefill (generation.prefill_exact=0): {row['ttft_ms_two_pieces']:.1f} ms",
          flush=True)
    model.generation = opts
    saved = WKV_CONFIG["SEQPAR"]  # the peer: the WKV-7 sequence-parallel passes for the short prompt
    try:
        WKV_CONFIG["SEQPAR"] = "on"
        model.clear_generation_cache()
        call()
        call()
        row["ttft_ms_seqpar_on"] = wall(call, device, reps) * 1e3
    finally:
        WKV_CONFIG["SEQPAR"] = saved
    print(f"  same call, WKV-7 sequence-parallel passes on: {row['ttft_ms_seqpar_on']:.1f} ms", flush=True)
    model.clear_generation_cache()
    call()
    call()  # back to the one-piece graph of the default kernels
    return row


def text_of(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return bytes(rng.integers(32, 127, n, dtype=np.uint8)).decode()


def state_bytes(backbone, n: int = 1) -> int:
    cfg = backbone.config
    return n * cfg.n_layer * cfg.n_head * cfg.head_size**2 * 4


@torch.no_grad()
def run_ours(args, device, dtype, bw, res, save) -> None:
    tiny = args.size == "tiny"
    model = build(args.size, device, dtype, tiny)
    default_opts = FastOptions(step=args.step, gemv_max_batch=args.gemv_max_batch)
    model.generation = default_opts
    enc = model.encoder
    image = torch.randn(3, enc.image_size, enc.image_size, generator=torch.Generator().manual_seed(0))
    sample = {"modality": "image", "image": image}
    question = ("What is in this image? Describe " * 2)[:32]
    prompt = "<image>" + question
    assert len(model.template.tokenizer.encode(question)) == 32

    t0 = time.perf_counter()
    model.generate(sample, prompt, max_new_tokens=32)
    common.sync(device)
    res["first_call_s"] = time.perf_counter() - t0
    dec = model._fast_decoder
    res["fast_path"] = dec is not None
    res["graphs"] = bool(dec and dec.use_graphs)
    res["captures_after_first_call"] = dec.captures if dec else None
    res["step_kernels"] = dec.fused.kernels if dec else None
    res["gemv_max_batch"] = dec.fused.gemv_max_batch if dec else None
    print(f"first generate call {res['first_call_s']:.2f} s (graphs {res['graphs']}, captures "
          f"{res['captures_after_first_call']})", flush=True)
    save()

    res.update(measure_ttft(model, sample, prompt, device, args.reps * 2))
    save()

    weight_bytes = common.decode_weight_bytes(model.backbone)
    floor_ms = (weight_bytes + 2 * state_bytes(model.backbone)) / (bw * 1e9) * 1e3 if bw else None
    res["floor_ms"], res["weight_bytes"] = floor_ms, weight_bytes
    rows = res.setdefault("batch1", [])
    prefixes = {}
    for ctx in args.ctx:
        n_text = ctx - enc.num_tokens - 7  # "\x16User: " + image tokens + text = ctx tokens of context
        t0 = time.perf_counter()
        prefix = model.encode_prefix(sample, prompt_prefix=text_of(n_text, ctx))
        common.sync(device)
        prefill_s = time.perf_counter() - t0
        common.reset_peak(device)
        row = per_token(lambda n, p=prefix: model.answer_ids(p, [question], max_new_tokens=n), args.new, device,
                        args.reps)
        row.update(ctx=prefix.num_tokens, prefill_s=prefill_s, peak_gib=common.peak_gib(device))
        if floor_ms:
            row["x_floor"] = row["ms_per_step"] / floor_ms
        rows.append(row)
        prefixes[ctx] = prefix
        print(f"batch 1, ctx {row['ctx']}: {row['ms_per_step']:.3f} ms/token (floor {floor_ms or 0:.3f}), "
              f"prefill {prefill_s:.2f} s, peak {row['peak_gib'] or 0:.2f} GiB", flush=True)
        save()
    if device == "cuda":  # where one decode step's GPU time goes: kernels of a 33-token answer, per token
        first_prefix = prefixes[args.ctx[0]]
        total, top = kernel_profile(lambda: model.answer_ids(first_prefix, [question], max_new_tokens=33), device,
                                    top=12)
        res["decode_kernels"] = {"kernel_ms_per_token": total / 33, "top": top}
        print(f"decode: {total / 33:.3f} kernel ms/token; top kernels over 33 tokens:", flush=True)
        for name, calls, kms in top:
            print(f"    {kms / 33:7.4f} ms/token  x{calls / 33:<6.1f} {name}", flush=True)
    ms = [r["ms_per_step"] for r in rows]
    res["flat_max_over_min"] = max(ms) / min(ms)
    peaks = [r["peak_gib"] for r in rows if r["peak_gib"] is not None]
    if peaks:
        res["decode_peak_spread_gib"] = max(peaks) - min(peaks)
        assert res["decode_peak_spread_gib"] < 0.05, f"decode memory grew with the context: {peaks}"
    first = prefixes[args.ctx[0]]

    eager = per_token(lambda n: model.answer_ids(first, [question], max_new_tokens=n, fast=False),
                      args.new_eager, device, 1)
    res["eager_ms_per_step"] = eager["ms_per_step"]
    res["speedup_vs_eager"] = eager["ms_per_step"] / rows[0]["ms_per_step"]
    print(f"eager loop (fast=False): {eager['ms_per_step']:.2f} ms/token -> fast is {res['speedup_vs_eager']:.1f}x",
          flush=True)
    save()

    common.reset_peak(device)
    big = per_token(lambda n: model.answer_ids(first, [question] * args.batch, max_new_tokens=n), args.new, device,
                    args.reps)
    big["tokens_per_s"] = args.batch / big["ms_per_step"] * 1e3
    big["peak_gib"] = common.peak_gib(device)
    res["batchN"] = big
    res["batchN_over_batch1_tokens_per_s"] = big["tokens_per_s"] / (1e3 / rows[0]["ms_per_step"])
    print(f"batch {args.batch}: {big['ms_per_step']:.2f} ms/step, {big['tokens_per_s']:.0f} tokens/s = "
          f"{res['batchN_over_batch1_tokens_per_s']:.1f}x batch 1", flush=True)
    save()

    if args.b16_ctx:
        # prefill (262k tokens) varies by more than the whole decode: time the decode part of the same calls
        samples = [dict(sample) for _ in range(16)]
        prompts = [prompt + " " + text_of(args.b16_ctx - enc.num_tokens - 60, i) for i in range(16)]
        timer = DecodeTimer(model)
        common.reset_peak(device)
        model.generate_ids(samples, prompts, max_new_tokens=2)  # the bucket's graph is captured here
        common.sync(device)
        t0 = time.perf_counter()
        out = model.generate_ids(samples, prompts, max_new_tokens=args.new_b16)
        common.sync(device)
        total = time.perf_counter() - t0
        assert all(len(o) == args.new_b16 for o in out)
        step = timer.last_s / (args.new_b16 - 1) * 1e3
        timer.remove()
        res["batch16_ctx16k"] = {"ms_per_step": step, "tokens_per_s": 16 / step * 1e3, "call_s": total,
                                 "prefill_s": total - timer.last_s, "peak_gib": common.peak_gib(device),
                                 "ctx": args.b16_ctx}
        print(f"batch 16 x {args.b16_ctx}: {step:.2f} ms/step ({16 / step * 1e3:.0f} tokens/s), prefill "
              f"{total - timer.last_s:.2f} s, peak {common.peak_gib(device) or 0:.2f} GiB", flush=True)
        save()

    def compare_row(key: str, opts: FastOptions, label: str) -> None:
        """The batch-1 row at the first context with other decoding options, same process."""
        model.generation = opts
        model.clear_generation_cache()
        model.answer_ids(first, [question], max_new_tokens=8)  # capture outside the timing
        row = per_token(lambda n: model.answer_ids(first, [question], max_new_tokens=n), args.new, device, args.reps)
        dec = model._fast_decoder  # None on the CPU, where the eager loop decodes
        row.update(step_kernels=dec.fused.kernels if dec else None, ctx=first.num_tokens,
                   gemv_max_batch=dec.fused.gemv_max_batch if dec else None)
        res.setdefault(key, []).append(row)
        print(f"{label} ({row['step_kernels']}, gemv_max_batch {row['gemv_max_batch']}), ctx {row['ctx']}: "
              f"{row['ms_per_step']:.3f} ms/token", flush=True)
        model.generation = default_opts
        model.clear_generation_cache()
        save()

    for step in args.compare_step or []:
        compare_row("compare_step", FastOptions(step=step, gemv_max_batch=args.gemv_max_batch), f"step {step}")
    for gemv in args.compare_gemv or []:
        compare_row("compare_gemv", FastOptions(step=args.step, gemv_max_batch=gemv), f"gemv_max_batch {gemv}")

    if args.compile:
        model.generation = FastOptions(compile=True)
        model.clear_generation_cache()
        t0 = time.perf_counter()
        model.answer_ids(first, [question], max_new_tokens=8)
        common.sync(device)
        res["compile_first_call_s"] = time.perf_counter() - t0
        row = per_token(lambda n: model.answer_ids(first, [question], max_new_tokens=n), args.new, device, args.reps)
        res["compiled_ms_per_step"] = row["ms_per_step"]
        print(f"compiled fused step: first call {res['compile_first_call_s']:.1f} s, {row['ms_per_step']:.3f} "
              "ms/token", flush=True)
        save()

    if args.ttft_compile:  # last: compiling the blocks changes every later prefill of this model
        model.generation = default_opts
        model.backbone.compile_blocks()  # what backbone.compile=true does; the prefill graphs record compiled blocks
        model.clear_generation_cache()
        t0 = time.perf_counter()
        model.generate(sample, prompt, max_new_tokens=1)
        common.sync(device)
        row = {"first_call_s": time.perf_counter() - t0}
        print(f"compiled blocks: first 1-token generate {row['first_call_s']:.1f} s (compilation and capture)",
              flush=True)
        row.update(measure_ttft(model, sample, prompt, device, args.reps * 2, "compiled blocks: "))
        res["ttft_compiled_blocks"] = row
        save()


@torch.no_grad()
def run_peer(args, device, res, save) -> None:
    """transformers' Qwen2 (1.5B shape, random weights) with a static cache: ms/token at batch 1 at each context,
    then ms/step and peak memory at batch 16 x --b16-ctx; each against our row of the same run. A row that runs out
    of memory is recorded as such."""
    import transformers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                      num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072,
                      tie_word_embeddings=True)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16).eval()
    peer = {"transformers": transformers.__version__, "params": sum(p.numel() for p in model.parameters()),
            "rows": []}
    res["peer"] = peer
    ours = {r["ctx"]: r for r in res.get("batch1", [])}
    rows = [(1, ctx) for ctx in args.ctx] + ([(16, args.b16_ctx)] if args.b16_ctx else [])
    for batch, ctx in rows:
        ids = torch.randint(0, 151000, (batch, ctx), device=device)

        def call(n, ids=ids):
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 cache_implementation="static", pad_token_id=0)
            return [o[ids.shape[1]:].tolist() for o in out]

        row = {"batch": batch, "ctx": ctx}
        try:
            common.free_memory()
            common.reset_peak(device)
            t0 = time.perf_counter()
            call(4)
            row["first_call_s"] = time.perf_counter() - t0
            row.update(per_token(call, args.new if batch == 1 else args.new_b16, device, args.reps))
            row["peak_gib"] = common.peak_gib(device)
        except torch.cuda.OutOfMemoryError as e:
            row["error"] = f"out of memory: {str(e)[:200]}"
        peer["rows"].append(row)
        if "error" in row:
            print(f"peer batch {batch} x {ctx}: {row['error'][:80]}", flush=True)
            save()
            continue
        if batch == 1 and ctx in ours:
            row["ours_tokens_per_s_over_peer"] = row["ms_per_step"] / ours[ctx]["ms_per_step"]
        elif batch == 16 and "batch16_ctx16k" in res:
            b16 = res["batch16_ctx16k"]
            row["ours_tokens_per_s_over_peer"] = row["ms_per_step"] / b16["ms_per_step"]
            row["ours_peak_over_peer"] = (b16["peak_gib"] or 0) / row["peak_gib"] if row["peak_gib"] else None
        print(f"peer transformers {transformers.__version__} Qwen2-1.5B static cache, batch {batch} x {ctx}: "
              f"{row['ms_per_step']:.3f} ms/step (first call {row['first_call_s']:.1f} s, peak "
              f"{row['peak_gib'] or 0:.2f} GiB); ours {row.get('ours_tokens_per_s_over_peer', float('nan')):.2f}x "
              "its tokens/s", flush=True)
        save()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1.5b")
    ap.add_argument("--ctx", nargs="+", type=int, default=[1024, 16384, 65536])
    ap.add_argument("--new", type=int, default=129, help="tokens per timed call (per-token time: new vs 1)")
    ap.add_argument("--new-eager", type=int, default=17)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--b16-ctx", type=int, default=16384, help="context of the batch-16 row (0: skip)")
    ap.add_argument("--new-b16", type=int, default=33)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--step", default="auto", choices=KERNELS, help="the fused step's kernels (generation.step)")
    ap.add_argument("--compare-step", nargs="*", choices=KERNELS, default=[],
                    help="also time batch 1 at the first context with these steps (e.g. torch triton)")
    ap.add_argument("--gemv-max-batch", type=int, default=FastOptions.gemv_max_batch,
                    help="generation.gemv_max_batch: batches up to this size take the fused GEMV kernels")
    ap.add_argument("--compare-gemv", nargs="*", type=int, default=[],
                    help="also time batch 1 at the first context with these gemv_max_batch values (e.g. 0)")
    ap.add_argument("--compile", action="store_true", help="also the torch.compile'd fused step")
    ap.add_argument("--ttft-compile", action="store_true",
                    help="last, time to first token again with the blocks torch.compile'd (backbone.compile)")
    ap.add_argument("--peer", action="store_true", help="also transformers' Qwen2-1.5B with a static cache")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/generate_api.json)")
    args = ap.parse_args(argv)
    if min(args.new, args.new_eager) < 3:
        ap.error("--new and --new-eager must be >= 3 (ms/token is the difference of n and 2 tokens)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:
        args.size, args.ctx, args.new, args.new_eager, args.batch, args.reps = "tiny", [64, 128], 4, 3, 3, 1
        args.b16_ctx, args.new_b16 = 100, 3
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    env = common.environment()
    ceilings = common.measure_ceilings(device)
    print(f"{env.get('gpu')} torch {env['torch']}; ceilings {ceilings}", flush=True)
    res = {"bench": "generate_api", "env": env, "ceilings": ceilings, "args": vars(args)}
    out = args.out or common.default_out("generate_api.json")

    def save():
        common.write_json(out, res)

    run_ours(args, device, dtype, ceilings["copy_GBps"], res, save)
    if args.peer:
        common.free_memory()
        run_peer(args, device, res, save)
    save()
    return res


if __name__ == "__main__":
    main()
