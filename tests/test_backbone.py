"""RWKV-7 backbone: matches the `rwkv` package's x070 model, parallel == recurrent, checkpoint formats, sizes."""

import os
import random

import pytest
import torch

from modrwkv.backbone import RWKV7, RWKV7Config

os.environ["RWKV_V7_ON"] = "1"  # before anything imports rwkv.model: selects its x070 implementation
from modrwkv.backbone.checkpoint import infer_config


def random_model(cfg: RWKV7Config, dtype=torch.float64, scale=0.2) -> RWKV7:
    """A model with every parameter perturbed, so that no zero-initialised path hides a bug."""
    model = RWKV7(cfg).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


SMALL = RWKV7Config(n_layer=3, n_embd=128, head_size=64, vocab_size=1000, dim_w_lora=16, dim_a_lora=16,
                    dim_v_lora=8, dim_g_lora=32)


def test_parallel_equals_recurrent_fp64():
    model = random_model(SMALL)
    ids = torch.randint(0, SMALL.vocab_size, (2, 23))
    logits, state = model(ids, return_state=True)
    s, outs = None, []
    for t in range(ids.shape[1]):
        out, s = model.step(ids[:, t], state=s)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), logits, rtol=1e-9, atol=1e-9)
    for a, b in zip((s.att_shift, s.wkv, s.ffn_shift), (state.att_shift, state.wkv, state.ffn_shift)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_parallel_from_carried_state_equals_recurrent():
    model = random_model(SMALL)
    ids = torch.randint(0, SMALL.vocab_size, (2, 30))
    _, prefix_state = model(ids[:, :11], return_state=True)
    logits, _ = model(ids[:, 11:], state=prefix_state.clone(), return_state=True)
    s, outs = prefix_state.clone(), []
    for t in range(11, 30):
        out, s = model.step(ids[:, t], state=s)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), logits, rtol=1e-9, atol=1e-9)


def test_packed_varlen_equals_one_by_one():
    model = random_model(SMALL)
    lengths = [5, 17, 1, 9]
    seqs = [torch.randint(0, SMALL.vocab_size, (1, n)) for n in lengths]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    packed, state = model(torch.cat(seqs, 1), cu_seqlens=cu, return_state=True)
    for i, seq in enumerate(seqs):
        single, s_i = model(seq, return_state=True)
        torch.testing.assert_close(packed[:, cu[i] : cu[i + 1]], single, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(state.wkv[:, i], s_i.wkv[:, 0], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(state.att_shift[:, i], s_i.att_shift[:, 0])


def test_inputs_embeds_equals_input_ids():
    model = random_model(SMALL)
    ids = torch.randint(0, SMALL.vocab_size, (1, 9))
    torch.testing.assert_close(model(inputs_embeds=model.embed(ids)), model(ids))


def _rwkv_pkg_logits(path: str, ids: list[int]) -> torch.Tensor:
    os.environ["RWKV_V7_ON"] = "1"
    os.environ.setdefault("RWKV_JIT_ON", "0")
    os.environ.setdefault("RWKV_CUDA_ON", "0")
    from rwkv.model import RWKV

    ref = RWKV(model=path.removesuffix(".pth"), strategy="cpu fp32")  # the x070 loader appends ".pth" itself
    logits, _ = ref.forward(ids, None, full_output=True)
    return logits.float()


@pytest.mark.slow
def test_logits_match_rwkv_package(tmp_path):
    """A BlinkDL-format checkpoint with random weights gives the rwkv package's x070 logits (fp32, rel err <= 1e-4)."""
    cfg = RWKV7Config(n_layer=3, n_embd=128, head_size=64, vocab_size=65536, dim_w_lora=32, dim_a_lora=32,
                      dim_v_lora=16, dim_g_lora=32)
    model = random_model(cfg, dtype=torch.float32, scale=0.1)
    path = tmp_path / "rwkv7-test.pth"
    torch.save({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, path)  # released files are bf16
    ids = [random.Random(0).randrange(65530) for _ in range(40)]
    ref = _rwkv_pkg_logits(str(path), ids)
    ours = RWKV7.from_checkpoint(path, dtype=torch.float32)
    with torch.no_grad():
        out = ours(torch.tensor([ids]))[0]
    rel = ((out - ref).norm() / ref.norm()).item()
    assert ref.abs().max() > 1.0  # a real comparison, not of two near-zero outputs
    assert rel <= 1e-4, rel


@pytest.mark.parametrize("fmt", ["blinkdl", "hf"])
def test_checkpoint_round_trip(tmp_path, fmt):
    model = random_model(SMALL, dtype=torch.float32)
    path = tmp_path / ("m.pth" if fmt == "blinkdl" else "m_hf")
    model.save_checkpoint(path, format=fmt)
    loaded = RWKV7.from_checkpoint(path)
    assert loaded.config == model.config
    sd, sd2 = model.state_dict(), loaded.state_dict()
    for k, t in sd.items():
        if fmt == "hf" and k.startswith("blocks.0.att.v"):  # fla drops layer 0's unused value LoRA
            continue
        assert torch.equal(sd2[k], t), k
    ids = torch.randint(0, SMALL.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))


def test_hf_names_follow_fla(tmp_path):
    from safetensors.torch import load_file

    model = random_model(SMALL, dtype=torch.float32)
    model.save_checkpoint(tmp_path / "hf", format="hf")
    sd = load_file(str(tmp_path / "hf" / "model.safetensors"))
    C = SMALL.n_embd
    assert sd["model.layers.1.attn.w_lora.lora.0.weight"].shape == (SMALL.dim_w_lora, C)
    assert sd["model.layers.1.attn.w_lora.lora.2.weight"].shape == (C, SMALL.dim_w_lora)
    assert sd["model.layers.1.attn.w_lora.lora.2.bias"].shape == (C,)
    assert sd["model.layers.1.attn.k_k"].shape == (C,)
    assert sd["model.layers.1.ffn.x_k"].shape == (C,)
    assert "model.layers.0.attn.v_lora.lora.0.weight" not in sd
    assert "model.layers.0.pre_norm.weight" in sd and "lm_head.weight" in sd
    torch.testing.assert_close(sd["model.layers.1.attn.w_lora.lora.0.weight"], model.blocks[1].att.w1.t())


def test_unknown_and_missing_keys_are_listed(tmp_path):
    model = random_model(SMALL, dtype=torch.float32)
    sd = model.state_dict()
    sd["blocks.0.ffn.s_emb.weight"] = torch.zeros(3, 3)  # a DeepEmbed extra
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="s_emb"):
        RWKV7.from_checkpoint(tmp_path / "extra.pth")
    sd = model.state_dict()
    del sd["blocks.1.att.k_a"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="blocks.1.att.k_a"):
        RWKV7.from_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        RWKV7.from_checkpoint(tmp_path / "nowhere.pth")


def test_config_inferred_from_shapes():
    model = random_model(SMALL, dtype=torch.float32)
    assert infer_config(model.state_dict()) == SMALL


@pytest.mark.parametrize("name,params", [("0.1b", 191e6), ("0.4b", 451e6), ("1.5b", 1.53e9), ("2.9b", 2.9e9)])
def test_released_sizes_build_on_meta(name, params):
    with torch.device("meta"):
        model = RWKV7(RWKV7Config.from_name(name))
    assert abs(model.num_parameters() - params) / params < 0.03, model.num_parameters()


def test_unknown_size_is_a_clear_error():
    with pytest.raises(ValueError, match="0.1b"):
        RWKV7Config.from_name("3b")
