"""Training throughput of ModRWKV against a Transformer MLLM of the same size, one GPU, one process.

    python bench/train_throughput.py [--sizes 0.4b 1.5b] [--ctx 2048 8192 16384] [--compile] [--out r.json]
    python bench/train_throughput.py --smoke            # CPU, tiny sizes, seconds: checks the script runs
    python bench/train_throughput.py --compile --fused-mix off on   # RWKV-7 without and with the fused token mix

One step = forward + backward + fused AdamW on a packed batch of ``--tokens`` tokens (rows of ``ctx`` tokens, each
"\\x16User: " + 576 image tokens from the frozen SigLIP2-B/16-384 tower through the MLP adapter + text; labels on
the text). Both models run through the same `ModRWKV` wrapper (encoder, adapter, loss, LM head on labelled positions
only); the Transformer gets each row as its own causal sequence (flash attention), RWKV-7 the packed row with
cu_seqlens (its state restarts at each sample), as training does.

Reported per (model, size, context): median step time, tokens/s, model FLOPs (see `common.train_step_flops`:
6 x matmul weights x tokens for the trained parts + 3 x the sequence-mixing term, encoder forward only), MFU against
the H100's dense bf16 peak (989 TFLOP/s) and against the matrix product rate measured in the same run, peak memory.
If a step runs out of memory it is retried with less activation memory (recorded as "ckpt": none, then for RWKV-7
"proj" = recompute the token-shift/LoRA projections only, then "block" = whole-block gradient checkpointing).
Precision: "bf16" keeps parameters and AdamW state in bf16 (default, as fast as the hardware allows for both
models); "bf16-mixed" keeps fp32 parameters under bf16 autocast (what conf/trainer/gpu.yaml trains with).
"""

from __future__ import annotations

import argparse
import contextlib
import traceback

import common
import torch

from modrwkv.backbone.model import RWKV7


def make_optimizer(model, device):
    params = [p for p in model.parameters() if p.requires_grad]
    fused = torch.device(device).type == "cuda"
    return torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, fused=fused)


@contextlib.contextmanager
def checkpoint_mode(model, mode: str):
    """Activation memory policy for one configuration.

    none:  keep every activation.
    proj:  RWKV-7 only: recompute TimeMix._projections (the token-shift mixes, r/k/v, the LoRAs and their many
           elementwise intermediates: about half of a layer's saved tensors) in the backward, keep the rest; costs
           roughly the r/k/v and LoRA products again, about a tenth of the step.
    block: recompute every block from its input (the backbone's grad_checkpointing): about a third more compute.
    """
    from torch.utils.checkpoint import checkpoint

    from modrwkv.backbone.layers import TimeMix

    original = TimeMix._projections
    if mode == "proj":
        def projections(self, *args):
            return checkpoint(original, self, *args, use_reentrant=False)

        TimeMix._projections = projections
    model.backbone.grad_checkpointing = mode == "block"
    try:
        yield
    finally:
        TimeMix._projections = original
        model.backbone.grad_checkpointing = False


def run_config(model, opt, batch, ctx, args, device, first_mode: str = "none") -> dict:
    """Time one (model, context) configuration; on OOM retries with less activation memory (checkpoint_mode)."""
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if args.precision == "bf16-mixed" and
                torch.device(device).type == "cuda" else contextlib.nullcontext())

    losses = []

    def step():
        with autocast:
            loss = model(batch)["loss"]
        losses.append(loss.detach())  # read after timing (no sync inside the timed steps)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    flops = common.train_step_flops(model, batch, ctx)
    row = {"ctx": ctx, "rows": batch["cu_seqlens"].numel() - 1, "tokens": flops["tokens"]}
    if args.ckpt != "auto":
        modes = [args.ckpt]
    else:
        # "proj" recomputes the unfused TimeMix._projections: the fused token mix recomputes its mixes already
        rwkv_proj = isinstance(model.backbone, RWKV7) and not model.backbone.fused_mix
        modes = ["none", "proj", "block"] if rwkv_proj else ["none", "block"]
        # the same number of tokens per step at every context: start where the previous context fitted
        modes = modes[modes.index(first_mode):] if first_mode in modes else modes
    t = None
    for mode in modes:
        row["ckpt"] = mode
        common.reset_peak(device)
        try:
            with checkpoint_mode(model, mode):
                t = common.time_fn(step, device, warmup=args.warmup, iters=args.iters)
        except torch.OutOfMemoryError:
            print(f"   OOM at ctx {ctx} (checkpointing: {mode})", flush=True)
        if t is not None:
            break
        # outside the except block, so the traceback's frames (holding activations) are gone before freeing
        opt.zero_grad(set_to_none=True)
        common.free_memory()
    if t is None:
        row["error"] = "OOM"
        return row
    if args.profile and torch.device(device).type == "cuda":
        from profile_step import print_profile, profile_steps

        with checkpoint_mode(model, row["ckpt"]):
            row["profile"] = profile_steps(step, steps=args.profile)
        print_profile(row["profile"], f"{type(model.backbone).__name__} ctx {ctx} ckpt {row['ckpt']}")
    row.update(first_loss=float(losses[0]), loss=float(losses[-1]))
    if not all(bool(torch.isfinite(x)) for x in losses):
        row["error"] = "non-finite loss"
    sec = t["median_ms"] / 1e3
    row.update(step_ms=t["median_ms"], step_ms_all=t["times_ms"], tokens_per_s=flops["tokens"] / sec,
               tflops=flops["total"] / sec / 1e12, mfu=flops["total"] / sec / 1e12 / common.H100_BF16_DENSE_TFLOPS,
               peak_gib=common.peak_gib(device), flops=flops)
    if args.matmul_tflops:
        row["mfu_vs_measured_matmul"] = row["tflops"] / args.matmul_tflops
    return row


def bench_model(arch, size, args, device, dtype, rows: list, save, fused_mix: bool = False,
                recompute: bool = False) -> None:
    """Build one model (and its optimizer) once, then time every context; appends to ``rows``, calls ``save()``
    after each (a stage cut short by its time limit keeps what it measured). ``fused_mix``, ``recompute``: RWKV-7's
    options fused_mix and recompute_elementwise."""
    common.free_memory()
    model = common.build_mllm(arch, size, device, dtype, tiny_encoder=args.smoke, kv_heads=args.kv_heads)
    if arch == "rwkv":
        model.backbone.fused_mix = fused_mix
        model.backbone.recompute_elementwise = recompute
    model.train()
    opt = make_optimizer(model, device)
    n_params = sum(p.numel() for p in model.backbone.parameters())
    eager_loss = None
    first_mode = "none"
    for ctx in args.ctx:
        n_rows = max(1, args.tokens // ctx)
        batch = common.synthetic_batch(n_rows, ctx, model.encoder.num_tokens, model.encoder.image_size,
                                       model.backbone.config.vocab_size, device, dtype)
        if args.compile and eager_loss is None:
            # the compiled blocks must compute what the eager ones do: the first compiled step's loss (before any
            # optimizer update) against an eager forward on the same batch and weights
            if arch == "rwkv":  # the product path: RWKV7.compile_blocks (Inductor settings it needs included)
                model.backbone.compile_blocks(backend=common.compile_backend())
            else:
                common.compile_blocks("transformer", "forward")
            with torch.no_grad(), torch.compiler.set_stance("force_eager"):
                eager_loss = float(model(batch)["loss"])
            check_pending = True
        try:
            row = run_config(model, opt, batch, ctx, args, device, first_mode)
            first_mode = row.get("ckpt", first_mode) if "step_ms" in row else first_mode
            if args.compile and check_pending and "first_loss" in row:
                rel = abs(row["first_loss"] - eager_loss) / abs(eager_loss)
                row["compile_check_rel"] = rel
                print(f"{'PASS' if rel <= 2e-2 else 'FAIL'}  train_compiled_{arch}_{size}  "
                      f"loss {row['first_loss']:.5f} vs eager {eager_loss:.5f} (rel {rel:.2e}, tol 2e-2)", flush=True)
            check_pending = False
        except Exception as e:  # record and go on: one broken configuration must not cost the others
            traceback.print_exc()
            row = {"ctx": ctx, "error": f"{type(e).__name__}: {e}"[:500]}
            opt.zero_grad(set_to_none=True)
        row.update(model=arch, size=size, backbone_params=n_params, compile=args.compile, precision=args.precision,
                   memory_budget=args.memory_budget, wkv_seqpar=args.wkv_seqpar,
                   fused_mix=fused_mix if arch == "rwkv" else None,
                   recompute_elementwise=recompute if arch == "rwkv" else None)
        rows.append(row)
        save()
        tag = f"{size:5s} ctx {ctx:6d}" + (" fused" if fused_mix else "") + (" recompute" if recompute else "")
        print(f"   {arch:11s} {tag}: " + (f"{row['tokens_per_s']:.0f} tok/s, MFU {row['mfu']:.3f}, "
              f"peak {row['peak_gib'] or 0:.1f} GiB, ckpt {row['ckpt']}" if "tokens_per_s" in row else
              row.get("error", "?")), flush=True)
        del batch
    del model, opt
    common.free_memory()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["0.4b", "1.5b"])
    ap.add_argument("--ctx", nargs="+", type=int, default=[2048, 8192, 16384])
    ap.add_argument("--tokens", type=int, default=16384, help="tokens per step (rows = tokens // ctx)")
    ap.add_argument("--models", nargs="+", default=["rwkv", "transformer"], choices=["rwkv", "transformer"])
    ap.add_argument("--precision", default="bf16", choices=["bf16", "bf16-mixed"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the blocks (WKV-7 kernel stays eager)")
    ap.add_argument("--ckpt", default="auto", choices=["auto", "none", "proj", "block"],
                    help="activation checkpointing (auto: none, then less memory on OOM; see checkpoint_mode)")
    ap.add_argument("--kv-heads", type=int, default=None, help="Transformer KV heads (default: MHA)")
    ap.add_argument("--wkv-seqpar", default=None, choices=["off", "on", "auto"],
                    help="WKV-7 Triton forward and state-gradient pass: sequential (off), sequence-parallel (on, "
                    "triton_seqpar.py) or chosen per shape (auto, the default)")
    ap.add_argument("--fused-mix", nargs="+", default=["off"], choices=["off", "on"],
                    help="RWKV-7's fused token shift + mixes (backbone fused_mix; recomputes the mixes in the "
                    "backward): off, on, or both (off on: one model each, timed in the same run)")
    ap.add_argument("--recompute", nargs="+", default=["off"], choices=["off", "on"],
                    help="RWKV-7's recompute_elementwise (backbone option: the blocks' elementwise stretches keep only "
                         "their inputs for the backward); 'off on' times both, one model each")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="after timing, profile STEPS steps and print GPU time by kernel category (CUDA only)")
    ap.add_argument("--memory-budget", type=float, default=None,
                    help="with --compile: torch._functorch activation_memory_budget (0..1, the partitioner "
                         "recomputes the cheapest activations to save this fraction of the memory)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="CPU (or GPU if present), tiny sizes, one timed step")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/train_throughput.json)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.wkv_seqpar is not None and device == "cuda":
        from modrwkv.kernels.triton_chunk import CONFIG

        CONFIG["SEQPAR"] = args.wkv_seqpar
    if args.memory_budget is not None:
        import torch._functorch.config as functorch_config

        functorch_config.activation_memory_budget = args.memory_budget
    if args.smoke:
        args.sizes, args.ctx, args.tokens, args.warmup, args.iters = ["tiny"], [64], 128, 1, 1
    dtype = torch.float32 if (args.precision == "bf16-mixed" or device == "cpu") else torch.bfloat16
    env = common.environment()
    ceilings = common.measure_ceilings(device)
    args.matmul_tflops = ceilings["matmul_TFLOPs"]
    print(f"{env.get('gpu')} torch {env['torch']} triton {env['triton']}; ceilings {ceilings}", flush=True)
    rows = []
    result = {"bench": "train_throughput", "env": env, "ceilings": ceilings, "args": vars(args), "rows": rows}
    out = args.out or common.default_out("train_throughput" + ("_compile" if args.compile else "") + ".json")

    def save():
        # speed-up of RWKV over the Transformer at each (size, ctx) measured so far
        by = {(r["model"], r["size"], r["ctx"]): r for r in rows}
        for r in rows:
            other = by.get(("transformer", r["size"], r["ctx"]))
            if r["model"] == "rwkv" and other and "tokens_per_s" in r and "tokens_per_s" in other:
                r["speedup_vs_transformer"] = r["tokens_per_s"] / other["tokens_per_s"]
        common.write_json(out, result)

    for size in args.sizes:
        for arch in args.models:
            variants = [(f, r) for f in args.fused_mix for r in args.recompute] if arch == "rwkv" else [("off", "off")]
            for fused, recompute in variants:
                bench_model(arch, size, args, device, dtype, rows, save, fused_mix=fused == "on",
                            recompute=recompute == "on")
    save()
    common.print_table(rows, ["model", "size", "ctx", "fused_mix", "recompute_elementwise", "rows", "ckpt", "step_ms",
                              "tokens_per_s", "mfu",
                              "peak_gib", "speedup_vs_transformer", "error"],
                       f"training step, {args.precision}, compile={args.compile}, {env.get('gpu') or 'cpu'}")
    return result


if __name__ == "__main__":
    main()
