"""Soak of ``vidfake miner`` on loopback: a thousand mixed challenges at 16 in flight (issue 7).

The miner runs as a user runs it, ``vidfake miner --offline`` in its own process (a real ``bt.Axon`` on
127.0.0.1, local wallets, no chain); local validators (real ``bt.Dendrite``, the validators' 9 s timeout)
send image and video challenges built as validators build them (256x256 JPEG q75; video clips of 8-137
frames as base85+zlib JPEG frames), with a share of malformed payloads mixed in, 16 requests in flight.
The miner's resident memory is sampled from ``/proc/<pid>/status`` throughout.

Reported: answered (HTTP 200 with a valid prediction), valid, refused malformed payloads (400), p50/p99
latency as the validator sees it, and the miner's RSS when ready, after warm-up (the first 10% of the
requests), at the middle and at the end. Growth after warm-up must stay within 10%, measured as the
median of the readings in the last third after warm-up over the median of those in the first third:
the allocator returns and takes back hundreds of MB as large frame arrays come and go, so one reading
against another can swing by 30% with no trend (the single-reading figure is reported too).

    python benchmarks/soak_miner.py                          # tiny weights, 1,000 challenges
    python benchmarks/soak_miner.py --weights default --requests 2000

Prints a table and writes ``benchmarks/results/soak_miner.json``. Content: scikit-image's astronaut photo
(a real face) and synthetic frames; timings depend on the machine and on a shared one vary run to run.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np

import vidfake

vidfake.use_offline_hubs()  # before bittensor, datasets or transformers are imported

from vidfake.miner.client import (  # noqa: E402
    Challenge,
    LocalValidator,
    axon_target,
    challenge_from_frames,
    challenge_from_image,
    create_local_wallet,
    free_port,
    percentiles,
)
from vidfake.miner.protocol import ImageSynapse, VideoSynapse  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "soak_miner.json"
MAX_GROWTH = 0.10  # RSS growth allowed after warm-up
WARMUP_SHARE = 0.10


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


# --------------------------------------------------------------------------------------------- challenges


def _photo(size: int) -> np.ndarray:
    from PIL import Image
    from skimage.data import astronaut

    return np.asarray(Image.fromarray(astronaut()).resize((size, size), Image.BILINEAR))


def _clip(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` frames panning over the photograph, or over a synthetic scene (no face), ``(n, 320, 320, 3)``."""
    if rng.random() < 0.7:
        base = _photo(384)
        dx, dy = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        return np.stack([base[(dy * t) % 64 : (dy * t) % 64 + 320, (dx * t) % 64 : (dx * t) % 64 + 320]
                         for t in range(n)])
    y, x = np.mgrid[0:320, 0:320]
    frames = []
    for t in range(n):
        frame = np.dstack([(x + 3 * t) % 256, (y + 2 * t) % 256, ((x + y) // 2 + t) % 256]).astype(np.uint8)
        frames.append(frame)
    return np.stack(frames)


def _malformed(rng: np.random.Generator) -> Challenge:
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return Challenge(ImageSynapse(image="not base64 at all!" * 10), "malformed: bad base64", 0)
    if kind == 1:
        return Challenge(ImageSynapse(image=base64.b64encode(rng.bytes(3000)).decode()), "malformed: noise", 0)
    if kind == 2:
        blob = zlib.compress(rng.bytes(20_000))[:500]
        return Challenge(VideoSynapse(video=base64.b85encode(blob).decode()), "malformed: truncated zlib", 0)
    return Challenge(VideoSynapse(video=base64.b85encode(zlib.compress(b"\x00" * 50_000)).decode()),
                     "malformed: no JPEG frame", 0)


def build_challenges(n: int, broken_share: float, image_share: float, seed: int) -> list[Challenge]:
    """``n`` well-formed challenges drawn from a pool of distinct ones, plus malformed ones mixed in."""
    rng = np.random.default_rng(seed)
    photo = _photo(512)
    images = []
    for k in range(16):
        top, left = int(rng.integers(0, 192)), int(rng.integers(0, 192))
        crop = photo[top : top + 320, left : left + 320] if k % 2 else np.roll(photo, 40 * k, axis=1)
        images.append(challenge_from_image(crop, source=f"image-{k}"))
    videos = [challenge_from_frames(_clip(int(m), rng), source=f"video-{k}-{m}f")
              for k, m in enumerate(rng.integers(8, 138, size=12))]
    out = []
    for _ in range(n):
        pool = images if rng.random() < image_share else videos
        out.append(pool[int(rng.integers(0, len(pool)))])
        if rng.random() < broken_share:
            out.append(_malformed(rng))
    return out


# --------------------------------------------------------------------------------------------- the miner


class MinerProcess:
    """``vidfake miner --offline`` in a subprocess, its log in a file."""

    def __init__(self, args, wallet_path: str, validator_hotkey: str, log_path: Path):
        self.port = free_port()
        cmd = [sys.executable, "-m", "vidfake", "miner", "--offline", "--offline.allow_hotkeys", validator_hotkey,
               "--wallet.name", "miner", "--wallet.path", wallet_path, "--axon.port", str(self.port),
               "--weights", args.weights, "--workers", str(args.workers), "--rate_limit.per_minute", "0",
               "--log.level", "INFO", "--log.summary_s", "3600"]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the miner exited with code {self.proc.returncode}; see {self.log_path}")
            if b"miner axon listening" in self.log_path.read_bytes():
                return time.monotonic() - t0
            time.sleep(0.5)
        raise RuntimeError(f"the miner did not start within {timeout_s:.0f} s; see {self.log_path}")

    def stop(self) -> str:
        """SIGINT (the miner logs its summary and exits); returns the last summary line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if "summary:" in ln]
        return lines[-1] if lines else ""


class RssSampler(threading.Thread):
    """Samples a process's RSS every ``period_s`` seconds."""

    def __init__(self, pid: int, period_s: float = 0.5):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.period_s = pid, period_s
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._halt.wait(self.period_s):
            self.samples.append((round(time.monotonic() - t0, 2), round(_rss_mb(self.pid), 1)))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# --------------------------------------------------------------------------------------------- the soak


def soak(args) -> dict:
    challenges = build_challenges(args.requests, args.broken_share, args.image_share, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        wallets = {n: create_local_wallet(n, tmp) for n in ("miner", "validator")}
        log_path = Path(tmp) / "miner.log"
        miner = MinerProcess(args, tmp, wallets["validator"].hotkey.ss58_address, log_path)
        try:
            startup_s = miner.wait_ready(args.startup_timeout)
            validator = LocalValidator(wallets["validator"], axon_target(wallets["miner"].hotkey.ss58_address,
                                                                         miner.port), max_concurrency=args.concurrency)
            sampler = RssSampler(miner.proc.pid)
            sampler.start()
            rss = {"ready": _rss_mb(miner.proc.pid)}
            results, marks = [], {}
            chunk = max(args.concurrency, len(challenges) // args.chunks)
            t0 = time.perf_counter()
            for start in range(0, len(challenges), chunk):
                part = challenges[start : start + chunk]
                results += validator.query_sync(part, concurrency=args.concurrency)
                done = len(results) / len(challenges)
                now = _rss_mb(miner.proc.pid)
                marks[len(results)] = now
                print(f"{len(results):>5}/{len(challenges)} sent, {time.perf_counter() - t0:6.0f} s, "
                      f"miner RSS {now:7.1f} MiB, valid so far {sum(r.valid for r in results)}", flush=True)
                if "start" not in rss and done >= WARMUP_SHARE:
                    rss["start"] = now
                if "middle" not in rss and done >= 0.5:
                    rss["middle"] = now
            wall = time.perf_counter() - t0
            rss["end"] = _rss_mb(miner.proc.pid)
            sampler.stop()
        finally:
            summary_line = miner.stop()
        miner_log_tail = log_path.read_text(errors="replace").splitlines()[-5:]
    return _report(args, challenges, results, rss, sampler.samples, marks, wall, startup_s, summary_line,
                   miner_log_tail)


def _report(args, challenges, results, rss, samples, marks, wall, startup_s, summary_line, log_tail) -> dict:
    rows = {}
    well = [(c, r) for c, r in zip(challenges, results, strict=True) if not c.source.startswith("malformed")]
    bad = [(c, r) for c, r in zip(challenges, results, strict=True) if c.source.startswith("malformed")]
    for modality in ("image", "video", "all"):
        sel = [r for c, r in well if modality in ("all", c.modality)]
        lat = percentiles([r.latency_ms for r in sel])
        rows[modality] = {
            "sent": len(sel),
            "answered": sum(r.status_code == 200 for r in sel),
            "valid": sum(r.valid for r in sel),
            "p50_ms": round(lat["median"], 1),
            "p99_ms": round(lat["p99"], 1),
            "max_ms": round(max((r.latency_ms for r in sel), default=float("nan")), 1),
            "over_9s": sum(r.latency_ms >= 9000 for r in sel),
            "status_codes": _counts(r.status_code for r in sel),
        }
    growth = (rss["end"] - rss["start"]) / rss["start"] if rss.get("start") else float("nan")
    trend = _trend(marks, len(challenges))
    outcomes = re.search(r"outcomes (\{.*?\}\}) \|", summary_line)
    plans = re.search(r"plans (\{.*?\}\}) \|", summary_line)
    import torch

    return {
        "benchmark": "vidfake miner soak on loopback (vidfake miner --offline, bt.Dendrite validators)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "weights": args.weights,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "torch_threads_client": torch.get_num_threads(), "load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "settings": {"requests": args.requests, "concurrency": args.concurrency, "workers": args.workers,
                     "threads": args.threads, "image_share": args.image_share, "broken_share": args.broken_share,
                     "seed": args.seed},
        "startup_s": round(startup_s, 1),
        "wall_s": round(wall, 1),
        "throughput_per_min": round(len(results) / wall * 60.0, 1),
        "rows": rows,
        "malformed": {"sent": len(bad), "refused_400": sum(r.status_code == 400 for _, r in bad),
                      "status_codes": _counts(r.status_code for _, r in bad)},
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "rss_growth_after_warmup": round(growth, 4),  # end reading over the warm-up reading
        "rss_trend_after_warmup": round(trend, 4),  # median of the last third over the first third
        "rss_growth_ok": bool(trend <= MAX_GROWTH),
        "rss_max_mb": max((v for _, v in samples), default=0.0),
        "rss_after_each_chunk_mb": {str(k): round(v, 1) for k, v in marks.items()},
        # Every request that did not end as expected (a valid answer; malformed: a 400), for diagnosis.
        "anomalies": [{"source": c.source, "modality": c.modality, "status": r.status_code,
                       "message": (r.status_message or "")[:200], "prediction": r.prediction,
                       "latency_ms": r.latency_ms}
                      for c, r in zip(challenges, results, strict=True)
                      if (r.status_code != 400 if c.source.startswith("malformed") else not r.valid)],
        "miner_outcomes": outcomes.group(1) if outcomes else None,
        "miner_plans": plans.group(1) if plans else None,
        "miner_summary": summary_line.split("summary:", 1)[-1].strip(),
        "miner_log_tail": log_tail,
    }


def _trend(marks: dict[int, float], total: int) -> float:
    """RSS growth after warm-up from the per-chunk readings: median of the last third of the readings
    taken after warm-up over the median of the first third."""
    post = [v for k, v in sorted(marks.items()) if k / total > WARMUP_SHARE]
    if len(post) < 3:
        return float("nan")
    third = len(post) // 3
    return statistics.median(post[-third:]) / statistics.median(post[:third]) - 1.0


def _counts(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _print(doc: dict) -> None:
    print()
    print(f"{'modality':<8} {'sent':>6} {'answered':>9} {'valid':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'>9 s':>5}  status codes")
    for modality, r in doc["rows"].items():
        print(f"{modality:<8} {r['sent']:>6} {r['answered']:>9} {r['valid']:>7} {r['p50_ms']:>8.0f} "
              f"{r['p99_ms']:>8.0f} {r['max_ms']:>8.0f} {r['over_9s']:>5}  {r['status_codes']}")
    m = doc["malformed"]
    print(f"malformed payloads: {m['refused_400']}/{m['sent']} refused with 400 ({m['status_codes']})")
    r = doc["rss_mb"]
    print(f"miner RSS MiB: ready {r['ready']:.0f}, after warm-up {r['start']:.0f}, middle {r['middle']:.0f}, "
          f"end {r['end']:.0f}, max {doc['rss_max_mb']:.0f}; end over warm-up reading "
          f"{doc['rss_growth_after_warmup'] * 100:+.1f}%; trend after warm-up (median of the last third of "
          f"the readings over the first third) {doc['rss_trend_after_warmup'] * 100:+.1f}% "
          f"({'ok' if doc['rss_growth_ok'] else 'OVER'} the 10% bound)")
    print(f"{doc['wall_s']:.0f} s wall, {doc['throughput_per_min']:.0f} requests/min at concurrency "
          f"{doc['settings']['concurrency']}, {doc['settings']['workers']} worker(s), weights {doc['weights']}")
    print(f"miner outcomes {doc['miner_outcomes']}, plans {doc['miner_plans']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="tiny", help="'tiny', 'default' or a weights folder (default: %(default)s)")
    p.add_argument("--requests", type=int, default=1000, help="well-formed challenges (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="miner detection workers (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="miner torch threads (default: %(default)s)")
    p.add_argument("--image-share", type=float, default=0.6, help="share of image challenges (default: 0.6)")
    p.add_argument("--broken-share", type=float, default=0.05,
                   help="malformed payloads mixed in, per well-formed challenge (default: %(default)s)")
    p.add_argument("--chunks", type=int, default=20, help="RSS is read after each of this many chunks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--startup-timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.requests < 10 or args.concurrency < 1 or not 0 <= args.broken_share < 1:
        p.error("need --requests >= 10, --concurrency >= 1 and 0 <= --broken-share < 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    doc = soak(args)
    _print(doc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    ok = doc["rss_growth_ok"] and doc["rows"]["all"]["valid"] == doc["rows"]["all"]["sent"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
