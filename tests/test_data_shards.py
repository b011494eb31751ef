"""Shards: generator -> shards -> reader round trip, corrupt records, node/worker splits, epochs, prepare."""

import io
import json
import os
import tarfile

import numpy as np
import pytest
import torch

from modrwkv.data.forecasting import ForecastConfig, generate_forecast_windows
from modrwkv.data.reader import make_dataset
from modrwkv.data.shapes_vqa import generate_shapes_vqa
from modrwkv.data.shards import write_shards
from modrwkv.data.skips import SkipCounter, TooManySkipsError


def _same(a, b):
    assert a["__key__"] == b["__key__"] and a["modality"] == b["modality"]
    assert a["conversation"] == b["conversation"] and a["meta"] == b["meta"]
    m = a["modality"]
    if m == "image":
        assert a["image"].mode == b["image"].mode == "RGB"
        assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
    else:
        assert a[m].dtype == b[m].dtype == np.float32 and np.array_equal(a[m], b[m])


def _keys(ds):
    return [s["__key__"] for s in ds]


def test_round_trip_image_and_series(tmp_path):
    images = list(generate_shapes_vqa(23, seed=0))
    series = list(generate_forecast_windows(17, seed=0, config=ForecastConfig(context_len=24, horizon=4)))
    shards = write_shards(images, tmp_path / "img", prefix="img", maxcount=10)
    assert [os.path.basename(p) for p in shards] == ["img-000000.tar", "img-000001.tar", "img-000002.tar"]
    write_shards(series, tmp_path / "ser", prefix="ser", maxcount=5)
    for original, folder in ((images, "img"), (series, "ser")):
        ds = make_dataset(tmp_path / folder)
        got = list(ds)
        assert len(got) == len(original) and ds.skip_counter.seen == len(original) and ds.skip_counter.skipped == 0
        for a, b in zip(original, got):
            _same(a, b)


def test_writing_is_byte_reproducible(tmp_path):
    write_shards(generate_shapes_vqa(5, seed=0), tmp_path / "a", maxcount=10)
    write_shards(generate_shapes_vqa(5, seed=0), tmp_path / "b", maxcount=10)
    assert (tmp_path / "a/shard-000000.tar").read_bytes() == (tmp_path / "b/shard-000000.tar").read_bytes()


def _audio_samples(n):
    from modrwkv.data.schema import make_sample

    rng = np.random.default_rng(0)
    return [make_sample(f"a{i}", "audio", rng.uniform(-0.5, 0.5, 1600 + 10 * i),
                        [{"role": "user", "content": "<audio>\nTranscribe the audio."},
                         {"role": "assistant", "content": f"word {i}"}], {"transcript": f"word {i}"})
            for i in range(n)]


def test_round_trip_audio_npy_exact_and_flac_within_quantisation(tmp_path):
    samples = _audio_samples(6)
    write_shards(samples, tmp_path / "npy", audio_format="npy")
    write_shards(samples, tmp_path / "flac", audio_format="flac")
    for a, b in zip(samples, make_dataset(tmp_path / "npy")):
        _same(a, b)
    for a, b in zip(samples, make_dataset(tmp_path / "flac")):
        assert b["audio"].dtype == np.float32 and b["audio"].shape == a["audio"].shape
        assert np.abs(a["audio"] - b["audio"]).max() <= 1.0 / 32768 + 1e-7
        assert b["meta"] == a["meta"]


def _write_raw_tar(path, records):
    """A tar in webdataset layout with arbitrary (possibly broken) members."""
    with tarfile.open(path, "w") as tar:
        for key, members in records:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _corrupt_shard(tmp_path, n_good=10):
    """One shard with ``n_good`` good samples plus three corrupt ones (bad json, bad png, no image member)."""
    from modrwkv.data.shards import encode_sample

    good = [encode_sample(s) for s in generate_shapes_vqa(n_good, seed=0)]
    records = [(r["__key__"], {k: v for k, v in r.items() if k != "__key__"}) for r in good]
    header = good[0]["json"]
    records.insert(2, ("badjson", {"json": b"{not json", "png": good[0]["png"]}))
    records.insert(5, ("badpng", {"json": header, "png": b"\x89PNG\r\n\x1a\n garbage"}))
    records.insert(7, ("noimage", {"json": header}))
    (tmp_path / "bad").mkdir()
    _write_raw_tar(tmp_path / "bad" / "shard-000000.tar", records)
    return tmp_path / "bad"


def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    folder = _corrupt_shard(tmp_path)
    counter = SkipCounter(max_skips=10, max_fraction=None, name="train_data")
    got = _keys(make_dataset(folder, skip_counter=counter))
    assert len(got) == 10 and not {"badjson", "badpng", "noimage"} & set(got)
    assert counter.skipped == 3 and counter.seen == 10
    assert counter.metrics() == {"train_data/skipped": 3.0, "train_data/skip_fraction": pytest.approx(3 / 13),
                                 "train_data/skipped_train": 0.0, "train_data/skipped_val": 0.0,
                                 "train_data/skipped_test": 0.0, "train_data/skipped_other": 3.0}  # folder "bad"
    assert counter.bad_shards() == {str(folder / "shard-000000.tar"): 3}


def test_too_many_skips_raise(tmp_path):
    folder = _corrupt_shard(tmp_path)
    with pytest.raises(TooManySkipsError, match="3 corrupt samples skipped"):
        list(make_dataset(folder, skip_counter=SkipCounter(max_skips=2, max_fraction=None)))
    with pytest.raises(TooManySkipsError, match="over the limit"):
        list(make_dataset(folder, skip_counter=SkipCounter(max_skips=None, max_fraction=0.1, min_total=5)))


def test_truncated_shard_is_a_counted_skip(tmp_path):
    write_shards(generate_shapes_vqa(12, seed=0), tmp_path, maxcount=6)
    path = tmp_path / "shard-000000.tar"
    path.write_bytes(path.read_bytes()[:3000])  # cut inside the first members
    ds = make_dataset(tmp_path, skip_counter=SkipCounter(max_skips=5, max_fraction=None))
    got = _keys(ds)
    assert len(got) >= 6 and ds.skip_counter.skipped >= 1  # the second shard is read in full


def test_skip_counts_reach_the_main_process_from_workers(tmp_path):
    folder = _corrupt_shard(tmp_path)
    write_shards(generate_shapes_vqa(10, seed=1), folder, prefix="more", maxcount=10)
    ds = make_dataset(folder, skip_counter=SkipCounter(max_skips=10, max_fraction=None))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    assert len(list(loader)) == 20
    assert ds.skip_counter.skipped == 3 and ds.skip_counter.seen == 20


def test_node_and_worker_splits_are_disjoint_and_complete(tmp_path, monkeypatch):
    write_shards(generate_shapes_vqa(40, seed=0), tmp_path, maxcount=5)  # 8 shards
    everything = set(_keys(make_dataset(tmp_path)))
    assert len(everything) == 40
    parts = []
    for rank in range(2):
        for worker in range(2):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", "2")
            monkeypatch.setenv("WORKER", str(worker))
            monkeypatch.setenv("NUM_WORKERS", "2")
            parts.append(_keys(make_dataset(tmp_path, shuffle=10, seed=3)))
    assert all(len(p) == 10 for p in parts)
    assert set().union(*map(set, parts)) == everything and sum(map(len, parts)) == 40
    for var in ("RANK", "WORLD_SIZE", "WORKER", "NUM_WORKERS"):
        monkeypatch.delenv(var)
    loader = torch.utils.data.DataLoader(make_dataset(tmp_path), batch_size=None, num_workers=2)
    keys = [s["__key__"] for s in loader]
    assert sorted(keys) == sorted(everything)


def test_shuffle_is_deterministic_per_epoch(tmp_path):
    write_shards(generate_shapes_vqa(30, seed=0), tmp_path, maxcount=6)
    ds = make_dataset(tmp_path, shuffle=16, seed=7)
    ds.set_epoch(0)
    e0 = _keys(ds)
    e0_again = _keys(ds)
    ds.set_epoch(1)
    e1 = _keys(ds)
    assert e0 == e0_again and e0 != e1 and sorted(e0) == sorted(e1) and len(set(e0)) == 30
    assert e0 != sorted(e0)
    auto = make_dataset(tmp_path, shuffle=16, seed=7)  # without set_epoch: each pass is the next epoch
    assert _keys(auto) == e0 and _keys(auto) == e1


def test_resampled_epoch_length_per_rank(tmp_path):
    write_shards(generate_shapes_vqa(20, seed=0), tmp_path, maxcount=4)
    ds = make_dataset(tmp_path, resampled=True, epoch_length=13, shuffle=4, seed=1)
    assert len(ds) == 13
    ds.set_epoch(0)
    a, a2 = _keys(ds), _keys(ds)
    ds.set_epoch(1)
    b = _keys(ds)
    assert len(a) == len(b) == 13 and a == a2 and a != b
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    assert len(list(loader)) == 13  # shared between the two workers: 7 + 6
    finite = make_dataset(tmp_path, epoch_length=50)  # a finite stream repeats to fill the epoch
    assert len(_keys(finite)) == 50
    with pytest.raises(ValueError, match="epoch_length"):
        make_dataset(tmp_path, resampled=True)


def test_missing_shards_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shards"):
        make_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        make_dataset([str(tmp_path / "nope.tar")])


def test_prepare_offline_dataset_reuses_and_is_atomic(tmp_path, monkeypatch):
    from modrwkv.data import prepare

    out = tmp_path / "shapes"
    ds = prepare.prepare_offline_dataset("image", out, n_train=16, n_val=4, n_test=4, seed=1)
    assert ds.manifest["counts"]["train"] == {"samples": 16, "shards": 8}
    assert ds.manifest["chance_accuracy"] == pytest.approx((1 / 4 + 1 / 3) / 2)
    assert len(list(make_dataset(ds.splits["val"]))) == 4
    assert prepare.load_prepared(out).manifest == ds.manifest
    with pytest.raises(FileNotFoundError, match="manifest.json missing"):
        prepare.load_prepared(tmp_path / "absent")
    val_keys = set(_keys(make_dataset(ds.splits["val"])))
    assert not val_keys & set(_keys(make_dataset(ds.splits["train"])))

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(prepare, "write_shards", boom)
    again = prepare.prepare_offline_dataset("image", out, n_train=16, n_val=4, n_test=4, seed=1)  # reused
    assert again.manifest == ds.manifest
    with pytest.raises(RuntimeError, match="interrupted"):  # a different request rebuilds, and fails midway
        prepare.prepare_offline_dataset("image", out, n_train=20, n_val=4, n_test=4, seed=1)
    assert json.loads((out / "manifest.json").read_text()) == ds.manifest  # the old complete dataset is intact
    # no temporary folder left behind (the lock file that serialises generation stays, as lock files do)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".shapes.lock", "shapes"]
    monkeypatch.undo()

    fresh = tmp_path / "never"
    monkeypatch.setattr(prepare, "write_shards", boom)
    with pytest.raises(RuntimeError):
        prepare.prepare_offline_dataset("series", fresh, n_train=4, n_val=2, n_test=2)
    assert not fresh.exists()
    monkeypatch.undo()
    rebuilt = prepare.prepare_offline_dataset("series", out, n_train=6, n_val=2, n_test=2,
                                              config={"context_len": 16, "horizon": 4})
    assert rebuilt.manifest["request"]["modality"] == "series"
    assert next(iter(make_dataset(rebuilt.splits["test"])))["series"].shape == (16,)
    with pytest.raises(ValueError, match="unknown image dataset options"):
        prepare.prepare_offline_dataset("image", out, config={"colour_count": 3})
