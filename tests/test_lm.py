"""task=lm: the offline text corpus, the LM loss on packed rows, and the checkpoints the backbone_init sweep reads."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modrwkv.backbone import RWKV7, RWKV7Config
from modrwkv.data import text_corpus as tc
from modrwkv.training.lm import TextLM, TokenChunks, pack
from modrwkv.weights import WeightFileMissing

SMALL_CORPUS = ["task.corpus.max_chars=150000", "task.corpus.val_fraction=0.15", "task.corpus.test_fraction=0.15"]
TINY_LM = ["preset.max_steps=2", "preset.val_every=2", "preset.warmup_steps=1", "task.batch_size=2",
           "task.eval_batch_size=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none",
           "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", *SMALL_CORPUS]


def test_module_docstrings_reads_without_importing(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('"""Module doc."""\nraise SystemExit("imported!")\n'
                   'class A:\n    """A class whose docstring is long enough to be kept in the corpus."""\n'
                   'def f():\n    """Short."""\n')
    text = tc.module_docstrings(src, "m")
    assert text.startswith("m\n\nModule doc.")
    assert "class A\n    A class whose docstring" in text and "Short." not in text
    (tmp_path / "bad.py").write_text("def (:\n")
    assert tc.module_docstrings(tmp_path / "bad.py", "bad") == ""


def test_prose_filter_and_split():
    assert tc._is_prose("The quick brown fox jumps over the lazy dog. " * 10)
    assert not tc._is_prose("0.125 0.250 0.375 0.500 1e-3 2e-3 " * 20)
    splits = [tc.split_of(f"doc{i}", 0.1, 0.1) for i in range(2000)]
    assert splits == [tc.split_of(f"doc{i}", 0.1, 0.1) for i in range(2000)]  # stable
    assert 150 < splits.count("val") < 250 and 150 < splits.count("test") < 250


def test_build_corpus_real_text(tmp_path):
    manifest = tc.build_corpus(tmp_path / "c", tc.CorpusConfig(sources=("stdlib",), max_chars=60_000, val_fraction=0.2,
                                                         test_fraction=0.2))
    assert manifest["chars"] >= 60_000 and all(manifest["documents"][s] > 0 for s in ("train", "val", "test"))
    train = tc.load_split(tmp_path / "c", "train")
    assert train.dtype == np.int32 and len(train) == manifest["tokens"]["train"]
    assert (train == 0).sum() == manifest["documents"]["train"]  # one end-of-text after each document
    from modrwkv.backbone.tokenizer import WorldTokenizer

    first_doc = WorldTokenizer().decode(train[: int(np.argmax(train == 0))].tolist())
    assert first_doc.split("\n")[0].isidentifier() or "." in first_doc.split("\n")[0]  # "module.name" then its doc
    with pytest.raises(ValueError, match="unknown text sources"):
        tc.build_corpus(tmp_path / "d", tc.CorpusConfig(sources=("web",)))


def test_lm_loss_is_per_sequence_next_token():
    """The packed loss equals the mean over sequences' own next-token losses (no prediction across a boundary)."""
    torch.manual_seed(0)
    backbone = RWKV7(RWKV7Config.from_name("tiny", vocab_size=97), wkv_backend="chunk")
    lm = TextLM(backbone)
    chunks = [torch.randint(1, 97, (9,)), torch.randint(1, 97, (6,))]
    out = lm(pack(chunks))
    logits = [backbone(input_ids=c[None])[0, :-1] for c in chunks]
    ref = F.cross_entropy(torch.cat(logits), torch.cat([c[1:] for c in chunks]))
    assert out["num_tokens"] == 8 + 5
    torch.testing.assert_close(out["loss"], ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="shorter than task.seq_len"):
        TokenChunks(np.arange(5, dtype=np.int32), 8)


def _compose(overrides):
    from analysis.sweep_configs import compose

    return compose(overrides)


@pytest.mark.slow
def test_lm_task_writes_the_checkpoints_backbone_init_reads(tmp_path, monkeypatch):
    """task=lm writes tiny-lm-base.pth; variant g1 continues it into tiny-lm-g1.pth; backbone=g1 then trains on it."""
    from analysis.sweep_configs import compose_job
    from modrwkv.training.run import train

    monkeypatch.setenv("MODRWKV_ROOT", str(tmp_path))
    weights = tmp_path / "weights"
    out = [f"paths.output={tmp_path / 'out'}"]
    with pytest.raises(WeightFileMissing, match="tiny-lm-base.pth"):  # g1 needs base first, and says so
        train(_compose(["task=lm", "task.variant=g1", *TINY_LM, *out]))

    metrics = train(_compose(["task=lm", *TINY_LM, *out]))
    assert math.isfinite(metrics["test/loss"]) and metrics["test/loss"] < 12  # about ln(65536) = 11.1 at init
    base = RWKV7.from_checkpoint(weights / "tiny-lm-base.pth")
    assert base.config == RWKV7Config.from_name("tiny")
    torch.manual_seed(42)
    fresh = RWKV7(RWKV7Config.from_name("tiny"))  # the init the run started from (seed 42), before training
    assert not torch.equal(base.blocks[0].att.receptance.weight, fresh.blocks[0].att.receptance.weight)

    train(_compose(["task=lm", "task.variant=g1", "seed=43", *TINY_LM, *out]))
    g1 = RWKV7.from_checkpoint(weights / "tiny-lm-g1.pth")
    moved_from_base = (g1.emb.weight - base.emb.weight).abs().max()
    assert 0 < moved_from_base < (g1.emb.weight - fresh.emb.weight).abs().max()  # continued from base

    tiny = ["preset.max_steps=2", "preset.val_every=2", "preset.warmup_steps=1",
            "preset.data_sizes={train:32,val:8,test:8}", "preset.batch_size=8", "preset.eval_batch_size=8",
            "preset.limit_val_batches=1", "eval.max_batches=1", "logger=none", "trainer.enable_progress_bar=false"]
    metrics = train(compose_job("backbone_init", ["backbone=g1"], tiny + out))
    assert math.isfinite(metrics["test/loss"]) and 0 <= metrics["test/accuracy"] <= 1


def test_export_backbone_from_a_lightning_checkpoint(tmp_path):
    """An interrupted LM run's last.ckpt (state_dict under model.backbone.*) becomes a loadable BlinkDL .pth."""
    from modrwkv.training.lm import export_backbone

    backbone = RWKV7(RWKV7Config.from_name("tiny", vocab_size=97), wkv_backend="chunk")
    state = {f"model.{k}": v for k, v in TextLM(backbone).state_dict().items()}
    torch.save({"state_dict": state, "global_step": 3}, tmp_path / "last.ckpt")
    out = export_backbone(tmp_path / "last.ckpt", tmp_path / "b.pth")
    loaded = RWKV7.from_checkpoint(out)
    assert loaded.config == backbone.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), backbone.state_dict().values()))
    torch.save({"state_dict": {"model.adapter.w": torch.zeros(1)}}, tmp_path / "mm.ckpt")
    with pytest.raises(ValueError, match="not a task=lm checkpoint"):
        export_backbone(tmp_path / "mm.ckpt", tmp_path / "c.pth")
