"""The by-hand fuzz run: thousands of hostile inputs through every entry point of vidfake (issue 7).

The same generator and supervisor as ``tests/test_fuzz.py`` (``tests/fuzz``), at a larger size and any
seed. Each case runs in a supervised worker with a deadline and a memory cap; the table counts, per entry
point (library ``detect``, the ``vidfake`` command, the miner's axon handlers, a real axon/dendrite on
loopback), how many cases ended in a valid result, a typed error, or a failure (and which kind).

    python benchmarks/fuzz.py                              # 4,000 cases, seed 0 (~15 min on 2 cores)
    python benchmarks/fuzz.py --seed 7 --scale 0.25        # a quarter of the cases, another seed
    python benchmarks/fuzz.py --seed 0 --only detect/84 cli/39 --verbose   # reproduce reported cases

Prints the table and every failure, and writes ``benchmarks/results/fuzz.json``. Uses the tiny
random-init detector: the fuzz is about robustness, not scores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fuzz package lives with the tests
import vidfake  # noqa: E402

vidfake.use_offline_hubs()  # before bittensor, datasets or transformers are imported

from fuzz.cases import ENTRIES, generate  # noqa: E402
from fuzz.runner import RunOptions, format_summary, run_cases, summarize  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "fuzz.json"
COUNTS = {"detect": 2000, "cli": 500, "miner": 1200, "axon": 300}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="case generator seed (default: %(default)s)")
    p.add_argument("--scale", type=float, default=1.0,
                   help=f"multiply the case counts {COUNTS} by this (default: %(default)s)")
    p.add_argument("--entries", nargs="+", choices=ENTRIES, default=list(ENTRIES), help="entry points to fuzz")
    p.add_argument("--only", nargs="+", metavar="ENTRY/INDEX", default=None,
                   help="run just these cases (ids as printed in a report)")
    p.add_argument("--case-timeout", type=float, default=60.0, help="seconds before a case is a hang")
    p.add_argument("--rss-cap-mb", type=float, default=2048.0,
                   help="growth above the worker's ready RSS that counts as runaway memory")
    p.add_argument("--verbose", action="store_true", help="print every case as it finishes")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.scale <= 0 or args.case_timeout <= 0 or args.rss_cap_mb <= 0:
        p.error("--scale, --case-timeout and --rss-cap-mb must be positive")

    if args.only:
        wanted = {}
        for item in args.only:
            entry, _, index = item.partition("/")
            if entry not in ENTRIES or not index.isdigit():
                p.error(f"--only: {item!r} is not ENTRY/INDEX with ENTRY in {ENTRIES}")
            wanted.setdefault(entry, set()).add(int(index))
        cases = [c for c in generate(args.seed, {e: max(i) + 1 for e, i in wanted.items()}) if c.index in wanted[c.entry]]
    else:
        counts = {e: max(1, round(n * args.scale)) for e, n in COUNTS.items() if e in args.entries}
        cases = generate(args.seed, counts)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{len(cases)} cases, seed {args.seed}", flush=True)
    t0 = time.perf_counter()
    load_before = os.getloadavg()

    def progress(o, pos, total):
        if args.verbose or not o.ok:
            print(f"{o.id:<12} {o.recipe:<28} {o.status:<17} {o.seconds:7.2f} s  {o.note[:70]}"
                  + (f"\n    {o.detail[:600]}" if not o.ok or args.verbose else ""), flush=True)
        elif (pos + 1) % 250 == 0:
            print(f"... {pos + 1}/{total} cases, {time.perf_counter() - t0:.0f} s", flush=True)

    report = run_cases(cases, RunOptions(case_timeout_s=args.case_timeout, rss_cap_mb=args.rss_cap_mb),
                       on_outcome=progress)
    summary = summarize(report)
    print()
    print(format_summary(summary))
    doc = {
        "benchmark": "vidfake fuzz: hostile inputs through detect, the CLI, the miner handlers and a loopback axon",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "detector": "tiny (random-init test variants)",
        "seed": args.seed,
        "case_timeout_s": args.case_timeout,
        "rss_cap_mb": args.rss_cap_mb,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        **summary,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out} (worker log: {report.log_path})")
    return 0 if not summary["failures"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
