"""Per-model CPU latency and memory of vidfake's networks.

    python benchmarks/models.py                    # all rows, table + benchmarks/results/models.json
    python benchmarks/models.py --rows tall_swin_compact,npr_resnet --runs 9

Each row runs in its own subprocess (so peak memory is that model's alone) with ``torch`` limited to
``--threads`` threads (2 by default): build the model, warm up, then time ``--runs`` forward passes per
batch size under ``torch.inference_mode`` and report the median and the fastest; compact models also
time a training step (forward + backward + AdamW, batch 8), and every row counts multiply-accumulates
per sample (``torch.utils.flop_counter``), which the machine's load does not change. Memory is the growth of the process's peak resident
set (``resource.getrusage(...).ru_maxrss``) from after the imports to after the last pass, so it
includes the weights, activations and allocator caches. The machine may be shared: the load average at
start and end is recorded with the results.

Rows are plain functions registered in ``ROWS``; end-to-end rows (e.g. ``Detector.detect``) can be
added beside the per-model ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "models.json"

# name -> function(args) -> result dict; run in a child process by _run_row.
ROWS: dict[str, Callable[[argparse.Namespace], dict]] = {}


def row(fn: Callable[[argparse.Namespace], dict]) -> Callable[[argparse.Namespace], dict]:
    """Register a benchmark row under its function name."""
    ROWS[fn.__name__] = fn
    return fn


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _time(fn: Callable[[], object], runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1), "runs": runs}


def model_row(
    name: str, args: argparse.Namespace, batches: tuple[int, ...], train_batch: int | None = None
) -> dict:
    """Time one registered model: forward at each batch size, optionally one training step."""
    import torch

    from vidfake.temporal_models import create_model, get_config

    torch.set_num_threads(args.threads)
    rss_before = _peak_rss_mb()
    torch.manual_seed(0)
    config = get_config(name)
    model = create_model(name)
    params = sum(p.numel() for p in model.parameters())

    def example(batch: int) -> torch.Tensor:
        c, h, w = config.input_size
        if config.input_kind == "mouth_sequence":
            return torch.randn(batch, c, config.num_frames, h, w)
        return torch.randn(batch, c, h, w)

    result: dict = {"model": name, "params_m": round(params / 1e6, 2), "input": list(config.input_size)}
    if config.input_kind == "mouth_sequence":
        result["input"] = [config.input_size[0], config.num_frames, *config.input_size[1:]]
    # Multiply-accumulates per sample: the load-independent cost (a shared machine skews the timings).
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(example(1))
    result["gmacs_per_sample"] = round(counter.get_total_flops() / 2e9, 3)
    for batch in batches:
        x = example(batch)
        with torch.inference_mode():
            result[f"forward_b{batch}"] = _time(
                lambda x=x: model(x), args.runs if batch == 1 else args.runs_large, 2
            )
    if train_batch is not None:
        model.train()
        x, y = example(train_batch), torch.arange(train_batch) % 2
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        result[f"train_step_b{train_batch}"] = _time(step, args.runs_large, 1)
    result["peak_rss_delta_mb"] = round(_peak_rss_mb() - rss_before, 1)
    return result


@row
def tall_swin_compact(args: argparse.Namespace) -> dict:
    return model_row("tall_swin_compact", args, (1, 8), train_batch=8)


@row
def tall_swin_base(args: argparse.Namespace) -> dict:
    # Swin-B on 2 cores takes about 1.5 s a batch of 8; time it only when asked.
    return model_row("tall_swin_base", args, (1, 8) if args.full else (1,))


@row
def lip_compact_mstcn(args: argparse.Namespace) -> dict:
    return model_row("lip_compact_mstcn", args, (1, 8), train_batch=8)


@row
def lipforensics_mstcn(args: argparse.Namespace) -> dict:
    return model_row("lipforensics_mstcn", args, (1, 8))


@row
def efficientnet_lite0_detector(args: argparse.Namespace) -> dict:
    return model_row("efficientnet_lite0_detector", args, (1, 8), train_batch=8)


@row
def npr_resnet(args: argparse.Namespace) -> dict:
    return model_row("npr_resnet", args, (1, 8), train_batch=8)


def _run_row(name: str, args: argparse.Namespace) -> dict:
    """Run one row in a fresh interpreter and return its JSON result (or the error)."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
        "--runs-large",
        str(args.runs_large),
    ] + (["--full"] if args.full else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        return {"row": name, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["row"] = name
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def _table(results: list[dict]) -> str:
    head = (
        f"{'row':<28}{'params M':>9}{'GMACs':>8}{'fwd b1 ms':>11}{'fwd b8 ms':>11}{'train b8 ms':>13}"
        f"{'peak RSS MB':>13}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['row']:<28}  error: {r['error']}")
            continue

        def cell(key: str, r: dict = r) -> str:
            return f"{r[key]['median_ms']:.0f}" if key in r else "-"

        lines.append(
            f"{r['row']:<28}{r['params_m']:>9.2f}{r.get('gmacs_per_sample', float('nan')):>8.2f}"
            f"{cell('forward_b1'):>11}{cell('forward_b8'):>11}"
            f"{cell('train_step_b8'):>13}{r['peak_rss_delta_mb']:>13.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--runs", type=int, default=7, help="timed runs at batch 1")
    parser.add_argument(
        "--runs-large", type=int, default=5, help="timed runs at batch 8 and for training steps"
    )
    parser.add_argument("--full", action="store_true", help="also time tall_swin_base at batch 8")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per row")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # inside the per-row subprocess
        print(json.dumps(ROWS[args.child](args)))
        return 0

    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    load_start = os.getloadavg()
    results = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.append(_run_row(name, args))
    report = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "loadavg_start": [round(v, 2) for v in load_start],
            "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        },
        "settings": {"runs_b1": args.runs, "runs_b8": args.runs_large, "warmup": 2},
        "rows": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(results))
    print(
        f"load average {report['machine']['loadavg_start']} -> {report['machine']['loadavg_end']}; "
        f"wrote {args.out}"
    )
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
