"""Shared test settings: deterministic, small, CPU unless a test says otherwise."""

import os

import pytest
import torch

os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
if not torch.cuda.is_available():
    # No GPU: the Triton kernels run in Triton's CPU interpreter. @triton.jit reads this when a kernel module is
    # imported, so it is set here, before any test module imports one (`make test` needs nothing exported).
    os.environ.setdefault("TRITON_INTERPRET", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
