"""``vidfake export``: write the detector as a BitMind SN34 model package, or check a package.

    vidfake export --modality image out/vidfake-image          # folder + out/vidfake-image.zip, checked
    vidfake export --modality video out/vidfake-video --eval ../shared/data
    vidfake export --check out/vidfake-video.zip              # static rules + isolated load + forward

The package is what the subnet's validators run through gasbench: ``model_config.yaml``, a
self-contained ``model.py`` and ``model.safetensors``. ``--check`` applies the subnet's static rules to
``model.py``, loads it in a fresh interpreter where vidfake cannot be imported, runs a forward on random
``uint8`` input of the declared shape and checks the output's shape, dtype and finiteness.

Exit codes: 0 success, 1 the export or a check failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger("vidfake.export")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidfake export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT", help="package folder to write (the ZIP goes beside it as OUT.zip), "
                                              "or with --check the folder or ZIP to check")
    p.add_argument("--check", action="store_true", help="check an existing package instead of writing one")
    p.add_argument("--modality", choices=("image", "video"), help="which package to write")
    p.add_argument("--weights", default="default",
                   help="detector weights: 'default', 'tiny' (test plumbing) or a folder (default: %(default)s)")
    p.add_argument("--size", type=int, default=None,
                   help="square preprocessing.resize side (default: 448 for image, 320 for video)")
    p.add_argument("--frames", type=int, default=16, help="video num_frames, 4 to 64 (default: %(default)s)")
    p.add_argument("--frame-rate", type=float, default=None,
                   help="video frame_rate (default: none, consecutive frames from the start)")
    p.add_argument("--faces", choices=("haar", "none"), default="haar",
                   help="video face localisation inside forward (default: %(default)s)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="model_config dtype (default: %(default)s)")
    p.add_argument("--name", default=None, help="model_config name (default: vidfake-<modality>)")
    p.add_argument("--version", dest="pkg_version", default=None, help="model_config version (default: vidfake's)")
    p.add_argument("--force", action="store_true", help="replace an existing package folder and ZIP")
    p.add_argument("--no-check", action="store_true", help="skip the isolated check after writing")
    p.add_argument("--eval", metavar="DATA", default=None,
                   help="after writing, score the package gasbench-style on DATA's --split and put the numbers "
                        "in its model card")
    p.add_argument("--split", default="val", help="split for --eval (default: %(default)s)")
    p.add_argument("--baseline", metavar="EVAL.json", default=None,
                   help="a `vidfake eval --out` report of the full pipeline, quoted beside --eval's numbers")
    p.add_argument("--device", default="cpu", help="torch device for the check and --eval (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for --eval")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: %(default)s)")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check and args.modality:
        parser.error("--check checks an existing package; do not pass --modality with it")
    if not args.check and not args.modality:
        parser.error("pass --modality image|video to write a package, or --check to check one")
    if args.baseline and not args.eval:
        parser.error("--baseline goes with --eval")
    if not 4 <= args.frames <= 64:
        parser.error("--frames must be within [4, 64]")
    if args.size is not None and args.size < 32:
        parser.error("--size must be at least 32")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.check:
        return _check(args)
    return _export(args)


def _check(args) -> int:
    from vidfake.export import check_package

    report = check_package(args.out, device=args.device)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(format_check(report))
    return 0 if report.ok else 1


def format_check(report) -> str:
    """A check report for the terminal."""
    lines = [f"{report.package}: {'OK' if report.ok else 'FAILED'}"]
    if report.config:
        c = report.config
        lines.append(f"  {c.get('name')} {c.get('version')} modality={c.get('modality')} dtype={c.get('dtype', 'float32')} "
                     f"preprocessing={c.get('preprocessing')}")
    if report.input_shape:
        lines.append(f"  forward: uint8 {list(report.input_shape)} -> {report.output_dtype or '?'} "
                     f"{list(report.output_shape) or '?'} finite={report.finite} "
                     f"(load {report.load_seconds:.1f} s, forward {report.forward_seconds:.2f} s)")
        lines.append(f"  vidfake importable in the check: {report.vidfake_importable}; "
                     f"embedding layer: {report.embedding or 'none found'}")
    lines += [f"  problem: {p}" for p in report.problems]
    return "\n".join(lines)


def _export(args) -> int:
    from vidfake.export import PackageError, check_package, export_package

    try:
        result = export_package(
            args.weights, args.out, modality=args.modality, size=args.size, num_frames=args.frames,
            frame_rate=args.frame_rate, faces=args.faces, dtype=args.dtype, name=args.name,
            version=args.pkg_version, overwrite=args.force,
        )
    except (PackageError, FileNotFoundError, ValueError) as e:
        print(f"vidfake export: {e}", file=sys.stderr)
        return 1
    summary = {"folder": str(result.folder), "zip": str(result.zip_path), "config": result.config,
               "parameters": result.num_parameters, "weights_sha256": result.weights_sha256,
               "source_models": result.source_models}
    status = 0
    if not args.no_check:
        report = check_package(result.zip_path, device=args.device)
        summary["check"] = report.to_dict()
        status = 0 if report.ok else 1
    if args.eval:
        try:
            summary["eval"] = _evaluate(args, result)
        except (OSError, ValueError) as e:
            print(f"vidfake export: --eval failed: {e}", file=sys.stderr)
            status = 1
    if args.format == "json":
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"wrote {result.folder} and {result.zip_path} ({result.num_parameters:,} parameters)")
        print(f"  model_config: {result.config}")
        if "check" in summary:
            print(format_check(report))
        if "eval" in summary:
            print(_format_eval(summary["eval"]))
    return status


def _evaluate(args, result) -> dict:
    from vidfake.commands.eval import load_eval_items
    from vidfake.export import evaluate_package, update_model_card

    items = load_eval_items(args.eval, args.split, result.modality, None)
    if not items:
        raise ValueError(f"no {result.modality} items in split {args.split!r} of {args.eval}")
    report = evaluate_package(result.folder, items, threads=args.threads, device=args.device,
                              progress=sys.stderr.isatty())
    (result.folder / "eval.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    m = report["gasbench"]["modalities"][result.modality]
    measurements = {f"This package, gasbench base pass, {args.eval} split {args.split}": _headline(m)}
    if args.baseline:
        base = json.loads(Path(args.baseline).read_text())
        clean = base.get("clean", base).get("modalities", {}).get(result.modality)
        if clean is None:
            raise ValueError(f"{args.baseline}: no clean {result.modality} metrics in this report")
        measurements[f"Full vidfake pipeline ({args.baseline})"] = _headline(clean)
    update_model_card(result, measurements)
    return {k: v for k, v in report.items() if k != "predictions"}


def _headline(m: dict) -> dict:
    g = m.get("gasbench") or {}
    return {"n": m.get("n"), "errors": m.get("errors"), "auc": m.get("auc"), "accuracy": m.get("accuracy"),
            "mcc": m.get("mcc"), "brier": m.get("brier"), "sn34_score": g.get("score")}


def _format_eval(report: dict) -> str:
    lines = []
    for kind, m in report["gasbench"]["modalities"].items():
        h = _headline(m)
        exam = m.get("entrance_exam", {})
        lines.append(f"gasbench {kind}: n={h['n']} errors={h['errors']} AUC={_f(h['auc'])} acc={_f(h['accuracy'])} "
                     f"MCC={_f(h['mcc'])} brier={_f(h['brier'])} score={_f(h['sn34_score'])} "
                     f"entrance exam (acc >= 0.8): {'pass' if exam.get('passes') else 'fail'}")
    return "\n".join(lines)


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
