"""Converters from public formats, each on a small fixture written here in that format."""

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from modrwkv.data.reader import make_dataset


def _llava_fixture(tmp_path):
    images = tmp_path / "images"
    (images / "coco").mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = {}
    for i, fmt in enumerate(["png", "png", "jpg", "png"]):
        arr = rng.integers(0, 255, (8 + i, 10, 3), dtype=np.uint8)
        Image.fromarray(arr).save(images / "coco" / f"{i}.{fmt}")
        pixels[f"coco/{i}.{fmt}"] = arr
    (images / "coco" / "fake.jpg").write_text("not an image")
    q = [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "noise"}]
    entries = [
        {"id": "000000001", "image": "coco/0.png", "conversations": q},
        {"id": "a.b/c", "image": "coco/1.png", "conversations": [
            {"from": "human", "value": "Describe it.\n<image>"}, {"from": "gpt", "value": "random"},
            {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "many"},
            {"from": "human", "value": "unanswered"}]},
        {"id": "3", "image": "coco/2.jpg", "conversations": q},
        {"id": "4", "image": "coco/3.png", "conversations": q},
        {"id": "missing", "image": "coco/nope.png", "conversations": q},
        {"id": "textonly", "conversations": q},
        {"id": "badrole", "image": "coco/0.png", "conversations": [{"from": "robot", "value": "hi"}]},
        {"id": "fake", "image": "coco/fake.jpg", "conversations": q},
    ]
    (tmp_path / "llava.json").write_text(json.dumps(entries))
    return tmp_path / "llava.json", images, pixels


def test_convert_llava(tmp_path):
    from modrwkv.data.convert_llava import convert_llava

    json_path, images, pixels = _llava_fixture(tmp_path)
    report = convert_llava(json_path, images, tmp_path / "out", maxcount=3)
    assert report.written == {"all": 4}
    assert report.skipped == {"missing_image": 1, "no_image": 1, "bad_conversation": 1, "unreadable_image": 1}
    assert len(report.shards["all"]) == 2 and all((tmp_path / "out").joinpath(p).exists() for p in report.shards["all"])
    samples = list(make_dataset(tmp_path / "out"))
    assert [s["meta"]["id"] for s in samples] == ["000000001", "a.b/c", "3", "4"]
    assert "." not in samples[1]["__key__"] and "/" not in samples[1]["__key__"]
    for s in samples:
        assert s["modality"] == "image" and s["image"].mode == "RGB"
        original = pixels[s["meta"]["image"]]
        assert s["image"].size == (original.shape[1], original.shape[0])
        if s["meta"]["image"].endswith(".png"):  # stored as the original bytes: lossless
            assert np.array_equal(np.asarray(s["image"]), original)
    multi = samples[1]["conversation"]
    assert [t["role"] for t in multi] == ["user", "assistant", "user", "assistant"]  # trailing question dropped
    assert multi[0]["content"] == "Describe it.\n<image>" and samples[1]["meta"]["answer"] == "random"


def test_convert_llava_cli_and_errors(tmp_path, capsys):
    from modrwkv.data.convert_llava import main

    json_path, images, _ = _llava_fixture(tmp_path)
    main(["--json", str(json_path), "--images", str(images), "--out", str(tmp_path / "cli"), "--limit", "2"])
    assert json.loads(capsys.readouterr().out)["written"] == {"all": 2}
    with pytest.raises(FileNotFoundError, match="image folder"):
        main(["--json", str(json_path), "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def _librispeech_fixture(tmp_path):
    root = tmp_path / "LibriSpeech" / "test-clean"
    rng = np.random.default_rng(0)
    audio = {}
    for speaker, chapter, n, sr in (("19", "198", 3, 16000), ("26", "495", 2, 8000)):
        folder = root / speaker / chapter
        folder.mkdir(parents=True)
        lines = []
        for u in range(n):
            utt = f"{speaker}-{chapter}-{u:04d}"
            lines.append(f"{utt} HELLO WORLD NUMBER {u}")
            if (speaker, u) == ("19", 2):
                continue  # listed in the transcript, but the flac is missing
            x = (rng.uniform(-0.5, 0.5, int(sr * (0.3 + 0.1 * u)))).astype(np.float32)
            sf.write(folder / f"{utt}.flac", x, sr, subtype="PCM_16")
            audio[utt] = sf.read(folder / f"{utt}.flac", dtype="float32")[0]
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root, audio


def test_convert_librispeech(tmp_path):
    from modrwkv.data.audio_io import resample
    from modrwkv.data.convert_librispeech import convert_librispeech

    root, audio = _librispeech_fixture(tmp_path)
    report = convert_librispeech(root, tmp_path / "out", maxcount=2)
    assert report.written == {"all": 4} and report.skipped == {"missing_audio": 1}
    samples = {s["meta"]["id"]: s for s in make_dataset(tmp_path / "out")}
    assert sorted(samples) == ["19-198-0000", "19-198-0001", "26-495-0000", "26-495-0001"]
    s = samples["19-198-0001"]
    assert s["conversation"] == [{"role": "user", "content": "<audio>\nTranscribe the audio."},
                                 {"role": "assistant", "content": "hello world number 1"}]
    assert s["meta"]["transcript"] == "hello world number 1" and s["meta"]["speaker"] == "19"
    assert np.array_equal(s["audio"], audio["19-198-0001"])  # 16 kHz flac stored untouched
    s8 = samples["26-495-0001"]  # 8 kHz source: resampled to 16 kHz
    assert s8["meta"]["duration"] == pytest.approx(0.4)
    assert len(s8["audio"]) == 6400
    assert np.abs(s8["audio"] - resample(audio["26-495-0001"], 8000)).max() < 2e-4

    short = convert_librispeech(root, tmp_path / "short", max_seconds=0.35, lowercase=False)
    assert short.written == {"all": 2} and short.skipped == {"missing_audio": 1, "too_long": 2}
    assert next(iter(make_dataset(tmp_path / "short")))["meta"]["transcript"].startswith("HELLO")
    with pytest.raises(FileNotFoundError, match="trans.txt"):
        convert_librispeech(tmp_path / "out", tmp_path / "bad")


def _write_csv(path, n_rows, columns=("HUFL", "OT")):
    import pandas as pd

    rng = np.random.default_rng(1)
    data = {"date": pd.date_range("2016-07-01", periods=n_rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")}
    for i, col in enumerate(columns):
        data[col] = np.round(np.sin(np.arange(n_rows) / (5 + i)) * 10 + rng.normal(0, 1, n_rows) + 20 * i, 3)
    pd.DataFrame(data).to_csv(path, index=False)
    return pd.read_csv(path)


def test_convert_ett_ratio_split(tmp_path):
    from modrwkv.data.convert_ett import convert_ett
    from modrwkv.data.forecast_format import parse_forecast

    frame = _write_csv(tmp_path / "custom.csv", 200)
    report = convert_ett(tmp_path / "custom.csv", tmp_path / "out", context_len=24, horizon=8, stride=4, maxcount=10)
    # ratio scheme: train rows [0,140), val [140-24, 160), test [160-24, 200)
    expected = {"train": len(range(0, 140 - 32 + 1, 4)), "val": len(range(116, 160 - 32 + 1, 4)),
                "test": len(range(136, 200 - 32 + 1, 4))}
    assert report.written == {k: 2 * v for k, v in expected.items()}  # two numeric columns, date dropped
    for split in ("train", "val", "test"):
        samples = list(make_dataset(tmp_path / "out" / split))
        assert len(samples) == 2 * expected[split]
        for s in samples:
            col, start = s["meta"]["column"], s["meta"]["start"]
            values = frame[col].to_numpy()
            assert np.allclose(s["series"], values[start:start + 24])
            assert np.allclose(s["meta"]["target"], values[start + 24:start + 32], atol=1e-4)
            assert s["meta"]["scaler_mean"] == pytest.approx(values[:140].mean())
            target_rows = range(start + 24, start + 32)
            lo, hi = {"train": (0, 140), "val": (140, 160), "test": (160, 200)}[split]
            assert lo <= target_rows[0] and target_rows[-1] < hi  # targets never cross a split border
            parsed = parse_forecast(s["conversation"][1]["content"], 8, s["meta"]["context_mean"],
                                    s["meta"]["context_std"])
            assert parsed.n_missing == 0
            assert np.allclose(parsed.values, s["meta"]["target"], atol=0.006 * s["meta"]["context_std"])


def test_convert_ett_hour_borders_and_cli(tmp_path, capsys):
    from modrwkv.data.convert_ett import main, split_borders

    _write_csv(tmp_path / "ETTh1.csv", 14400, columns=("OT",))
    main(["--csv", str(tmp_path / "ETTh1.csv"), "--out", str(tmp_path / "etth1"), "--context-len", "96",
          "--horizon", "24", "--stride", "1000"])
    written = json.loads(capsys.readouterr().out)["written"]
    assert written == {"train": len(range(0, 8640 - 120 + 1, 1000)), "val": len(range(8544, 11520 - 120 + 1, 1000)),
                       "test": len(range(11424, 14400 - 120 + 1, 1000))}
    first_val = next(iter(make_dataset(tmp_path / "etth1" / "val")))
    assert first_val["meta"]["start"] == 8640 - 96 and first_val["meta"]["source"] == "csv/ETTh1"
    assert split_borders(57600, 96, "ett_minute")["test"] == (4 * 16 * 720 - 96, 4 * 20 * 720)
    with pytest.raises(ValueError, match="at least 14400 rows"):
        split_borders(1000, 96, "ett_hour")
