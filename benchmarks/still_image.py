"""Still-image latency: the shipped still-image detector (the stability score; its head weighted 0), the
same file with the head's logit blended in at weight 1, the head without the stability pass (one trunk
pass), and the 2D fine-tune.

All run in one process on the same inputs, alternating run by run, so machine load hits them alike:
``Detector.detect`` on the subnet's 256 px wire image (base64 JPEG, decoded as the miner does; target
<= 32 ms, issue 16) and on a 1024 x 768 photo. Inputs come from the project's own sample
(samples/real_face.mp4), as in ``benchmarks/detect.py``.

    python benchmarks/still_image.py [--runs 21] [--threads 2]

Prints a table (median and min per path) and writes benchmarks/results/still_image.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import vidfake

vidfake.use_offline_hubs()

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "still_image.json"
sys.path.insert(0, str(REPO / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=21)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    from detect import _sample_frames

    from vidfake.detector import Detector
    from vidfake.preprocessing.images import subnet_image
    from vidfake.preprocessing.wire import decode_image_b64, encode_image_b64

    probe = Detector.from_pretrained("default", threads=args.threads)
    if probe.still is None:
        raise SystemExit("the shipped detector.json names no image_probe: nothing to compare")
    if probe.still.rigid is None:
        raise SystemExit(f"{probe.still.head_path}: no stability term in the shipped probe: nothing to compare")
    finetune = Detector(replace(probe.config, image_probe=None), threads=args.threads)
    import tempfile

    from vidfake.scene import SceneHead

    tmp = tempfile.TemporaryDirectory()
    one_pass = Path(tmp.name) / "probe_without_rigid.safetensors"  # the same head, no RIGID term
    SceneHead.load(probe.still.head_path).save(one_pass, {"candidate": "lite0_multi"})
    no_rigid = Detector(replace(probe.config, image_probe=str(one_pass)), threads=args.threads)
    from vidfake.probe import save_probe

    blended = Path(tmp.name) / "probe_and_score.safetensors"  # the same file, the head's logit weighted 1
    save_probe(blended, SceneHead.load(probe.still.head_path), replace(probe.still.rigid, probe_weight=1.0))
    blend = Detector(replace(probe.config, image_probe=str(blended)), threads=args.threads)
    wire = encode_image_b64(subnet_image(_sample_frames(1, (384, 384))[0]))
    photo = _sample_frames(1, (1024, 768))[0]
    inputs = {"image 256 (wire b64)": lambda d: d.detect(decode_image_b64(wire), source="img"),
              "photo 1024x768": lambda d: d.detect(photo, kind="image", source="photo")}
    weight = probe.still.rigid.probe_weight
    paths = {f"shipped ({probe.still_model_name}, head weight {weight:g})": probe,
             "head + stability score, equal weight": blend,
             "head alone, no stability pass": no_rigid, f"fine-tune ({probe.config.image_model})": finetune}
    times: dict[tuple[str, str], list[float]] = {}
    for name, fn in inputs.items():
        for det in paths.values():
            fn(det)  # warm-up: loads the networks
        for _ in range(args.runs):
            for label, det in paths.items():  # alternate, so load changes hit both alike
                t = time.perf_counter()
                fn(det)
                times.setdefault((name, label), []).append((time.perf_counter() - t) * 1000)
    rows = {f"{name} | {label}": {"median_ms": round(statistics.median(v), 1), "min_ms": round(min(v), 1),
                                  "runs": len(v)} for (name, label), v in times.items()}
    width = max(map(len, rows))
    print(f"{'input | path':<{width}}  median ms  min ms")
    for key, r in rows.items():
        print(f"{key:<{width}}  {r['median_ms']:>9}  {r['min_ms']:>6}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "load_average": os.getloadavg()[0], "rows": rows},
                                   indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
