"""The lmms-eval plugin offline: a local lmms-eval task built from fixture files (a generation task and a
multiple-choice one) run through lmms-eval's own evaluator on a tiny ModRWKV checkpoint.

Needs the optional extra (``pip install -e .[eval]``, best in its own venv: see pyproject.toml)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed: pip install -e .[eval]")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent

# a generation task through lmms-eval's evaluator; loglikelihood is called directly (lmms-eval 0.7.3's evaluator
# turns every loglikelihood result into a string, which breaks its own multiple_choice scoring for any model)
TASKS = {
    "modrwkv_fixture_gen": """
task: modrwkv_fixture_gen
dataset_path: json
dataset_kwargs: {data_files: {test: DATA}}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs: {max_new_tokens: 3, until: ["\\n"]}
metric_list:
  - {metric: exact_match, aggregation: mean, higher_is_better: true}
""",
}
UTILS = '''
from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]
'''


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder as training leaves it (.hydra/config.yaml, checkpoints/last.ckpt) for an untrained tiny model."""
    from analysis.sweep_configs import compose
    from modrwkv.training.build import build_model

    run = tmp_path_factory.mktemp("run")
    cfg = compose(["logger=none"])
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    torch.manual_seed(0)
    model = build_model(cfg)
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
               run / "checkpoints" / "last.ckpt")
    return run


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    from .benchmark_fixtures import _image

    root = tmp_path_factory.mktemp("lmms_task")
    rows = [{"image": str(root / f"{i}.png"), "question": q, "answer": a}
            for i, (q, a) in enumerate([("Is there a cat?", "yes"), ("Is there a car?", "no"), ("Red?", "yes")])]
    for i, row in enumerate(rows):
        _image(Path(row["image"]), i, "PNG")
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, text in TASKS.items():
        (root / f"{name}.yaml").write_text(text.replace("DATA", str(root / "data.jsonl")))
    (root / "utils.py").write_text(UTILS)
    return root


def test_entry_point_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    section = text.split('[project.entry-points."lmms_eval.models"]\n', 1)[1]
    assert section.startswith('modrwkv = "modrwkv.evaluation.lmms_plugin:manifest"\n')
    from modrwkv.evaluation.lmms_plugin import ModRWKVLmms, manifest

    assert manifest().model_id == "modrwkv" and manifest().simple_class_path.endswith(".ModRWKVLmms")
    assert ModRWKVLmms.__module__ == "modrwkv.evaluation.lmms_plugin"


def test_local_tasks_run_through_lmms_eval(tiny_run, task_dir):
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.models import MODEL_REGISTRY_V2
    from lmms_eval.tasks import TaskManager

    from modrwkv.evaluation.lmms_plugin import manifest

    MODEL_REGISTRY_V2.register_manifest(manifest(), overwrite=True)  # what the installed entry point does
    out = simple_evaluate(model="modrwkv", model_args=f"checkpoint={tiny_run},device=cpu,batch_size=2",
                          tasks=list(TASKS), task_manager=TaskManager(include_path=str(task_dir)), log_samples=True)
    results = out["results"]
    assert 0.0 <= results["modrwkv_fixture_gen"]["exact_match,none"] <= 1.0
    # the plugin's answers are the model's own batched answers to the same prompts
    from PIL import Image

    from modrwkv.evaluation.checkpoint import load_trained_run
    from modrwkv.evaluation.lmms_plugin import ModRWKVLmms

    model, _ = load_trained_run(tiny_run)
    docs = [json.loads(line) for line in (task_dir / "data.jsonl").read_text().splitlines()]
    logged = sorted(out["samples"]["modrwkv_fixture_gen"], key=lambda s: s["doc_id"])
    plugin = ModRWKVLmms(str(tiny_run), device="cpu")
    samples = [plugin._sample(docs[s["doc_id"]]["question"], [Image.open(docs[s["doc_id"]]["image"])])
               for s in logged]
    direct = model.generate_batch(samples, max_new_tokens=3)
    assert len(logged) == 3 and [s["resps"][0][0] for s in logged] == [d.split("\n")[0] for d in direct]

def test_loglikelihood_matches_the_training_loss(tiny_run, task_dir):
    """log p(continuation | context) equals minus the summed training loss over the continuation's tokens."""
    from lmms_eval.api.instance import Instance
    from PIL import Image

    from modrwkv.evaluation.lmms_plugin import ModRWKVLmms

    plugin = ModRWKVLmms(str(tiny_run), device="cpu")
    docs = [json.loads(line) for line in (task_dir / "data.jsonl").read_text().splitlines()]
    plugin.task_dict = {"t": {"test": docs}}

    def visual(doc):
        return [Image.open(doc["image"])]

    reqs = [Instance("loglikelihood", (doc["question"], cont, visual, i, "t", "test"), idx=0,
                     metadata={"task": "t", "doc_id": i, "repeats": 1})
            for i, doc in enumerate(docs) for cont in (" yes", "no")]
    out = plugin.loglikelihood(reqs)
    assert len(out) == 6 and all(ll < 0.0 and isinstance(greedy, bool) for ll, greedy in out)
    model = plugin.model
    for (ll, _), req in zip(out, reqs):
        sample = plugin._sample(req.args[0], visual(docs[req.args[3]]))
        x = model.encoder.collate([model.encoder.preprocess(sample["image"])])
        n = model.num_modality_tokens(int(model.encoder.feature_length(sample["image"])))
        prompt = model.template.prompt_ids(sample["conversation"], "image", n)
        cont = model.template.answer_ids(req.args[1].strip())[:-1]
        ids = torch.tensor(prompt + cont)[None]
        labels = torch.tensor([-100] * len(prompt) + cont)[None]
        batch = {"input_ids": ids, "labels": labels, "cu_seqlens": torch.tensor([0, ids.shape[1]], dtype=torch.int32),
                 "modality_inputs": x}
        with torch.no_grad():
            loss = model(batch)
        assert ll == pytest.approx(-float(loss["loss"]) * loss["num_tokens"], rel=1e-4, abs=1e-4)
