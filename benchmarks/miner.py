"""Round-trip latency and sustained throughput of ``vidfake miner`` on loopback.

An offline miner (real ``bt.Axon`` on 127.0.0.1, local wallets) is queried by real ``bt.Dendrite``
validators with image and video challenges built as validators build them (256x256 JPEG q75; video
clips of 8-137 frames as base85+zlib JPEG frames), at 1, 4 and 16 requests in flight. Latency is
what the validator sees (send to answer); requests per minute is answered requests over wall time.

    python benchmarks/miner.py                        # tiny weights, and the shipped ones if present
    python benchmarks/miner.py --weights tiny --requests 24

Prints a table and writes ``benchmarks/results/miner.json``. Content: scikit-image's astronaut photo
(a real face), panned to make clips; timings depend on the machine, and on a shared one vary run to run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import vidfake

vidfake.use_offline_hubs()  # before bittensor, datasets or transformers are imported

from vidfake.miner.client import (  # noqa: E402
    LocalValidator,
    challenge_from_frames,
    challenge_from_image,
    create_local_wallet,
    free_port,
    percentiles,
)
from vidfake.miner.guard import Guard, GuardConfig, Membership  # noqa: E402
from vidfake.miner.server import MinerConfig, MinerServer, detector_factory  # noqa: E402
from vidfake.miner.service import MinerService, ServiceConfig  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "miner.json"


def _photo(size: int) -> np.ndarray:
    from PIL import Image
    from skimage.data import astronaut

    return np.asarray(Image.fromarray(astronaut()).resize((size, size), Image.BILINEAR))


def _clip(n: int, size: int = 384) -> np.ndarray:
    base = _photo(size + 64)
    return np.stack([base[(t % 32) : (t % 32) + size, (t % 64) : (t % 64) + size] for t in range(n)])


def _shipped_weights_present() -> bool:
    from vidfake.detector import DETECTOR_FILE, shipped_weights_dir

    return (shipped_weights_dir() / DETECTOR_FILE).is_file()


def bench_weights(weights: str, args, wallets) -> list[dict]:
    allow = (wallets["validator"].hotkey.ss58_address,)
    config = MinerConfig(
        port=free_port(),
        ip="127.0.0.1",
        offline=True,
        allow_hotkeys=allow,
        weights=weights,
        guard=GuardConfig(rate_limit_per_minute=0),
        service=ServiceConfig(workers=args.workers),
        summary_s=3600.0,
    )
    service = MinerService(detector_factory(weights, threads=args.threads), config.service)
    server = MinerServer(wallets["miner"], Guard(config.guard, Membership.offline(allow)), service, config)
    rng = np.random.default_rng(0)
    rows = []
    t0 = time.perf_counter()
    with server:
        startup_s = time.perf_counter() - t0
        client = LocalValidator(
            wallets["validator"], server.axon.info(), max_concurrency=max(args.concurrency)
        )
        image = challenge_from_image(_photo(512))
        videos = [challenge_from_frames(_clip(int(n))) for n in rng.integers(8, 138, size=args.requests)]
        client.query_sync([image, videos[0]])  # warm the connection and the workers
        for modality in ("image", "video"):
            for c in args.concurrency:
                n = max(args.requests, c)
                challenges = (
                    [image] * n if modality == "image" else [videos[i % len(videos)] for i in range(n)]
                )
                before = service.summary().outcomes.get(modality, {})
                t = time.perf_counter()
                results = client.query_sync(challenges, concurrency=c)
                wall = time.perf_counter() - t
                after = service.summary().outcomes.get(modality, {})
                delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                lat = percentiles([r.latency_ms for r in results])
                rows.append(
                    {
                        "weights": weights,
                        "modality": modality,
                        "concurrency": c,
                        "requests": n,
                        "median_ms": round(lat["median"], 1),
                        "p95_ms": round(lat["p95"], 1),
                        "p99_ms": round(lat["p99"], 1),
                        "requests_per_min": round(n / wall * 60.0, 1),
                        "valid": sum(r.valid for r in results),
                        "over_9s": sum(r.latency_ms >= 9000 for r in results),
                        "outcomes": {k: v for k, v in delta.items() if v},
                        "startup_s": round(startup_s, 1),
                        "mean_frames": round(float(np.mean([r.frames for r in results])), 1),
                    }
                )
                print(_row(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'weights':<8} {'modality':<6} {'conc':>4} {'n':>4} {'median ms':>10} {'p95 ms':>9} {'p99 ms':>9} "
    f"{'req/min':>8} {'valid':>6}  outcomes"
)


def _row(r: dict) -> str:
    return (
        f"{r['weights']:<8} {r['modality']:<6} {r['concurrency']:>4} {r['requests']:>4} "
        f"{r['median_ms']:>10.0f} "
        f"{r['p95_ms']:>9.0f} {r['p99_ms']:>9.0f} {r['requests_per_min']:>8.0f} "
        f"{r['valid']:>3}/{r['requests']:<3} {r['outcomes']}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--weights",
        nargs="+",
        default=None,
        help="weights to serve (default: tiny, and default if the shipped weights are present)",
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=32, help="requests per cell (at least the concurrency)")
    p.add_argument("--workers", type=int, default=ServiceConfig().workers)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    weights = args.weights or (["tiny", "default"] if _shipped_weights_present() else ["tiny"])
    if args.weights is None and "default" not in weights:
        print("shipped weights not found: benchmarking the tiny test weights only", file=sys.stderr)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        wallets = {n: create_local_wallet(n, tmp) for n in ("miner", "validator")}
        print(HEADER)
        rows = [r for w in weights for r in bench_weights(w, args, wallets)]
    import torch

    doc = {
        "benchmark": "vidfake miner round trip on loopback (bt.Axon + bt.Dendrite)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            # a shared machine: the 1-minute load average before and after says how noisy the run was
            "load_avg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "workers": args.workers,
        "requests_per_cell": args.requests,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
