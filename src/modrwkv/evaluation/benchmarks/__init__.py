"""The paper's benchmarks: official metrics (this package's ``*_metric`` modules), readers of the official release
formats (``readers_*``), and the registry that ties a benchmark name to its reader, prompt and scorer."""

from .asr_metric import cer, normalize_english, normalize_mandarin, wer
from .choice_metric import (
                            circular_accuracy,
                            infer_option,
                            mmmu_open_correct,
                            parse_mmmu_choice,
                            parse_mmmu_open,
                            parse_sqa_letter,
                            rotations,
)
from .forecast_metric import scaled_errors
from .pope_metric import pope_scores, pope_yes
from .vqa_metric import gqa_match, normalize_vqa_answer, textvqa_accuracy, vqa_accuracy

__all__ = ["cer", "circular_accuracy", "gqa_match", "infer_option", "mmmu_open_correct", "normalize_english",
           "normalize_mandarin", "normalize_vqa_answer", "parse_mmmu_choice", "parse_mmmu_open", "parse_sqa_letter",
           "pope_scores", "pope_yes", "rotations", "scaled_errors", "textvqa_accuracy", "vqa_accuracy", "wer"]
