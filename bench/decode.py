"""Prefill time, per-token decode latency and memory against context length: RWKV-7 (recurrent state) against the
Transformer baseline (KV cache), batch 1, random weights.

    python bench/decode.py [--size 1.5b] [--ctx 1024 ... 65536] [--compile] [--no-graph] [--out r.json]
    python bench/decode.py --smoke         # CPU, tiny sizes, seconds

For each context length: prefill ``ctx`` random tokens in parallel (timed; the LM head on the last position only),
then decode greedily from the resulting state/cache. The decode step is captured once in a CUDA graph with static
input, state and output buffers (RWKV-7: one graph for every context, the state has a fixed size; Transformer: one
graph per context, since the attended cache length is part of the graph) and replayed; the greedy token is fed back
inside the graph, so replays are real decoding. Latency = median over repeats of (time of ``--steps`` replays) /
steps. The floor: bytes a step must read (every weight once, the embedding table excepted; plus the RWKV-7 state read
and written, or the filled KV cache) over the copy bandwidth measured in the same run.
"""

from __future__ import annotations

import argparse
import traceback

import common
import torch
from transformer_baseline import KVCache, TransformerLM

from modrwkv.backbone.fused import FusedDecoder
from modrwkv.generation.fast import capture_graph


class GraphStepper:
    """One decoding step ``_step()`` run eagerly, or recorded once in a CUDA graph by ``capture()`` and replayed."""

    logits: torch.Tensor | None = None
    graph = None

    def _step(self) -> torch.Tensor:
        raise NotImplementedError

    def capture(self, warmup: int = 3) -> None:
        """Warm up on a side stream (Triton compilation, cuBLAS workspaces), then record one step. The warm-up
        steps advance any state: reload it afterwards."""
        self.graph = capture_graph(self._step, warmup)
        self.logits = self.graph.output

    def step(self) -> torch.Tensor:
        if self.graph is None:
            self.logits = self._step()
        else:
            self.graph.replay()
        return self.logits


class RecurrentDecoder(GraphStepper):
    """Greedy RWKV-7 decoding for N sequences with static buffers; ``capture()`` records one step in a CUDA graph.

    One step: logits = step(ids, state); state <- new state (in place); ids <- argmax(logits). ``fused``: the step
    of `modrwkv.backbone.fused.FusedDecoder` (stacked weights, in-place state; ``compile`` fuses its elementwise
    work with torch.compile), else `RWKV7.step` (then ``compile_blocks`` is what compiles it)."""

    def __init__(self, backbone, batch: int = 1, fused: bool = False, compile: bool = False):
        self.backbone = backbone
        device = backbone.emb.weight.device
        self.state = backbone.empty_state(batch, device)
        self.ids = torch.zeros(batch, dtype=torch.long, device=device)
        self.fused = (FusedDecoder(backbone, compile=compile, compile_backend=common.compile_backend())
                      if fused else None)
        self.logits = None
        self.graph = None

    def load(self, state, ids: torch.Tensor) -> None:
        """Copy a state (e.g. after prefill) and the next input ids into the static buffers."""
        for dst, src in zip((self.state.att_shift, self.state.wkv, self.state.ffn_shift),
                            (state.att_shift, state.wkv, state.ffn_shift)):
            dst.copy_(src)
        self.ids.copy_(ids)

    def _step(self) -> torch.Tensor:
        if self.fused is not None:
            logits = self.fused.step_(self.ids, self.state)
            self.ids.copy_(logits.argmax(-1))
            return logits
        logits, new = self.backbone.step(self.ids, state=self.state)
        # all layers have read the old state by now: overwrite it in place (static addresses for the graph)
        self.state.att_shift.copy_(new.att_shift)
        self.state.wkv.copy_(new.wkv)
        self.state.ffn_shift.copy_(new.ffn_shift)
        self.ids.copy_(logits.argmax(-1))
        return logits

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.state.att_shift, self.state.wkv, self.state.ffn_shift))


class KVDecoder(GraphStepper):
    """Greedy Transformer decoding at a fixed position ``pos`` (the cache holds ``pos`` tokens): one step writes the
    token's key/value at ``pos`` and attends over [0, pos]. Replaying it re-decodes that position, which is what a
    latency measurement at context ``pos`` needs; ``capture()`` records it in a CUDA graph."""

    def __init__(self, backbone: TransformerLM, cache: KVCache, pos: int, batch: int = 1):
        self.backbone, self.cache, self.pos = backbone, cache, pos
        self.ids = torch.zeros(batch, dtype=torch.long, device=backbone.emb.weight.device)
        backbone.rope(pos + 1)  # grow the RoPE table now: no allocation that outlives the capture
        self.logits = None
        self.graph = None

    def _step(self) -> torch.Tensor:
        logits = self.backbone.decode_step(self.ids, self.cache, pos=self.pos)
        self.ids.copy_(logits.argmax(-1))
        return logits


def per_token_ms(decoder, device, steps: int, repeats: int) -> dict:
    """Median over ``repeats`` of the time of ``steps`` consecutive decode steps, divided by ``steps``."""
    t = common.time_fn(lambda: [decoder.step() for _ in range(steps)], device, warmup=1, iters=repeats)
    return {"ms": t["median_ms"] / steps, "min_ms": t["min_ms"] / steps}


@torch.no_grad()
def bench_rwkv(backbone, args, device, bw, sink, info) -> None:
    """The main variant (fused step unless --no-fused) at every context; with --compare-plain also the plain
    `RWKV7.step` graph at the first and last context (the before/after of the fusion). Rows go to ``sink``."""
    use_graph = device == "cuda" and not args.no_graph
    fused = not args.no_fused
    if args.compile and not fused:
        common.compile_blocks("rwkv", "step")
    dec = RecurrentDecoder(backbone, fused=fused, compile=args.compile)
    info["step_check_rel"] = check_rwkv_decoder(backbone, dec, device, args.compile)
    _rwkv_variant(backbone, dec, args.ctx, args, device, bw, use_graph, sink)
    if args.compare_plain and fused:
        dec = None
        common.free_memory()
        plain = RecurrentDecoder(backbone, fused=False)
        _rwkv_variant(backbone, plain, sorted({args.ctx[0], args.ctx[-1]}), args, device, bw, use_graph, sink)


@torch.no_grad()
def check_rwkv_decoder(backbone, dec, device, compiled: bool, tokens: int = 4) -> float:
    """The decoder's step (fused and/or compiled) against the eager `RWKV7.step` on the real model: a 16-token
    prefix, then ``tokens`` steps from copies of its state; max relative error of the logits (also a warm-up)."""
    gen = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(257, backbone.config.vocab_size - 7, (1, 16 + tokens), generator=gen).to(device)
    _, state = backbone(ids[:, :16], return_state=True)
    ref_state, errs = state.clone(), []
    for t in range(16, 16 + tokens):
        with torch.compiler.set_stance("force_eager"):
            ref, ref_state = backbone.step(ids[:, t], state=ref_state)
        if dec.fused is not None:
            out = dec.fused.step_(ids[:, t], state)
        else:
            out, state = backbone.step(ids[:, t], state=state)
        errs.append(((out.double() - ref.double()).norm() / ref.double().norm()).item())
    err = max(errs)
    tag = ("fused" if dec.fused is not None else "plain") + ("_compiled" if compiled else "")
    print(f"{'PASS' if err <= 2e-2 else 'FAIL'}  decode_step_{tag} vs eager RWKV7.step: rel {err:.2e} (tol 2e-2)",
          flush=True)
    return err


def _rwkv_variant(backbone, dec, ctx_list, args, device, bw, use_graph, sink) -> None:
    if use_graph:
        dec.capture()
    weight_bytes = common.decode_weight_bytes(backbone)
    # the WKV state is read and written once per step; the shift states are tiny
    floor_bytes = weight_bytes + 2 * dec.state_bytes()
    gen = torch.Generator(device="cpu").manual_seed(0)
    fused = dec.fused is not None
    for ctx in ctx_list:
        row = {"model": "rwkv", "ctx": ctx, "graph": use_graph, "compile": args.compile and (fused or args.no_fused),
               "fused": fused}
        try:
            ids = torch.randint(257, backbone.config.vocab_size - 7, (1, ctx), generator=gen).to(device)
            emb = backbone.embed(ids)
            out = {}

            def prefill(emb=emb, out=out):
                hidden, out["state"] = backbone.forward_hidden(emb, return_state=True)
                out["logits"] = backbone.head(hidden[:, -1])

            common.reset_peak(device)
            t = common.time_fn(prefill, device, warmup=1, iters=args.prefill_iters)
            row.update(prefill_ms=t["median_ms"], prefill_tokens_per_s=ctx / t["median_ms"] * 1e3,
                       prefill_peak_gib=common.peak_gib(device))
            dec.load(out["state"], out["logits"].argmax(-1))
            del out
            common.reset_peak(device)
            lat = per_token_ms(dec, device, args.steps, args.repeats)
            row.update(decode_ms=lat["ms"], decode_min_ms=lat["min_ms"], decode_peak_gib=common.peak_gib(device),
                       state_mib=dec.state_bytes() / 2**20)
            if bw:
                row["floor_ms"] = floor_bytes / (bw * 1e9) * 1e3
                row["x_floor"] = row["decode_ms"] / row["floor_ms"]
            if args.eager_too and use_graph and ctx in (args.ctx[0], args.ctx[-1]):
                graph, dec.graph = dec.graph, None
                row["decode_eager_ms"] = per_token_ms(dec, device, min(args.steps, 8), 3)["ms"]
                dec.graph = graph
        except Exception as e:
            traceback.print_exc()
            row["error"] = f"{type(e).__name__}: {e}"[:500]
        sink(row)
        _print_row(row)
        common.free_memory()


@torch.no_grad()
def check_kv_decoder(backbone, device, tokens: int = 4) -> float:
    """(Compiled) KV-cache decode against the same steps forced eager: max relative error of the logits."""
    gen = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(257, backbone.config.vocab_size - 7, (1, 16 + tokens), generator=gen).to(device)
    outs = []
    for stance in ("force_eager", "default"):
        with torch.compiler.set_stance(stance):
            cache = backbone.new_cache(1, 16 + tokens)
            backbone.prefill(backbone.embed(ids[:, :16]), cache)
            outs.append([backbone.decode_step(ids[:, t], cache) for t in range(16, 16 + tokens)])
    err = max(((a.double() - b.double()).norm() / b.double().norm()).item() for a, b in zip(outs[1], outs[0]))
    print(f"{'PASS' if err <= 2e-2 else 'FAIL'}  decode_kv_compiled vs eager: rel {err:.2e} (tol 2e-2)", flush=True)
    return err


@torch.no_grad()
def bench_transformer(backbone, args, device, bw, sink, info) -> None:
    if args.compile:
        common.compile_blocks("transformer", "step")
        info["step_check_rel"] = check_kv_decoder(backbone, device)
    use_graph = device == "cuda" and not args.no_graph
    weight_bytes = common.decode_weight_bytes(backbone)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for ctx in args.ctx:
        row = {"model": "transformer", "ctx": ctx, "graph": use_graph, "compile": args.compile}
        cache = None
        try:
            common.free_memory()
            ids = torch.randint(257, backbone.config.vocab_size - 7, (1, ctx), generator=gen).to(device)
            emb = backbone.embed(ids)
            cache = backbone.new_cache(1, ctx + 8)
            out = {}

            def prefill(emb=emb, out=out, cache=cache):
                cache.length = 0
                out["logits"] = backbone.prefill(emb, cache)

            common.reset_peak(device)
            t = common.time_fn(prefill, device, warmup=1, iters=args.prefill_iters)
            row.update(prefill_ms=t["median_ms"], prefill_tokens_per_s=ctx / t["median_ms"] * 1e3,
                       prefill_peak_gib=common.peak_gib(device))
            dec = KVDecoder(backbone, cache, pos=ctx)
            dec.ids.copy_(out.pop("logits").argmax(-1))
            if use_graph:
                dec.capture()
            common.reset_peak(device)
            lat = per_token_ms(dec, device, args.steps, args.repeats)
            cache.length = ctx + 1
            row.update(decode_ms=lat["ms"], decode_min_ms=lat["min_ms"], decode_peak_gib=common.peak_gib(device),
                       state_mib=cache.bytes_used() / 2**20)
            if bw:
                row["floor_ms"] = (weight_bytes + cache.bytes_used()) / (bw * 1e9) * 1e3
                row["x_floor"] = row["decode_ms"] / row["floor_ms"]
            if args.eager_too and use_graph and ctx in (args.ctx[0], args.ctx[-1]):
                graph, dec.graph = dec.graph, None
                row["decode_eager_ms"] = per_token_ms(dec, device, min(args.steps, 8), 3)["ms"]
                dec.graph = graph
            del dec
        except Exception as e:
            traceback.print_exc()
            row["error"] = f"{type(e).__name__}: {e}"[:500]
        sink(row)
        _print_row(row)
        cache = None  # free the KV cache before the next (larger) one
        common.free_memory()


def _print_row(r):
    if "error" in r:
        print(f"   {r['model']:17s} ctx {r['ctx']:6d}: {r['error']}", flush=True)
        return
    tag = "" if r["model"] != "rwkv" else (" fused" if r.get("fused") else " plain")
    print(f"   {r['model'] + tag:17s} ctx {r['ctx']:6d}: prefill {r['prefill_ms']:.1f} ms, "
          f"decode {r['decode_ms']:.3f} ms/token (floor {r.get('floor_ms', 0):.3f}), "
          f"state/cache {r['state_mib']:.1f} MiB, "
          f"peak {r['decode_peak_gib'] or 0:.2f} GiB", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1.5b")
    ap.add_argument("--ctx", nargs="+", type=int, default=[1024, 2048, 4096, 8192, 16384, 32768, 65536])
    ap.add_argument("--models", nargs="+", default=["rwkv", "transformer"], choices=["rwkv", "transformer"])
    ap.add_argument("--kv-heads", type=int, default=None, help="Transformer KV heads (default: MHA)")
    ap.add_argument("--steps", type=int, default=32, help="decode steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prefill-iters", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch.compile the block step (then CUDA graph)")
    ap.add_argument("--no-graph", action="store_true", help="eager decode steps (no CUDA graph)")
    ap.add_argument("--no-fused", action="store_true", help="RWKV-7: RWKV7.step instead of the FusedDecoder step")
    ap.add_argument("--compare-plain", action="store_true",
                    help="also time RWKV7.step (unfused) at the first and last context")
    ap.add_argument("--eager-too", action="store_true", help="also time eager steps at the first and last context")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps (CPU in seconds)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/decode.json)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:
        args.size, args.ctx, args.steps, args.repeats, args.prefill_iters = "tiny", [16, 32], 2, 1, 1
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    env = common.environment()
    ceilings = common.measure_ceilings(device)
    bw = ceilings["copy_GBps"]
    print(f"{env.get('gpu')} torch {env['torch']}; ceilings {ceilings}", flush=True)
    rows, info = [], {}
    result = {"bench": "decode", "env": env, "ceilings": ceilings, "args": vars(args), "models": info, "rows": rows}
    out = args.out or common.default_out("decode" + ("_compile" if args.compile else "") + ".json")

    def sink(row):  # keep every row on disk as soon as it is measured (a stage cut short keeps its rows)
        rows.append(row)
        common.write_json(out, result)

    for arch in args.models:
        backbone = common.build_backbone(arch, args.size, device, dtype, kv_heads=args.kv_heads).eval()
        info[arch] = {"params": sum(p.numel() for p in backbone.parameters()),
                      "weight_bytes_per_step": common.decode_weight_bytes(backbone)}
        (bench_rwkv if arch == "rwkv" else bench_transformer)(backbone, args, device, bw, sink, info[arch])
        backbone = None
        common.free_memory()
    for arch in args.models:
        mine = [r for r in rows if r["model"] == arch and "decode_ms" in r and r.get("fused", True) != args.no_fused]
        if len(mine) > 1:
            info[arch]["decode_spread_last_vs_first"] = mine[-1]["decode_ms"] / mine[0]["decode_ms"]
    common.write_json(out, result)
    common.print_table(rows, ["model", "fused", "ctx", "prefill_ms", "decode_ms", "floor_ms", "x_floor",
                              "decode_eager_ms", "state_mib", "decode_peak_gib", "error"],
                       f"decode, batch 1, {args.size}, graph={device == 'cuda' and not args.no_graph}, "
                       f"compile={args.compile}, {env.get('gpu') or 'cpu'}")
    for arch, d in info.items():
        print(f"{arch}: {d}")
    return result


if __name__ == "__main__":
    main()
