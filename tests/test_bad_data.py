"""Bad data on real shards and real image files: a few bad shards read first do not stop a run, a broken dataset
does (naming its bad shards), train and validation skips are counted apart, and convert_llava skips malformed
entries and images that do not decode fully."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from modrwkv.data.forecasting import ForecastConfig, generate_forecast_windows
from modrwkv.data.reader import make_dataset
from modrwkv.data.shards import encode_sample, write_shards
from modrwkv.data.skips import SkipCounter, TooManySkipsError

PER_SHARD = 50


def _shards(folder, bad_per_shard: list[int]):
    """One shard per entry of ``bad_per_shard``, each of PER_SHARD series records of which that many are corrupt
    (an .npy member that is not an array)."""
    samples = list(generate_forecast_windows(PER_SHARD * len(bad_per_shard), seed=0,
                                             config=ForecastConfig(context_len=16, horizon=4)))
    for i, bad in enumerate(bad_per_shard):
        records = []
        for j, sample in enumerate(samples[i * PER_SHARD:(i + 1) * PER_SHARD]):
            record = encode_sample(sample)
            if j < bad:
                record["npy"] = b"not an array"
            records.append(record)
        write_shards(records, folder, prefix=f"s{i:02d}", maxcount=PER_SHARD)
    return folder


def test_a_dataset_1_7_percent_bad_with_its_bad_shards_read_first_is_not_stopped(tmp_path):
    # 600 samples, 10 corrupt (1.7 %), all in the first two shards: 10 % of the first 100 read
    folder = _shards(tmp_path / "train", [5, 5] + [0] * 10)
    counter = SkipCounter(max_fraction=0.05)
    counter.expect(600)  # what the datamodule says: one pass reads the whole training set
    got = list(make_dataset(folder, skip_counter=counter))
    assert len(got) == 590 and counter.skipped == 10 and counter.fraction == pytest.approx(10 / 600)
    assert counter.bad_shards() == {str(folder / "s00-000000.tar"): 5, str(folder / "s01-000000.tar"): 5}
    assert counter.metrics()["data/skipped_train"] == 10.0 and counter.metrics()["data/skipped_val"] == 0.0


def test_a_broken_dataset_still_stops_early_and_names_its_bad_shards(tmp_path):
    folder = _shards(tmp_path / "train", [25, 25, 25, 25])  # half of everything is corrupt
    counter = SkipCounter(max_fraction=0.05, min_total=100)
    with pytest.raises(TooManySkipsError) as info:
        list(make_dataset(folder, skip_counter=counter))
    message = str(info.value)
    assert counter.skipped == 6  # 5 % of a window of 100 samples: stopped at the 6th skip, in the first shard
    assert "6 corrupt samples skipped" in message and f"Bad shards (skips): {folder / 's00-000000.tar'} (6)" in message


def test_train_and_validation_skips_are_counted_apart_across_workers(tmp_path):
    train = _shards(tmp_path / "train", [3, 0, 4, 0])
    val = _shards(tmp_path / "val", [2])
    counter = SkipCounter(max_fraction=None)
    for folder in (train, val):  # the datamodule's use: one counter for every loader, workers in other processes
        loader = torch.utils.data.DataLoader(make_dataset(folder, skip_counter=counter), batch_size=None,
                                             num_workers=2)
        assert len(list(loader)) == {train: 193, val: 48}[folder]
    metrics = counter.metrics()
    assert metrics["data/skipped_train"] == 7.0 and metrics["data/skipped_val"] == 2.0
    assert metrics["data/skipped"] == 9.0 and metrics["data/skipped_test"] == 0.0
    assert counter.bad_shards() == {str(train / "s02-000000.tar"): 4, str(train / "s00-000000.tar"): 3,
                                    str(val / "s00-000000.tar"): 2}


def test_the_collate_counts_its_skips_against_the_shard(tmp_path):
    """A sample that decodes but cannot be used (here: NaN values) is a skip of its shard too."""
    from modrwkv.backbone import WorldTokenizer
    from modrwkv.data.chat import ChatTemplate
    from modrwkv.data.collate import PackedCollate
    from modrwkv.encoders import build_encoder

    folder = _shards(tmp_path / "val", [0])
    counter = SkipCounter(max_fraction=None)
    samples = list(make_dataset(folder, skip_counter=counter))[:4]
    samples[1]["series"] = np.full_like(samples[1]["series"], np.nan)
    collate = PackedCollate(ChatTemplate(WorldTokenizer()), build_encoder("tiny-wavenet"), skip_counter=counter)
    assert collate(samples)["num_skipped"] == 1
    assert counter.metrics()["data/skipped_val"] == 1.0 and counter.bad_shards() == {str(folder / "s00-000000.tar"): 1}


# ---- convert_llava ---------------------------------------------------------------------------------------------
def test_convert_llava_skips_malformed_entries_and_images_that_do_not_decode(tmp_path):
    from modrwkv.data.convert_llava import convert_llava

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, fmt in (("good.png", "PNG"), ("good.jpg", "JPEG"), ("cut.jpg", "JPEG"), ("cut.png", "PNG")):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / name, format=fmt)
    for name in ("cut.jpg", "cut.png"):  # a valid header, the pixel data cut short: only a full decode sees it
        data = (images / name).read_bytes()
        (images / name).write_bytes(data[:len(data) // 2])
        with Image.open(images / name) as img:
            assert img.size == (64, 64)  # the header alone looks fine
    q = [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "noise"}]
    entries = [
        {"id": "1", "image": "good.png", "conversations": q},
        {"id": "str", "image": "good.png", "conversations": "<image>\nWhat is this? noise"},
        "not an entry",
        {"id": "listimage", "image": ["good.png"], "conversations": q},
        {"id": "turnstr", "image": "good.png", "conversations": ["<image>", "noise"]},
        {"id": "cutjpg", "image": "cut.jpg", "conversations": q},
        {"id": "cutpng", "image": "cut.png", "conversations": q},
        {"id": "2", "image": "good.jpg", "conversations": q},
    ]
    (tmp_path / "llava.json").write_text(json.dumps(entries))
    report = convert_llava(tmp_path / "llava.json", images, tmp_path / "out")
    assert report.written == {"all": 2}
    assert report.skipped == {"bad_conversation": 2, "bad_entry": 2, "unreadable_image": 2}
    samples = list(make_dataset(tmp_path / "out"))
    assert [s["meta"]["id"] for s in samples] == ["1", "2"]


@pytest.mark.slow
def test_a_training_run_logs_train_and_validation_skips_apart(tmp_path):
    """The real entry point on converted-style shards with corrupt records in train/ and val/: both counts logged."""
    import shutil

    from modrwkv.data.prepare import prepare_offline_dataset
    from tests.suite_utils import mlflow_runs, run_train

    prepared = prepare_offline_dataset("image", tmp_path / "gen", n_train=48, n_val=8, n_test=8,
                                       config={"image_size": 32})
    root = tmp_path / "shards"
    for split in ("train", "val", "test"):
        shutil.copytree(prepared.splits[split], root / split)
    for split, bad in (("train", 2), ("val", 3)):
        good = next(iter(make_dataset(root / split)))
        records = []
        for i in range(bad):
            record = encode_sample({k: v for k, v in good.items() if k != "__url__"})
            record["__key__"], record["png"] = f"bad{i}", b"\x89PNG\r\n\x1a\n truncated"
            records.append(record)
        write_shards(records, root / split, prefix="zz-bad")
    run_train(tmp_path, "data=shards", f"data.root={root}", "preset.max_steps=6", "preset.val_every=6",
              "eval.generate=false", "test_after_training=false", "trainer.limit_val_batches=null")
    runs = mlflow_runs(tmp_path)
    assert list(runs["status"]) == ["FINISHED"]
    assert runs["metrics.data/skipped_val"].iloc[0] == 3.0
    assert runs["metrics.data/skipped_train"].iloc[0] == 2.0  # 6 steps x 8 > 50 samples: the bad shard was read
    assert runs["metrics.data/skipped"].iloc[0] == 5.0
