"""``vidfake``: a thin command line over :meth:`vidfake.Detector.detect` and the other jobs.

    vidfake clip.mp4 photo.jpg folder/        # verdicts as a table
    vidfake clip.mp4 --format json --viz out/ # JSON results and an HTML report with pictures
    vidfake train configs/train_tall.yaml     # the other jobs are subcommands
    vidfake eval | miner | export ...

Exit codes: 0 every input analysed, 1 some input failed, 2 bad usage. Heavy modules (torch, mediapipe)
are imported only once an input is analysed, so ``vidfake --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from vidfake import __version__, use_offline_hubs
from vidfake.branches import BRANCHES, SCENE
from vidfake.hub import HF_PREFIX, HUB_BRANCHES, HubError, parse_label_map

# Nothing may reach a model hub unless the user asks for it (--online): set before any HF/timm import.
if "--online" not in sys.argv[1:]:
    use_offline_hubs()

logger = logging.getLogger("vidfake")

SUBCOMMANDS = {
    "train": "train a branch or the fusion from a YAML config",
    "eval": "evaluate the detector (or an exported package) on labelled media",
    "miner": "serve the detector to BitMind subnet validators (Bittensor axon)",
    "export": "write/check a model package for the subnet's benchmark (gasbench)",
}
BRANCH_CHOICES = (*BRANCHES, SCENE)


def _detect_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidfake",
        description="Tell real videos and images from deepfakes and AI-generated media.",
        epilog="subcommands:\n" + "\n".join(f"  vidfake {k:<8} {v}" for k, v in SUBCOMMANDS.items())
        + "\n\nexit codes: 0 all inputs analysed, 1 some input failed, 2 bad usage",
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=32),
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="videos, images or folders (searched recursively); '-' reads standard input")
    p.add_argument("--threshold", type=float, default=None,
                   help="decision threshold on P(fake) (default: the weights' own, from their detector.json)")
    p.add_argument("--weights", default="default",
                   help="'default' (shipped), 'tiny' (test plumbing), or a weights folder (default: %(default)s)")
    p.add_argument("--branches", default=None,
                   help=f"comma-separated branches to run on videos, of {', '.join(BRANCH_CHOICES + HUB_BRANCHES)} "
                   "(default: the weights' branches, plus the hub models given)")
    hub = p.add_argument_group("Hugging Face models as extra branches (README: 'Hugging Face models as branches')")
    hub.add_argument("--image-model", metavar="hf:ID|hf:DIR", default=None,
                     help="a transformers image classifier joining the 2D detector as branch hf_image")
    hub.add_argument("--video-model", metavar="hf:ID|hf:DIR", default=None,
                     help="a transformers video classifier (VideoMAE, TimeSformer...) as branch hf_video")
    hub.add_argument("--label-map", metavar="MAP", default=None,
                     help='real/fake for labels the built-in name table does not know, e.g. "LABEL_0=real,LABEL_1=fake"')
    hub.add_argument("--online", action="store_true",
                     help="let hub ids download (otherwise HF_HUB_OFFLINE=1: only cached ids and local folders)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--face-workers", type=int, default=None,
                   help="face-tracking threads, ~150 MB each (default: min(2, CPUs))")
    p.add_argument("--frames", type=int, default=None, help="frames scored by the 2D detector per video")
    p.add_argument("--clips", type=int, default=None, help="TALL clips of 4 frames per video")
    p.add_argument("--viz", metavar="DIR", default=None,
                   help="write a timeline, heatmaps and an HTML report per input into DIR")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="only results and errors, no progress or logs")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"vidfake {__version__}")
    return p


def expand_inputs(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files to analyse (folders searched recursively by extension) and unusable arguments with reasons."""
    from vidfake.preprocessing.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    exts = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    for raw in paths:
        if raw == "-":
            files.append("-")
            continue
        p = Path(raw)
        try:
            if p.is_dir():
                found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
                if not found:
                    problems.append((raw, "folder holds no image or video files"))
                files += found
            elif p.exists():
                files.append(raw)
            else:
                problems.append((raw, "no such file or folder"))
        except OSError as e:  # e.g. ENAMETOOLONG, EACCES: report this argument, keep the others
            problems.append((raw, f"cannot access: {e.strerror or e}"))
    return files, problems


def _fmt_p(p) -> str:
    return "-" if p is None else f"{p:.3f}"


def format_table(rows: list) -> str:
    """Readable table of results (and failures) for the terminal."""
    extra = [b for b in HUB_BRANCHES if any(r[1] is not None and r[1].branch(b) for r in rows)]
    names = (*BRANCH_CHOICES, *extra)
    header = ("input", "verdict", "P(fake)", *names, "faces", "frames", "time")
    lines = [header]
    for source, res, err, secs in rows:
        if err is not None:
            lines.append((source, "ERROR", err, *("",) * (len(header) - 4), f"{secs:.2f}s"))
            continue
        b = {x.name: x.probability for x in res.branches}
        lines.append((source, res.verdict.upper(), f"{res.probability_fake:.3f}",
                      *(_fmt_p(b.get(name)) for name in names), str(res.faces_found), str(res.frames_used),
                      f"{secs:.2f}s"))
    widths = [max(len(r[i]) for r in lines if not (r[1] == "ERROR" and i == 2)) for i in range(len(header))]
    out = []
    for r in lines:
        if r[1] == "ERROR":
            out.append(f"{r[0]:<{widths[0]}}  ERROR    {r[2]}")
        else:
            out.append("  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)


def run_detect(argv: list[str]) -> int:
    parser = _detect_parser()
    args = parser.parse_args(argv)
    branches = None
    if args.branches is not None:
        branches = tuple(b.strip() for b in args.branches.split(",") if b.strip())
        bad = [b for b in branches if b not in BRANCH_CHOICES + HUB_BRANCHES]
        if bad or not branches:
            parser.error(f"--branches: unknown {bad} (choose from {', '.join(BRANCH_CHOICES + HUB_BRANCHES)})")
    hub = _hub_overrides(parser, args)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be within [0, 1]")
    for name in ("frames", "clips", "threads", "face_workers"):
        v = getattr(args, name)
        if v is not None and v < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    _setup_logging(args.quiet, args.verbose)

    files, problems = expand_inputs(args.paths)
    rows: list = [(src, None, why, 0.0) for src, why in problems]
    threshold = None  # (value, where it came from), once weights are loaded
    if files:
        from vidfake.detector import Detector

        try:
            detector = Detector.from_pretrained(args.weights, device=args.device, threads=args.threads,
                                                face_workers=args.face_workers, **hub)
        except HubError as e:  # the hub model cannot be used: every input fails with that one-line reason
            _emit(rows + [(f, None, str(e), 0.0) for f in files], args.format)
            return 1
        except (FileNotFoundError, ValueError) as e:
            print(f"vidfake: cannot load weights: {e}", file=sys.stderr)
            return 2
        threshold = ((args.threshold, "--threshold") if args.threshold is not None
                     else (detector.config.threshold, "weights"))
        with detector:
            rows += _analyse_all(detector, files, args, branches)
    _emit(rows, args.format, threshold)
    return 1 if any(err is not None for _, _, err, _ in rows) else 0


def _hub_overrides(parser: argparse.ArgumentParser, args) -> dict:
    """DetectorConfig fields for the hub flags given (the weights' detector.json keeps the others)."""
    out = {}
    for flag, key in (("image_model", "hf_image_model"), ("video_model", "hf_video_model")):
        spec = getattr(args, flag)
        if spec is not None:
            if not spec.startswith(HF_PREFIX) or not spec[len(HF_PREFIX):].strip():
                parser.error(f"--{flag.replace('_', '-')}: give hf:<hub id> or hf:<local folder>, got {spec!r}")
            out[key] = spec
    if args.label_map is not None:
        try:
            out["label_map"] = parse_label_map(args.label_map)
        except HubError as e:
            parser.error(str(e))
    return out


def _analyse_all(detector, files: list[str], args, branches) -> list:
    from tqdm import tqdm

    show = not args.quiet and sys.stderr.isatty() and len(files) > 1
    rows = []
    for f in tqdm(files, desc="analysing", unit="file", disable=not show):
        t0 = time.perf_counter()
        source = "<stdin>" if f == "-" else f
        try:
            media = sys.stdin.buffer.read() if f == "-" else f
            res, details = detector.analyze(media, source=source, branches=branches, num_clips=args.clips,
                                            num_frames=args.frames, threshold=args.threshold,
                                            keep_details=bool(args.viz))
            if args.viz:
                from vidfake.viz import render_report

                render_report(res, details, args.viz, detector=detector)
            rows.append((source, res, None, time.perf_counter() - t0))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # each input is isolated: report it by name and go on
            logger.debug("failure on %s", source, exc_info=True)
            rows.append((source, None, _reason(e), time.perf_counter() - t0))
    return rows


def _reason(e: Exception) -> str:
    from vidfake.preprocessing.errors import MediaError

    if isinstance(e, MediaError):
        return e.problem
    return f"{type(e).__name__}: {e}"


def _write(text: str) -> None:
    """Print even names that are not valid in the terminal's encoding (e.g. Latin-1 file names on a UTF-8
    terminal arrive as surrogate escapes): shown escaped rather than losing the whole batch's output."""
    encoding = sys.stdout.encoding or "utf-8"
    sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")


def _emit(rows: list, fmt: str, threshold: tuple[float, str] | None = None) -> None:
    """Print the results; ``threshold`` is ``(value, source)``, source ``"weights"`` (their detector.json)
    or ``"--threshold"``: the text says it under the table, the JSON as ``threshold_source``."""
    if fmt == "text":
        _write(format_table(rows))
        if threshold is not None:
            where = "the weights' own" if threshold[1] == "weights" else "--threshold"
            _write(f"verdict threshold on P(fake): {threshold[0]:.3f} ({where})")
        return
    docs = [({"source": s, "error": err} if err is not None
             else {**res.to_dict(), "threshold_source": threshold[1] if threshold else None})
            for s, res, err, _ in rows]
    if len(docs) == 1:
        _write(json.dumps(docs[0], indent=2))
    else:
        for d in docs:
            _write(json.dumps(d))


def _setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--online" not in argv:
        use_offline_hubs()
    if argv and argv[0] in SUBCOMMANDS:
        from importlib import import_module

        module = import_module(f"vidfake.commands.{argv[0]}")
        return int(module.main(argv[1:]) or 0)
    return run_detect(argv)


if __name__ == "__main__":
    sys.exit(main())
