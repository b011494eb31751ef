"""The decode-step Triton kernels compile for the H100 (sm_90) on this machine: tests/sm90_compile.py, run in a
fresh process without TRITON_INTERPRET (the interpreter that runs the other kernel tests skips some of the
compiler's checks, so a kernel can pass them all and still fail to compile on a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("sm90_compile.py")


def test_every_decode_kernel_variant_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "all compiled" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-4000:]
