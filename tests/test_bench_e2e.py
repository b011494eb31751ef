"""The end-to-end benches (bench/): their smoke modes run on the CPU, and what they count is right.

The device numbers come from bench/run_device_e2e.sh; these tests only keep the scripts from rotting (tiny sizes).
"""

import common
import pytest
import torch
from transformer_baseline import TransformerConfig, TransformerLM, rwkv_param_count

from modrwkv.backbone.config import RWKV7Config
from modrwkv.backbone.model import RWKV7


@pytest.mark.parametrize("size", ["0.4b", "1.5b"])
def test_transformer_matches_rwkv_width_depth_and_params(size):
    cfg = RWKV7Config.from_name(size)
    with torch.device("meta"):
        rwkv = RWKV7(cfg)
        tf = TransformerLM(TransformerConfig.matched_to(cfg))
    n_rwkv = sum(p.numel() for p in rwkv.parameters())
    n_tf = sum(p.numel() for p in tf.parameters())
    assert n_rwkv == rwkv_param_count(cfg)
    assert (tf.config.n_layer, tf.config.n_embd, tf.config.vocab_size) == (cfg.n_layer, cfg.n_embd, cfg.vocab_size)
    assert abs(n_tf / n_rwkv - 1) < 0.005


def test_bench_vision_tower_has_siglip2_b16_384_shape():
    """The timm tower the benches use is the one open_clip builds for ViT-B-16-SigLIP2-384 (same parameter shapes)."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config("ViT-B-16-SigLIP2-384")
    with torch.device("meta"):
        ours = common.BenchVisionTower()
        theirs = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])
    shapes = {n: p.shape for n, p in ours.trunk.named_parameters()}
    assert shapes == {n[len("trunk."):]: p.shape for n, p in theirs.named_parameters() if n.startswith("trunk.")}
    assert (ours.num_tokens, ours.out_dim, ours.image_size) == (576, 768, 384)


def test_transformer_packed_rows_and_kv_cache_equal_parallel():
    torch.manual_seed(0)
    cfg = TransformerConfig(n_layer=2, n_embd=64, n_head=2, n_kv_head=1, head_dim=32, ffn_dim=96, vocab_size=50)
    model = TransformerLM(cfg).double()
    ids = torch.randint(0, 50, (2, 12))
    par = model(ids)
    cu = torch.tensor([0, 12, 24])
    packed = model(ids.reshape(1, -1), cu_seqlens=cu).view_as(par)
    torch.testing.assert_close(packed, par)
    uneven = model(ids.reshape(1, -1)[:, :20], cu_seqlens=torch.tensor([0, 12, 20]))
    torch.testing.assert_close(uneven[0, 12:], model(ids[1:, :8])[0])
    cache = model.new_cache(2, 16)
    outs = [model.prefill(model.embed(ids[:, :5]), cache)]
    outs += [model.decode_step(ids[:, t], cache) for t in range(5, 11)]
    torch.testing.assert_close(torch.stack(outs, 1), par[:, 4:11])


def test_train_flops_count_the_labelled_head_and_both_sequence_mixers():
    model = common.build_mllm("rwkv", "tiny", "cpu", torch.float32, tiny_encoder=True)
    batch = common.synthetic_batch(2, 64, model.encoder.num_tokens, model.encoder.image_size, 1024, "cpu",
                                   torch.float32)
    f = common.train_step_flops(model, batch, 64)
    cfg = model.backbone.config
    # every text token after the image is a label, predicted from the position before it (7 prefix, 16 image tokens)
    assert f["labelled"] == 2 * (64 - 7 - 16)
    assert f["head"] == 6 * cfg.vocab_size * cfg.n_embd * f["labelled"]
    assert f["sequence_mixing"] == 3 * cfg.n_layer * cfg.n_head * 8 * 64**2 * 128
    assert f["total"] == sum(f[k] for k in ("blocks", "head", "sequence_mixing", "encoder", "adapter"))


def test_smoke_runs(tmp_path):
    """Every bench's --smoke mode on the CPU (tiny models, a step or two): the scripts run and write JSON."""
    import check_e2e
    import decode
    import modality_tokens
    import train_throughput

    assert check_e2e.main(["--smoke", "--out", str(tmp_path / "c.json")]) == 0
    res = train_throughput.main(["--smoke", "--out", str(tmp_path / "t.json"), "--iters", "1"])
    assert all("tokens_per_s" in r for r in res["rows"]) and len(res["rows"]) == 2
    res = decode.main(["--smoke", "--out", str(tmp_path / "d.json")])
    assert all("decode_ms" in r for r in res["rows"])
    res = modality_tokens.main(["--smoke", "--out", str(tmp_path / "m.json"), "--models", "rwkv"])
    assert [r["modality_tokens"] for r in res["rows"]] == [16, 7, 5, 3]
    assert all(p.exists() for p in (tmp_path / n for n in ("c.json", "t.json", "d.json", "m.json")))


def test_fused_decoder_equals_step_fp64():
    """FusedDecoder (stacked weights, padded LoRA ranks, in-place state) computes RWKV7.step exactly (fp64)."""
    from modrwkv.backbone.fused import FusedDecoder

    cfg = RWKV7Config(n_layer=3, n_embd=128, head_size=64, vocab_size=300, dim_w_lora=16, dim_a_lora=24,
                      dim_v_lora=8, dim_g_lora=32)
    model = RWKV7(cfg).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    ids = torch.randint(0, cfg.vocab_size, (2, 7))
    fused, ref, state = FusedDecoder(model), None, model.empty_state(2)
    for t in range(ids.shape[1]):
        want, ref = model.step(ids[:, t], state=ref)
        torch.testing.assert_close(fused.step_(ids[:, t], state), want, rtol=1e-10, atol=1e-10)
    for a, b in zip((state.att_shift, state.wkv, state.ffn_shift), (ref.att_shift, ref.wkv, ref.ffn_shift)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_projection_checkpointing_keeps_gradients():
    """train_throughput's "proj" activation policy recomputes TimeMix._projections: same loss and gradients."""
    import train_throughput

    model = common.build_mllm("rwkv", "tiny", "cpu", torch.float64, tiny_encoder=True)
    batch = common.synthetic_batch(2, 48, model.encoder.num_tokens, model.encoder.image_size, 1024, "cpu",
                                   torch.float64)
    grads = []
    for mode in ("none", "proj"):
        model.zero_grad(set_to_none=True)
        with train_throughput.checkpoint_mode(model, mode):
            model(batch)["loss"].backward()
        grads.append([p.grad.clone() for p in model.backbone.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
