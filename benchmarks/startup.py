"""Cold start: wall time of whole ``vidfake`` commands beside ``python -c "import torch"``.

Issue 13's target: ``vidfake photo.jpg`` within 1.5 s of importing torch. Each command runs as a fresh
process (what a user's shell does), interleaved round by round so load drifts hit every row alike.

    python benchmarks/startup.py [--runs 7]

Prints a table (median, min, max wall seconds; median beyond ``import torch``) and writes
benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "startup.json"


def _vidfake() -> list[str]:
    exe = Path(sys.executable).with_name("vidfake")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "vidfake"]


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {run.returncode}: {run.stderr[-500:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        photo.write_bytes((REPO / "samples" / "real_photo.jpg").read_bytes())
        clip = REPO / "samples" / "real_face.mp4"
        rows = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "vidfake --help": [*_vidfake(), "--help"],
            "vidfake photo.jpg": [*_vidfake(), str(photo)],
            "vidfake clip.mp4 (3.2 s, 320x320)": [*_vidfake(), str(clip)],
        }
        for cmd in rows.values():  # warm the page cache: the first run of a cold disk is not start-up
            _wall(cmd)
        times: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.runs):
            for name, cmd in rows.items():
                times[name].append(_wall(cmd))
    torch_median = statistics.median(times['python -c "import torch"'])
    load = os.getloadavg()[0]
    print(f"cold start, {args.runs} runs each, interleaved; load average {load:.1f}")
    print(f"{'command':<36}{'median s':>10}{'min s':>8}{'max s':>8}{'beyond torch':>14}")
    out = {}
    for name, values in times.items():
        med = statistics.median(values)
        out[name] = {"median_s": round(med, 3), "min_s": round(min(values), 3), "max_s": round(max(values), 3),
                     "beyond_import_torch_s": round(med - torch_median, 3)}
        print(f"{name:<36}{med:>10.2f}{min(values):>8.2f}{max(values):>8.2f}{med - torch_median:>+14.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": args.runs, "load_average": load, "rows": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
