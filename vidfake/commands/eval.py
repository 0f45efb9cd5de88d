"""``vidfake eval``: score the detector on labelled media, clean and as the subnet sends it.

Prints a table and writes a JSON report (and a ROC plot): AUC, accuracy, balanced accuracy, MCC,
Brier, log loss, the subnet's v2 reward and the gasbench score, per modality, source and method.
``--package DIR`` scores an exported model package instead, exactly as gasbench feeds it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidfake eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data",
                   help="folder with manifest.csv, or with real/ and fake/ subfolders (default: %(default)s)")
    p.add_argument("--split", default="val", help="manifest split to evaluate (default: %(default)s)")
    p.add_argument("--kind", choices=("image", "video", "both", "face-video", "scene-video"), default="both",
                   help="media kind (default: %(default)s); with --holdout source: image, face-video, or "
                        "scene-video (= video)")
    p.add_argument("--mode", choices=("clean", "subnet", "both"), default="both",
                   help="clean files, validator-style augmented challenges, or both (default: %(default)s)")
    p.add_argument("--weights", default="default", help="detector weights: 'default' or a folder")
    p.add_argument("--package", default=None, metavar="DIR",
                   help="evaluate an exported gasbench package (vidfake export) instead of the detector")
    p.add_argument("--threshold", type=float, default=None,
                   help="decision threshold on P(fake) for accuracy and MCC (default: the weights' own, from "
                        "their detector.json; a --package is scored at gasbench's fixed 0.5)")
    p.add_argument("--max-items", type=int, default=None, help="evaluate at most this many items per kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, metavar="FILE.json", help="write the full report here")
    p.add_argument("--roc", default=None, metavar="FILE.png", help="write ROC curves here")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--holdout", choices=("source",), default=None,
                   help="leave-one-source-out instead of the split: every generator family and kind of real "
                        "source held out in turn, heads retrained on cached features (images: "
                        "vidfake.training.loso; --kind face-video: vidfake.training.facevideo; --kind video "
                        "or scene-video: the scene videos, vidfake.training.scene). "
                        "Arguments after -- go to that module (e.g. -- --candidate lite0_patches --head logreg)")
    return p


def load_eval_items(data: str, split: str, kind: str, max_items: int | None):
    from vidfake.training.data import read_manifest, scan_folder

    root = Path(data)
    kinds = ("image", "video") if kind == "both" else (kind,)
    items = []
    for k in kinds:
        if (root / "manifest.csv").is_file():
            its = read_manifest(root, kind=k, split=split)
        else:
            its = [i for i in scan_folder(root) if i.kind == k]
        items += its[:max_items] if max_items else its
    return items


def main(argv: list[str]) -> int:
    parser = build_parser()
    argv, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(argv)
    if args.holdout:
        return _holdout(parser, args, extra)
    if args.kind in ("face-video", "scene-video"):
        parser.error(f"--kind {args.kind} is a leave-one-source-out modality: add --holdout source")
    if extra:
        parser.error(f"arguments after -- are only for --holdout: {extra}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = Path(args.data)
    if not root.is_dir():
        parser.error(f"--data {root}: no such folder")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be within [0, 1]")
    if args.threshold is not None and args.package:
        parser.error("--threshold does not apply to --package: gasbench scores a package at 0.5")
    items = load_eval_items(args.data, args.split, args.kind, args.max_items)
    if not items:
        parser.error(f"no {args.kind} items in split {args.split!r} of {root}")
    if args.package:
        from vidfake.export import evaluate_package

        report = evaluate_package(args.package, items, threads=args.threads)
        report["gasbench"]["threshold_source"] = "gasbench"
    else:
        report = _evaluate_detector(args, items)
    text = json.dumps(report, indent=2, default=_jsonable)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(format_report(report))
    return 0


def _holdout(parser: argparse.ArgumentParser, args, extra: list[str]) -> int:
    """LOSO is a training protocol (a head per held-out group), not a pass of the shipped detector."""
    if args.package or args.kind == "both":
        parser.error("--holdout source takes --kind image, face-video or scene-video (= video), and no --package")
    forwarded = ["--data", args.data, *(["--out", args.out] if args.out else []), *extra]
    if args.kind == "image":
        from vidfake.training import loso

        return loso.main(forwarded)
    if args.kind == "face-video":
        from vidfake.training import facevideo

        return facevideo.main(["loso", *forwarded])
    from vidfake.training import scene

    return scene.main(forwarded)


def _evaluate_detector(args, items) -> dict:
    from vidfake.detector import Detector
    from vidfake.evaluate import plot_roc, predict, summarise

    detector = Detector.from_pretrained(args.weights, threads=args.threads)
    modes = ("clean", "subnet") if args.mode == "both" else (args.mode,)
    report = {"weights": args.weights, "data": args.data, "split": args.split, "models": detector.identity}
    for mode in modes:
        preds = predict(detector, items, mode=mode, seed=args.seed)
        report[mode] = summarise(preds, args.threshold)
        if args.roc:
            roc = Path(args.roc)
            plot_roc(preds, roc.with_name(f"{roc.stem}_{mode}{roc.suffix}"), title=f"vidfake ({mode})")
    return report


def _jsonable(o):
    if hasattr(o, "__dict__"):
        return o.__dict__
    if hasattr(o, "item"):
        return o.item()
    return str(o)


_THRESHOLD_SOURCES = {"weights": "the weights' own", "given": "--threshold", "gasbench": "gasbench's fixed",
                      "none": "no item scored"}


def format_report(report: dict) -> str:
    lines = []
    for mode in ("clean", "subnet", "gasbench"):
        if mode not in report:
            continue
        t, source = report[mode].get("threshold"), report[mode].get("threshold_source")
        lines.append(f"{mode:<8} threshold {_f(t)} ({_THRESHOLD_SOURCES.get(source, source)})")
        for kind, m in report[mode].get("modalities", {}).items():
            g = m.get("gasbench", {})
            lines.append(f"{mode:<8} {kind:<6} n={m.get('n')} errors={m.get('errors')} "
                         f"AUC={_f(m.get('auc'))} acc={_f(m.get('accuracy'))} MCC={_f(m.get('mcc'))} "
                         f"brier={_f(m.get('brier'))} gasbench={_f(g.get('score'))}")
    return "\n".join(lines) or json.dumps(report, default=_jsonable)[:2000]


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
