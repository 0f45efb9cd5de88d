"""Dump the detector's outputs on samples/ and a fixed dozen dev files, to compare two code versions.

    python benchmarks/regression_outputs.py --out runs/outputs_before.json
    python benchmarks/regression_outputs.py --out runs/outputs_after.json --compare runs/outputs_before.json

A refactor that promises "behaviour unchanged" is held to it here: every probability (fused, per branch,
per clip, per frame) must agree within ``--tol`` (1e-6 by default), and the verdicts, branch statuses,
face counts and frame lists must be equal.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def dev_files(n_per_kind: int = 3) -> list[Path]:
    """A fixed, label-balanced pick: images, face videos, scene videos (first rows of each kind by path)."""
    if not (DATA / "manifest.csv").is_file():
        return []
    rows = sorted(csv.DictReader(open(DATA / "manifest.csv")), key=lambda r: r["path"])
    scene = ("text-to-video", "image-to-video", "T2V", "Allegro", "LaVie", "SEINE", "CogVideoX")
    picks: list[Path] = []
    groups = {
        "images": [r for r in rows if r["kind"] == "image"],
        "real videos": [r for r in rows if r["kind"] == "video" and r["label"] == "real"],
        "face fakes": [r for r in rows if r["kind"] == "video" and r["label"] == "fake"
                       and not any(s in r["method"] for s in scene)],
        "scene fakes": [r for r in rows if r["kind"] == "video" and r["label"] == "fake"
                        and any(s in r["method"] for s in scene)],
    }
    for name, got in groups.items():
        k = n_per_kind + 1 if name == "images" else n_per_kind
        got = sorted(got, key=lambda r: (r["label"], r["path"]))
        step = max(1, len(got) // k)
        picks += [DATA / r["path"] for r in got[step // 2 :: step][:k]]
    return picks


def summarise(result) -> dict:
    return {
        "p": result.probability_fake, "verdict": result.verdict, "three_class": list(result.three_class),
        "branches": [[b.name, b.probability, b.status, b.model, b.weight] for b in result.branches],
        "clips": [[c.branch, c.start_frame, c.end_frame, c.start_time, c.end_time, c.probability, c.track] for c in result.clips],
        "frames": [[f.frame_index, f.time, f.probability, f.face_found, f.track] for f in result.frames],
        "faces": result.faces_found, "frames_used": result.frames_used, "warnings": list(result.warnings),
        "models": result.models, "mouth_px": result.mouth_roi_native_px,
    }


def compare(a: dict, b: dict, tol: float, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))} differ"]
        return [d for k in a for d in compare(a[k], b[k], tol, f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in compare(x, y, tol, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= tol else [f"{path}: {a!r} != {b!r} (diff {abs(a - b):.3g})"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--compare", default=None, help="an earlier --out file to compare with")
    p.add_argument("--tol", type=float, default=1e-6)
    args = p.parse_args(argv)

    import torch

    from vidfake import Detector

    torch.set_num_threads(1)  # deterministic reductions: the same code gives the same bits
    files = sorted((ROOT / "samples").glob("*.mp4")) + sorted((ROOT / "samples").glob("*.jpg")) + \
        sorted((ROOT / "samples").glob("*.png")) + dev_files()
    out = {}
    with Detector.from_pretrained("default", face_workers=1) as det:
        for f in files:
            out[str(f.relative_to(ROOT.parent))] = summarise(det.detect(f))
            print(f"{f.name}: p={out[str(f.relative_to(ROOT.parent))]['p']:.6f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    if args.compare:
        diffs = compare(json.loads(Path(args.compare).read_text()), out, args.tol)
        print(f"{len(files)} files, {len(diffs)} differences over {args.tol:g}")
        for d in diffs[:50]:
            print("  " + d)
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
