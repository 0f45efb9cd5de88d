"""DistributedDataParallel through the engine: two CPU processes under torchrun (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_train_script.py")


@pytest.mark.slow
def test_torchrun_two_ranks(tmp_path):
    out, report = tmp_path / "run", tmp_path / "report"
    report.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(SCRIPT), str(out), str(report)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    reports = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in reports] == [0, 1] and all(r["world_size"] == 2 for r in reports)
    assert all(r["epochs_run"] == 3 for r in reports)

    # The DistributedSampler split every epoch: disjoint halves covering the 64 samples, reshuffled
    # between epochs (set_epoch).
    for e in range(3):
        a, b = (set(r["seen"][e]) for r in reports)
        assert len(reports[0]["seen"][e]) == len(reports[1]["seen"][e]) == 32
        assert a.isdisjoint(b) and a | b == set(range(64))
    assert set(reports[0]["seen"][0]) != set(reports[0]["seen"][1])

    # Validation was gathered: both ranks computed the same metrics on all 40 samples.
    assert reports[0]["val_auc"] == reports[1]["val_auc"] and reports[0]["val_n"] == reports[1]["val_n"] == 40
    assert reports[0]["train_loss"] == reports[1]["train_loss"]
    assert reports[0]["best_auc"] > 0.9

    # Only rank 0 wrote files.
    assert reports[1]["written"] == []
    assert {"last.pt", "best.safetensors", "history.json"} <= set(reports[0]["written"])
    assert sorted(p.name for p in out.iterdir()) == ["best.safetensors", "history.json", "last.pt"]

    # Same final weights on both ranks (parameters and BatchNorm buffers), equal to last.pt.
    w0, w1 = (torch.load(report / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2  # each rank's RNG streams, for an exact resume
    last = ckpt["model"]
    assert w0.keys() == last.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"{k} differs between ranks"
        assert torch.equal(w0[k], last[k]), f"{k} differs from last.pt"
