"""ModRWKV.forward: packed batches give the loss of their samples run one by one, the loss covers exactly the
assistant tokens, widths are checked, and the freezing API sets what trains."""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from modrwkv.adapters import build_adapter
from modrwkv.backbone import RWKV7, RWKV7Config, WorldTokenizer
from modrwkv.data.chat import IGNORE_INDEX, ChatTemplate
from modrwkv.data.collate import PackedCollate
from modrwkv.encoders import build_encoder
from modrwkv.model import ModRWKV

TEMPLATE = ChatTemplate(WorldTokenizer())


@lru_cache
def _random_backbone(seed: int) -> RWKV7:
    """The tiny backbone with every weight perturbed: BlinkDL's init zeroes the block outputs, under which every
    position would see only its own token and modality tokens could not matter."""
    torch.manual_seed(seed)
    bb = RWKV7(RWKV7Config.from_name("tiny"))
    with torch.no_grad():
        for p in bb.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        bb.emb.weight.normal_()
    return bb


def random_backbone(seed: int = 0) -> RWKV7:
    return copy.deepcopy(_random_backbone(seed))  # built once (the 65536-row orthogonal head init is slow)


def build(encoder: str, adapter: str, dtype=torch.float64) -> ModRWKV:
    enc = build_encoder(encoder)
    bb = random_backbone()
    ad = build_adapter(adapter, enc.out_dim, bb.config.n_embd, scale=2)
    return ModRWKV(enc, ad, bb, TEMPLATE).to(dtype)


def samples(modality: str, n: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        if modality == "image":
            data = Image.fromarray(rng.integers(0, 256, (24 + 8 * i, 32, 3), dtype=np.uint8))
        elif modality == "audio":
            data = (rng.standard_normal(3000 + 4000 * i) * 0.1).astype(np.float32)
        else:
            data = rng.standard_normal(20 + 13 * i).astype(np.float32)
        conv = [{"role": "user", "content": f"<{modality}>\nQuestion {i}?"},
                {"role": "assistant", "content": "yes" * (i + 1)}]
        if i == 1:  # a multi-turn sample
            conv += [{"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "Quite sure."}]
        out.append({"__key__": str(i), "modality": modality, modality: data, "conversation": conv, "meta": {}})
    return out


@pytest.mark.parametrize("encoder,adapter", [("tiny-clip", "conv"), ("tiny-siglip", "mlp"),
                                             ("tiny-whisper", "audio_conv"), ("tiny-wavenet", "mlp")])
def test_packed_loss_equals_samples_one_by_one(encoder, adapter):
    model = build(encoder, adapter)
    collate = PackedCollate(TEMPLATE, model.encoder, model.adapter)
    data = samples(model.encoder.modality)
    packed = model(collate(data))
    losses, counts = [], []
    for s in data:
        out = model(collate([s]))
        losses.append(out["loss"])
        counts.append(out["num_tokens"])
    assert packed["num_tokens"] == sum(counts)
    expected = sum(loss * n for loss, n in zip(losses, counts)) / sum(counts)
    torch.testing.assert_close(packed["loss"], expected, rtol=1e-9, atol=1e-9)
    packed["loss"].backward()
    assert all(p.grad is not None for p in model.adapter.parameters())


def test_loss_is_cross_entropy_over_assistant_tokens_only():
    model = build("tiny-clip", "mlp")
    batch = PackedCollate(TEMPLATE, model.encoder, model.adapter)(samples("image", 1))
    out = model(batch)
    # the same loss from the full logits of the plain forward, shifted by hand
    emb = model.embed_inputs(batch["input_ids"], model.encode_modality(batch["modality_inputs"].double()))
    logits = model.backbone(inputs_embeds=emb)[0]  # (T, V)
    labels = batch["labels"][0]
    ref = F.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out["loss"], ref)
    # exactly the assistant answers (and their closing 24) are predicted
    predicted = labels[1:][labels[1:] != IGNORE_INDEX].tolist()
    assert out["num_tokens"] == len(predicted) and TEMPLATE.tokenizer.decode(predicted) == " yes\x17"
    # changing a label of a user token changes nothing; changing an answer token changes the loss
    batch2 = dict(batch, labels=batch["labels"].clone())
    batch2["labels"][0, 2] = IGNORE_INDEX
    torch.testing.assert_close(model(batch2)["loss"], out["loss"])


def test_modality_tokens_reach_the_loss():
    model = build("tiny-whisper", "audio_conv")
    collate = PackedCollate(TEMPLATE, model.encoder, model.adapter)
    a, b = samples("audio", 2)
    b = dict(b, conversation=a["conversation"])
    assert not torch.isclose(model(collate([a]))["loss"], model(collate([b]))["loss"])


def test_mismatched_placeholders_and_widths_are_clear_errors():
    model = build("tiny-clip", "mlp")
    batch = PackedCollate(TEMPLATE, model.encoder, model.adapter)(samples("image", 1))
    batch["input_ids"][0, batch["input_ids"][0].tolist().index(65535)] = 11
    with pytest.raises(ValueError, match="placeholder"):
        model(batch)
    enc, bb = build_encoder("tiny-clip"), random_backbone()
    with pytest.raises(ValueError, match="adapter input width"):
        ModRWKV(enc, build_adapter("mlp", 32, bb.config.n_embd), bb, TEMPLATE)
    with pytest.raises(ValueError, match="adapter output width"):
        ModRWKV(enc, build_adapter("mlp", enc.out_dim, 64), bb, TEMPLATE)


def test_adapter_factory_gets_widths_from_encoder_and_backbone():
    from functools import partial

    enc, bb = build_encoder("tiny-whisper"), random_backbone()
    model = ModRWKV(enc, partial(build_adapter, "audio_conv", scale=4), bb, TEMPLATE)
    assert model.adapter.conv.in_channels == enc.out_dim and model.adapter.out_dim == bb.config.n_embd


def test_freeze_sets_what_trains_and_encoder_stays_in_eval():
    model = build("tiny-siglip", "conv", torch.float32)
    model.freeze(encoder=True, adapter=False, backbone=True)  # stage 1
    model.train()
    assert not model.encoder.training and model.adapter.training
    out = model(PackedCollate(TEMPLATE, model.encoder, model.adapter)(samples("image", 2)))
    out["loss"].backward()
    assert all(p.grad is not None for p in model.adapter.parameters())
    assert all(p.grad is None for p in model.encoder.parameters()) and all(
        p.grad is None for p in model.backbone.parameters())
    model.freeze(encoder=True, adapter=False, backbone=False)  # stage 2
    assert all(p.requires_grad for p in model.backbone.parameters())
    model.freeze(encoder=False, adapter=True, backbone=True)
    model.train()
    assert model.encoder.training and all(p.requires_grad for p in model.encoder.parameters())
    assert not any(p.requires_grad for p in model.adapter.parameters())


def test_fp32_encoder_feeds_a_bf16_model():
    model = build("tiny-whisper", "audio_conv", torch.bfloat16)
    model.encoder.float()  # frozen pretrained tower kept in fp32
    out = model(PackedCollate(TEMPLATE, model.encoder, model.adapter)(samples("audio", 2)))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
