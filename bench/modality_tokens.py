"""Figure 2 of the paper: inference time against the number of modality tokens (Conv1d token reduction, Table 7).

    python bench/modality_tokens.py [--size 1.5b] [--new-tokens 32] [--out r.json]
    python bench/modality_tokens.py --smoke     # CPU, tiny sizes, seconds

One image through the frozen SigLIP2-B/16-384 tower (576 patch tokens x 768), then the adapter: the MLP alone
(576 tokens) or Conv1d (k, s) = (3, 2), (4, 3), (5, 4) + MLP (287, 191, 143 tokens; the paper's 577-token CLIP
count gives 288, 192, 144). The prompt is the World chat format with the placeholders replaced by the adapter
output and a short question. Timed, batch 1:
  ttft_ms:    encoder + adapter + embedding + parallel prefill + LM head on the last position (time to first token)
  decode_ms:  per generated token (CUDA-graph step, as in bench/decode.py; Transformer: at the prompt's length)
  total_ms:   ttft_ms + new_tokens x decode_ms
for ModRWKV and for the same encoder + adapter on the Transformer baseline.
"""

from __future__ import annotations

import argparse
import traceback
from functools import partial

import common
import torch
from decode import KVDecoder, RecurrentDecoder, per_token_ms

from modrwkv.adapters import build_adapter

REDUCTIONS = [None, (3, 2), (4, 3), (5, 4)]  # None: the MLP adapter alone
QUESTION = "<image>\nWhat is shown in the picture? Answer in one sentence."


def make_adapters(model, device, dtype) -> dict:
    """One adapter per reduction (random weights; the MLP widths follow the encoder and backbone)."""
    out = {}
    for red in REDUCTIONS:
        with torch.device(device):
            if red is None:
                adp = build_adapter("mlp", model.encoder.out_dim, model.backbone.config.n_embd)
            else:
                adp = build_adapter("conv", model.encoder.out_dim, model.backbone.config.n_embd, kernel_size=red[0],
                                    stride=red[1])
        out[red] = adp.to(dtype).eval()
    return out


@torch.no_grad()
def bench_arch(arch, args, device, dtype) -> list[dict]:
    model = common.build_mllm(arch, args.size, device, dtype, tiny_encoder=args.smoke).eval()
    backbone = model.backbone
    adapters = make_adapters(model, device, dtype)
    image = torch.randn(1, 3, model.encoder.image_size, model.encoder.image_size, generator=torch.Generator()
                        .manual_seed(0)).to(device=device, dtype=dtype)
    use_graph = device == "cuda"
    rdec = None
    if arch == "rwkv":
        rdec = RecurrentDecoder(backbone, fused=True)
        if use_graph:
            rdec.capture()
    rows = []
    for red, adapter in adapters.items():
        model.adapter = adapter
        n_tok = model.num_modality_tokens(model.encoder.num_tokens)
        ids = torch.tensor(model.template.prompt_ids(QUESTION, "image", n_tok), device=device)[None]  # (1, T)
        row = {"model": arch, "reduction": "none" if red is None else f"conv{red[0]}{red[1]}", "modality_tokens": n_tok,
               "prompt_tokens": ids.shape[1]}
        try:
            cache = backbone.new_cache(1, ids.shape[1] + args.new_tokens + 8) if arch == "transformer" else None
            out = {}

            def first_token(ids=ids, cache=cache, out=out):
                mod = model.encode_modality(image)  # (n_tok, C)
                emb = model.embed_inputs(ids, mod)  # (1, T, C)
                if cache is None:
                    hidden, out["state"] = backbone.forward_hidden(emb, return_state=True)
                    out["logits"] = backbone.head(hidden[:, -1])
                else:
                    cache.length = 0
                    out["logits"] = backbone.prefill(emb, cache)

            t = common.time_fn(first_token, device, warmup=args.warmup, iters=args.iters)
            row.update(ttft_ms=t["median_ms"])
            enc = common.time_fn(partial(model.encode_modality, image), device, warmup=min(1, args.warmup),
                                 iters=args.iters)
            row.update(encoder_adapter_ms=enc["median_ms"])
            nxt = out["logits"].argmax(-1)
            if cache is None:
                rdec.load(out["state"], nxt)
                dec = rdec
            else:
                dec = KVDecoder(backbone, cache, pos=ids.shape[1])
                dec.ids.copy_(nxt)
                if use_graph:
                    dec.capture()
            row.update(decode_ms=per_token_ms(dec, device, args.new_tokens, args.repeats)["ms"])
            row["total_ms"] = row["ttft_ms"] + args.new_tokens * row["decode_ms"]
        except Exception as e:
            traceback.print_exc()
            row["error"] = f"{type(e).__name__}: {e}"[:500]
        rows.append(row)
        print(f"   {arch:11s} {row['reduction']:7s} {n_tok:4d} tokens: " +
              (f"ttft {row['ttft_ms']:.2f} ms, decode {row['decode_ms']:.3f} ms/token, total {row['total_ms']:.1f} ms"
               if "total_ms" in row else row.get("error", "?")), flush=True)
    model = adapters = rdec = None  # free before the next model is built
    common.free_memory()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1.5b")
    ap.add_argument("--models", nargs="+", default=["rwkv", "transformer"], choices=["rwkv", "transformer"])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CPU in seconds)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/modality_tokens.json)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:
        args.size, args.new_tokens, args.iters, args.repeats, args.warmup = "tiny", 2, 1, 1, 0
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    env = common.environment()
    rows = []
    for arch in args.models:
        rows += bench_arch(arch, args, device, dtype)
    result = {"bench": "modality_tokens", "env": env, "args": vars(args), "rows": rows}
    common.write_json(args.out or common.default_out("modality_tokens.json"), result)
    common.print_table(rows, ["model", "reduction", "modality_tokens", "prompt_tokens", "encoder_adapter_ms",
                              "ttft_ms", "decode_ms", "total_ms", "error"],
                       f"Figure 2: inference time vs modality tokens, {args.size}, {args.new_tokens} new tokens, "
                       f"{env.get('gpu') or 'cpu'}")
    return result


if __name__ == "__main__":
    main()
