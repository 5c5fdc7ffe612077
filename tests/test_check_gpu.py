"""scripts/check_gpu.py: without a CUDA device it refuses, says why and how to smoke-test it.

Its --allow-cpu run (digits, 1 epoch) takes over a minute on two shared cores (two trainings, then
`dcloop init` and `dcloop sync` in their own processes), so it is run by hand, not here; see
docs/benchmarks/performance.md, "GPU".
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the script would run")
def test_without_a_gpu_the_check_exits_2_and_names_the_smoke_test(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "missing"), "--json"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "torch sees no CUDA device here" in done.stderr and "--allow-cpu" in done.stderr
