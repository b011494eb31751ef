"""Each benchmark reader on tiny fixture files in its official format: records, samples, oracle scores, errors."""

from __future__ import annotations

import numpy as np
import pytest

from modrwkv.evaluation.benchmarks.records import BenchmarkFilesMissing, to_sample
from modrwkv.evaluation.benchmarks.registry import BENCHMARKS, get_benchmark, read_benchmark

from . import benchmark_fixtures as fx

VISION = {"vqav2": (fx.write_vqav2, 2), "textvqa": (fx.write_textvqa, 1), "gqa": (fx.write_gqa, 2),
          "sqa_img": (fx.write_scienceqa, 2), "pope": (fx.write_pope, 6), "mmbench": (fx.write_mmbench, 5),
          "mmmu": (fx.write_mmmu, 2)}
PERFECT = {"vqav2": "accuracy", "textvqa": "accuracy", "gqa": "accuracy", "sqa_img": "accuracy", "pope": "f1",
           "mmbench": "circular", "mmmu": "accuracy"}


@pytest.mark.parametrize("name", list(VISION))
def test_vision_readers_and_oracle_scores(tmp_path, name):
    write, n = VISION[name]
    oracle = write(tmp_path / name)
    records = read_benchmark(name, tmp_path / name)
    assert len(records) == n == len(oracle) and len({r.key for r in records}) == n
    for r in records:
        sample = to_sample(r)
        assert sample["image"].mode == "RGB" and sample["image"].size == (16, 12)
        assert r.prompt.startswith("<image>\n")
    scores = get_benchmark(name).score(records, oracle)
    assert scores[PERFECT[name]] == pytest.approx(100.0), scores
    wrong = get_benchmark(name).score(records, ["zzz"] * n)
    assert wrong[PERFECT[name]] < 100.0


def test_reader_details(tmp_path):
    sqa = read_benchmark("sqa_img", fx.write_scienceqa(tmp_path / "s") and tmp_path / "s")
    assert [r.key for r in sqa] == ["1", "4"]  # test split, image problems only
    assert sqa[1].prompt == ("<image>\nContext: A picture.\nWhich is blue?\nA. sky\nB. grass\n"
                             "Answer with the option's letter from the given choices directly.")
    (tmp_path / "s" / "images").rename(tmp_path / "s" / "unpacked")
    (tmp_path / "s" / "unpacked" / "test").rename(tmp_path / "s" / "test")  # the release archive's own layout
    assert [r.key for r in read_benchmark("sqa_img", tmp_path / "s")] == ["1", "4"]
    fx.write_mmbench(tmp_path / "m")
    mm = read_benchmark("mmbench", tmp_path / "m")
    assert [r.ref["answer"] for r in mm] == ["B", "A", "C", "A", "B"]  # rotated options, circular copy row skipped
    assert "\nA. dog\nB. cow\nC. cat\n" in mm[1].prompt
    one = get_benchmark("mmbench").score(mm, ["B", "A", "A", "A", "B"])  # question 0 fails one rotation
    assert one == {"circular": 50.0, "vanilla": 100.0}
    fx.write_mmmu(tmp_path / "u")
    mmmu = read_benchmark("mmmu", tmp_path / "u")
    assert mmmu[0].ref["options"] == ["Baroque", "Cubism"] and "(A) Baroque\n(B) Cubism" in mmmu[0].prompt
    assert [r.ref["n_images"] for r in mmmu] == [1, 2]
    assert len(read_benchmark("pope", fx.write_pope(tmp_path / "p") and tmp_path / "p", limit=1)) == 3


@pytest.mark.parametrize("name,write,metric", [
    ("librispeech_clean", fx.write_librispeech, "wer"),
    ("librispeech_other", lambda root: fx.write_librispeech(root, "test-other"), "wer"),
    ("aishell1_test", fx.write_aishell1, "cer"),
    ("aishell1_dev", lambda root: fx.write_aishell1(root, "dev"), "cer"),
    ("aishell1_test", lambda root: fx.write_aishell1(root / "data_aishell"), "cer"),  # the release's top folder
])
def test_speech_readers(tmp_path, name, write, metric):
    oracle = write(tmp_path)
    records = read_benchmark(name, tmp_path)
    assert len(records) == 2  # aishell: the wav without a transcript line is left out
    audio = to_sample(records[0])["audio"]
    assert audio.dtype == np.float32 and audio.shape == (4800,)
    bench = get_benchmark(name)
    assert bench.score(records, oracle)[metric] == 0.0
    assert bench.score(records, ["", ""])[metric] == 100.0  # every reference word/character deleted


def test_forecast_reader_uses_the_standard_splits_and_train_scale(tmp_path):
    fx.write_forecast_csv(tmp_path, "ETTh1.csv", rows=20 * 30 * 24)
    records = read_benchmark("ett_h1", tmp_path, context_len=16, horizon=4, stride=500)
    test_begin = 16 * 30 * 24 - 16  # the test split's contexts start context_len rows before its first target
    starts = sorted({int(r.key.rsplit("-", 1)[1]) for r in records})
    assert starts[0] == test_begin and starts[-1] <= 20 * 30 * 24 - 20
    assert {r.key.split("-")[1] for r in records} == {"c0", "c1", "OT"}
    import pandas as pd

    col = pd.read_csv(tmp_path / "ETTh1.csv")["c1"].to_numpy()
    r = next(r for r in records if r.key.split("-")[1] == "c1")
    assert r.ref["train_std"] == pytest.approx(col[:12 * 30 * 24].std())
    assert np.allclose(r.ref["target"], col[starts[0] + 16:starts[0] + 20])
    # an oracle answer (the target, normalised by the context as the model writes it) scores 0
    from modrwkv.data.forecast_format import context_stats, format_forecast

    answers = [format_forecast(r.ref["target"], *context_stats(np.asarray(r.source, np.float32)), decimals=6)
               for r in records]
    scores = get_benchmark("ett_h1").score(records, answers)
    assert scores["mse"] < 1e-8 and scores["missing"] == 0.0
    assert get_benchmark("ett_h1").score(records, [""] * len(records))["missing"] == 4 * len(records)
    fx.write_forecast_csv(tmp_path, "electricity.csv", rows=200)
    ecl = read_benchmark("ecl", tmp_path, context_len=16, horizon=4, limit=2)
    assert len(ecl) == 3 * 2 and int(ecl[0].key.rsplit("-", 1)[1]) == 200 - 40 - 16  # the last 20 % is test


def test_missing_files_name_the_expected_layout(tmp_path):
    for name in BENCHMARKS:
        with pytest.raises(BenchmarkFilesMissing, match=f"benchmark {name.split('_')[0]}|benchmark {name}"):
            read_benchmark(name, tmp_path / "nowhere")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "v2_OpenEnded_mscoco_val2014_questions.json").write_text("{}")
    with pytest.raises(BenchmarkFilesMissing, match="missing .*v2_mscoco_val2014_annotations.json"):
        read_benchmark("vqav2", tmp_path / "v")
    with pytest.raises(KeyError, match="unknown benchmark 'vqa3'.*vqav2"):
        get_benchmark("vqa3")
