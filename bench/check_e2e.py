"""Correctness checks the end-to-end benches rely on, run first on the device (seconds; exit code 1 on a failure).

    python bench/check_e2e.py [--compile]      # GPU: bf16/fp32 Triton paths against fp32 CPU references
    python bench/check_e2e.py --smoke          # CPU only: the same comparisons that need no GPU

Checks (relative error ||x - ref|| / ||ref||, fresh random inputs, random non-zero weights):
  rwkv_fwd_fp32      RWKV-7 logits, GPU fp32 Triton vs CPU fp32 chunked (packed varlen row)        <= 5e-3 (tf32 dots)
  rwkv_fwd_bf16      the same model in bf16 on the GPU vs the CPU fp32 reference                    <= 5e-2
  rwkv_grad_fp32     parameter gradients of a scalar loss, GPU fp32 vs CPU fp32                     <= 1e-2
  rwkv_step_bf16     recurrent decode (step by step) vs parallel forward, both GPU bf16             <= 5e-2
  rwkv_graph         CUDA-graph replay of the decode step vs the eager step, same state and input   <= 1e-3
  rwkv_fused_bf16    FusedDecoder (stacked weights, in-place state) vs RWKV7.step, logits and state  <= 2e-2
  tf_fwd_bf16        Transformer logits GPU bf16 vs CPU fp32; tf_cache: prefill + KV-cache decode vs
                     the parallel forward (bf16)                                                      <= 5e-2
  tf_graph           CUDA-graph KV decode vs eager                                                   <= 1e-3
  *_compiled         with --compile: compiled blocks (forward and step) vs eager                     <= 5e-2
"""

from __future__ import annotations

import argparse
import copy
import sys

import common
import torch
from decode import KVDecoder, RecurrentDecoder
from transformer_baseline import TransformerConfig, TransformerLM

from modrwkv.backbone.config import RWKV7Config
from modrwkv.backbone.model import RWKV7

CFG = RWKV7Config(n_layer=2, n_embd=256, head_size=64, vocab_size=1024, dim_w_lora=32, dim_a_lora=32,
                  dim_v_lora=32, dim_g_lora=64)
RESULTS: list[dict] = []


def rel(x, ref) -> float:
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(x).all():
        return float("inf")
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def record(name: str, err: float, tol: float) -> None:
    ok = err <= tol
    RESULTS.append({"check": name, "rel_err": err, "tol": tol, "ok": ok})
    print(f"{'PASS' if ok else 'FAIL'}  {name:22s} rel err {err:.3e}  (tol {tol:.0e})", flush=True)


@torch.no_grad()
def perturb_(model, scale: float = 0.05, seed: int = 0) -> None:
    """Random non-zero weights everywhere (RWKV-7's zero-initialised matrices would hide whole paths)."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(torch.randn(p.shape, generator=g).to(p) * scale)


def rwkv_checks(device, compile_too: bool) -> None:
    torch.manual_seed(0)
    ref = RWKV7(CFG, wkv_backend="chunk")
    perturb_(ref)
    lengths = [37, 100, 1, 62] if device == "cuda" else [7, 20, 1, 12]  # CPU: the naive recurrence is slow
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    ids = torch.randint(0, CFG.vocab_size, (1, sum(lengths)))
    ref_logits = ref(ids, cu_seqlens=cu)
    loss_ref = ref_logits.float().square().mean()
    loss_ref.backward()
    names = ["blocks.1.att.receptance.weight", "blocks.0.att.w1", "blocks.1.att.a2", "emb.weight",
             "blocks.1.ffn.key.weight"]
    ref_grads = {n: p.grad.clone() for n, p in ref.named_parameters() if n in names}
    if device != "cuda":
        # CPU: the chunked backend against the naive recurrence (same model), so the smoke run checks something
        naive = copy.deepcopy(ref)
        naive.wkv_backend = "naive"
        record("rwkv_chunk_vs_naive", rel(naive(ids, cu_seqlens=cu), ref_logits), 1e-4)
        fused_vs_step(ref, torch.randint(0, CFG.vocab_size, (2, 30)), "rwkv_fused_fp32", compile=False)
        return

    gpu = copy.deepcopy(ref).to(device)
    gpu.wkv_backend = "triton"
    gpu.zero_grad(set_to_none=True)
    logits = gpu(ids.to(device), cu_seqlens=cu.to(device))
    record("rwkv_fwd_fp32", rel(logits, ref_logits), 5e-3)
    logits.float().square().mean().backward()
    grads = dict(gpu.named_parameters())
    record("rwkv_grad_fp32", max(rel(grads[n].grad, ref_grads[n]) for n in names), 1e-2)

    bf = copy.deepcopy(ref).to(device=device, dtype=torch.bfloat16)
    bf.wkv_backend = "triton"
    with torch.no_grad():
        record("rwkv_fwd_bf16", rel(bf(ids.to(device), cu_seqlens=cu.to(device)), ref_logits), 5e-2)
        # recurrent == parallel on the GPU in bf16, 2 sequences of 40 tokens
        seq = torch.randint(0, CFG.vocab_size, (2, 40), device=device)
        par = bf(seq)
        state, outs = None, []
        for t in range(seq.shape[1]):
            out, state = bf.step(seq[:, t], state=state)
            outs.append(out)
        record("rwkv_step_bf16", rel(torch.stack(outs, 1), par), 5e-2)
        fused_vs_step(bf, seq, "rwkv_fused_bf16", compile=False)
        graph_vs_eager(lambda: RecurrentDecoder(bf, batch=2), seq, "rwkv_graph")
        graph_vs_eager(lambda: RecurrentDecoder(bf, batch=2, fused=True), seq, "rwkv_graph_fused")
    if compile_too:
        common.compile_blocks("rwkv", "forward")
        common.compile_blocks("rwkv", "step")
        with torch.no_grad():
            record("rwkv_fwd_compiled", rel(bf(ids.to(device), cu_seqlens=cu.to(device)), ref_logits), 5e-2)
            state, outs = None, []
            for t in range(seq.shape[1]):
                out, state = bf.step(seq[:, t], state=state)
                outs.append(out)
            record("rwkv_step_compiled", rel(torch.stack(outs, 1), par), 5e-2)
        # training path through the compiled blocks: gradients against the fp32 reference
        gpu.zero_grad(set_to_none=True)
        gpu(ids.to(device), cu_seqlens=cu.to(device)).float().square().mean().backward()
        grads = dict(gpu.named_parameters())
        record("rwkv_grad_compiled", max(rel(grads[n].grad, ref_grads[n]) for n in names), 1e-2)
        graph_vs_eager(lambda: RecurrentDecoder(bf, batch=2), seq, "rwkv_graph_compiled")
        fused_vs_step(bf, seq, "rwkv_fused_compiled", compile=True)
        graph_vs_eager(lambda: RecurrentDecoder(bf, batch=2, fused=True, compile=True), seq,
                       "rwkv_graph_fused_compiled")


@torch.no_grad()
def fused_vs_step(model, seq, name, compile: bool) -> None:
    """FusedDecoder.step_ (in-place state) against RWKV7.step from the same state, over several tokens."""
    from modrwkv.backbone.fused import FusedDecoder

    _, state = model(seq[:, :20], return_state=True)
    fused, ref_state, outs, refs = FusedDecoder(model, compile=compile), state.clone(), [], []
    for t in range(20, 30):
        outs.append(fused.step_(seq[:, t], state))
        out, ref_state = model.step(seq[:, t], state=ref_state)
        refs.append(out)
    record(name, max(rel(torch.stack(outs), torch.stack(refs)), rel(state.wkv, ref_state.wkv)), 2e-2)


@torch.no_grad()
def graph_vs_eager(make, seq, name) -> None:
    """Same state and input: a few eager steps vs a few graph replays of a RecurrentDecoder."""
    dec = make()
    _, state = dec.backbone(seq[:, :20], return_state=True)
    nxt = seq[:, 20]
    dec.load(state, nxt)
    eager = [dec.step().clone() for _ in range(3)]
    dec.capture()
    dec.load(state, nxt)
    replay = [dec.step().clone() for _ in range(3)]
    record(name, max(rel(a, b) for a, b in zip(replay, eager)), 1e-3)


def transformer_checks(device, compile_too: bool) -> None:
    torch.manual_seed(1)
    cfg = TransformerConfig(n_layer=2, n_embd=256, n_head=2, n_kv_head=2, head_dim=128, ffn_dim=640,
                            vocab_size=1024)
    ref = TransformerLM(cfg)
    ids = torch.randint(0, cfg.vocab_size, (2, 50))
    ref_logits = ref(ids)
    # KV-cache decode equals the parallel forward (CPU fp32 always; GPU bf16 below)
    model = ref if device != "cuda" else copy.deepcopy(ref).to(device=device, dtype=torch.bfloat16)
    tol = 1e-4 if device != "cuda" else 5e-2
    x = ids.to(device)
    with torch.no_grad():
        par = model(x)
        if device == "cuda":
            record("tf_fwd_bf16", rel(par, ref_logits), 5e-2)
            # packed equal-length rows == separate rows (the layout the training bench feeds)
            cu = torch.tensor([0, 50, 100], dtype=torch.int32, device=device)
            packed = model.head(model.forward_hidden(model.embed(x.reshape(1, -1)), cu)[0]).view_as(par)
            record("tf_packed_bf16", rel(packed, par), 1e-2)
        cache = model.new_cache(2, 64)
        outs = [model.prefill(model.embed(x[:, :30]), cache)]
        for t in range(30, 49):
            outs.append(model.decode_step(x[:, t], cache))
        record("tf_cache", rel(torch.stack(outs, 1), par[:, 29:49]), tol)
        if device != "cuda":
            return
        # graph vs eager at a fixed position
        cache = model.new_cache(2, 64)
        model.prefill(model.embed(x[:, :30]), cache)
        dec = KVDecoder(model, cache, pos=30, batch=2)
        dec.ids.copy_(x[:, 30])
        eager = dec.step().clone()
        dec.capture()
        dec.ids.copy_(x[:, 30])
        record("tf_graph", rel(dec.step(), eager), 1e-3)
        if compile_too:
            common.compile_blocks("transformer", "forward")
            common.compile_blocks("transformer", "step")
            record("tf_fwd_compiled", rel(model(x), ref_logits), 5e-2)
            cache = model.new_cache(2, 64)
            outs = [model.prefill(model.embed(x[:, :30]), cache)]
            for t in range(30, 49):
                outs.append(model.decode_step(x[:, t], cache))
            record("tf_cache_compiled", rel(torch.stack(outs, 1), par[:, 29:49]), 5e-2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compile", action="store_true", help="also check the torch.compile'd blocks")
    ap.add_argument("--smoke", action="store_true", help="CPU only")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/checks.json)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    for fn in (rwkv_checks, transformer_checks):
        try:
            fn(device, args.compile)
        except Exception as e:  # a crash is a failed check, and the other checks still run
            import traceback

            traceback.print_exc()
            RESULTS.append({"check": fn.__name__, "ok": False, "error": f"{type(e).__name__}: {e}"[:500]})
    common.write_json(args.out or common.default_out("checks.json"), {"env": common.environment(), "checks": RESULTS})
    failed = [r["check"] for r in RESULTS if not r["ok"]]
    print(f"checks: {len(RESULTS) - len(failed)}/{len(RESULTS)} passed" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
