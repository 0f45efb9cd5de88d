"""Worker for tests/test_ddp.py, run by ``torchrun --nproc_per_node=2``: trains a tiny model with the
engine on CPU (gloo) and writes what this rank saw and did to ``REPORT_DIR/rank{RANK}.json`` (and its
final weights to ``rank{RANK}.pt``).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_train_script.py OUT REPORT
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from vidfake.training.config import TrainConfig
from vidfake.training.engine import fit

N_TRAIN, N_VAL = 64, 40


class RecordingDataset(Dataset):
    """Two separable blobs; remembers which indices this process read."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 2, (n,), generator=g)
        self.x = torch.randn(n, 8, generator=g) + (2.0 * self.y[:, None].float() - 1.0)
        self.seen: list[int] = []

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        self.seen.append(int(i))
        return self.x[i], self.y[i]


def main(out_dir: str, report_dir: str) -> None:
    rank = int(os.environ["RANK"])
    out = Path(out_dir).resolve()
    written: list[str] = []

    def audit(event: str, args: tuple) -> None:
        # Every file the engine commits goes through os.replace (audited as os.rename); a plain
        # write-mode open() under out_dir would also show here.
        if event == "os.rename" and str(args[1]).startswith(str(out)):
            written.append(Path(args[1]).name)
        elif event == "open" and isinstance(args[0], str) and args[0].startswith(str(out)) \
                and isinstance(args[1], str) and any(c in args[1] for c in "wax+"):
            written.append(Path(args[0]).name)

    sys.addaudithook(audit)

    train, held_out = RecordingDataset(N_TRAIN, 1), RecordingDataset(N_VAL, 2)
    val = TensorDataset(held_out.x, held_out.y)
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
    cfg = TrainConfig(name="ddp", model="mlp", out_dir=str(out), epochs=3, batch_size=8, lr=1e-2,
                      warmup_epochs=1.0, device="cpu", seed=0)
    per_epoch: list[list[int]] = []

    def on_epoch_end(stats) -> None:
        per_epoch.append(list(train.seen))
        train.seen.clear()

    res = fit(model, train, val, cfg, on_epoch_end=on_epoch_end, restore_best=False)
    report = {
        "rank": rank,
        "world_size": int(os.environ["WORLD_SIZE"]),
        "seen": per_epoch,
        "written": written,
        "best_auc": res.best_auc,
        "epochs_run": res.epochs_run,
        "val_auc": [h.val_auc for h in res.history],
        "train_loss": [h.train_loss for h in res.history],
        "val_n": len(res.val_probs),
    }
    Path(report_dir, f"rank{rank}.json").write_text(json.dumps(report))
    torch.save(model.state_dict(), Path(report_dir, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
