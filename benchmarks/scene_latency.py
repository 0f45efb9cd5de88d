"""Latency and memory of the scene branch (``vidfake.scene.SceneBranch``) from a file to a logit.

Two inputs, written to a temporary folder: a 129-frame 256 x 256 wire-style video (30 fps, JPEG frames as
validators send them, here as Motion-JPEG mp4) and a 10 s 1280 x 720 clip at 30 fps (H.264). Each run
opens the file, plans the windows at the branch's common rate, decodes only those frames, prepares them
and scores them; median of ``--repeats`` runs after one warm-up, at ``--threads`` torch threads.

    python benchmarks/scene_latency.py --threads 2 --repeats 5 --windows 1 --windows 4
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _clip(t: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return np.stack([np.roll(base, 4 * k, axis=1) for k in range(t)])


def _score_file(branch, path: Path, windows: int) -> tuple[float, dict[str, float]]:
    from vidfake.branches import VideoContext
    from vidfake.preprocessing.decoders import open_video

    t = {}
    t0 = time.perf_counter()
    with open_video(path, max_side=1280) as v:
        plan = branch.plan(v.num_frames, windows, v.fps)
        wanted = sorted({int(i) for s in plan.spans for i in s.indices})
        frames = v.get_frames(wanted)
        fps = v.fps
    t["decode"] = time.perf_counter() - t0
    ctx = VideoContext(frames, {i: k for k, i in enumerate(wanted)}, [], fps, {})
    t1 = time.perf_counter()
    inputs = branch.prepare(ctx, plan.spans)
    t["prepare"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    out = branch.score(ctx, inputs)
    t["score"] = time.perf_counter() - t2
    t["total"] = time.perf_counter() - t0
    return out.logit, t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (default: %(default)s)")
    p.add_argument("--windows", type=int, action="append", help="windows per clip (repeatable; default 1)")
    args = p.parse_args(argv)
    import torch

    from vidfake.preprocessing.writers import write_video
    from vidfake.scene import load_scene_branch

    torch.set_num_threads(args.threads)
    branch = load_scene_branch()
    _ = branch.model  # load the trunk and head outside the timings
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"threads": args.threads, "repeats": args.repeats, "rss_after_load_mb": round(rss_loaded)}
    with tempfile.TemporaryDirectory() as tmp:
        wire = Path(tmp) / "wire_129x256.mp4"
        write_video(wire, _clip(129, 256, 256), 30.0, codec="mjpeg", lossless=False,
                    options={"qmin": "7", "qmax": "7"})
        hd = Path(tmp) / "clip_10s_720p.mp4"
        write_video(hd, _clip(300, 720, 1280), 30.0, codec="libx264", lossless=False)
        for name, path in (("wire 129 frames 256x256 @30fps", wire), ("10 s 1280x720 @30fps", hd)):
            for windows in args.windows or [1]:
                _score_file(branch, path, windows)  # warm-up
                runs = [_score_file(branch, path, windows)[1] for _ in range(args.repeats)]
                med = {k: round(1000 * statistics.median(r[k] for r in runs)) for k in runs[0]}
                report[f"{name}, {windows} window(s)"] = {f"{k}_ms": v for k, v in med.items()}
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
