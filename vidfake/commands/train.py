"""``vidfake train CONFIG``: train a branch, or fit the fusion, from a YAML file in ``configs/``.

A branch config names a registered model and its data slice (see ``configs/train_*.yaml``); a
fusion config (a top-level ``fusion:`` key) scores the validation media with the trained branches and
writes ``detector.json`` next to their weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidfake train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config (configs/train_image2d.yaml, train_tall.yaml, train_lip.yaml, fusion.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set epochs=3 (repeatable)")
    p.add_argument("--install-to", metavar="DIR", default=None,
                   help="copy the best weights to DIR/<model>.safetensors when done")
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def main(argv: list[str]) -> int:
    import yaml

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = Path(args.config)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        parser.error(f"{path}: cannot read config: {e}")
    if not isinstance(raw, dict):
        parser.error(f"{path}: expected a mapping at the top level")
    if "fusion" in raw:
        return _fusion(raw["fusion"], path, args.overrides)

    from vidfake.training.config import apply_overrides, load_train_config
    from vidfake.training.recipes import train

    try:
        cfg = apply_overrides(load_train_config(path), args.overrides)
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    result = train(cfg, resume=args.resume)
    logger.info("best val AUC %.4f at epoch %s (%s)", result.best_auc, result.best_epoch, result.stopped_reason)
    if args.install_to and cfg.model.startswith("hf:"):  # a hub model installs as its save_pretrained folder
        shutil.copytree(Path(cfg.out_dir) / "hf_model", args.install_to, dirs_exist_ok=True)
        logger.info("installed %s (use --image-model hf:%s)", args.install_to, args.install_to)
    elif args.install_to:
        dst = Path(args.install_to) / f"{cfg.model}.safetensors"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(cfg.out_dir) / "best.safetensors", dst)
        logger.info("installed %s", dst)
    return 0


def _fusion(spec: dict, path: Path, overrides: list[str]) -> int:
    """Score validation media with the trained branches and write detector.json (see vidfake.training.fusion)."""
    from dataclasses import replace

    from vidfake.detector import DETECTOR_FILE, Detector, DetectorConfig
    from vidfake.training.data import read_manifest
    from vidfake.training.fusion import fit_and_write, score_items

    allowed = {"weights_dir", "data_root", "split", "l2", "max_items", "detector", "report", "kinds"}
    unknown = set(spec) - allowed
    if unknown or overrides:
        raise SystemExit(f"{path}: unknown fusion keys {sorted(unknown)} (overrides are not supported here)")
    kinds = tuple(spec.get("kinds", ("video", "image")))
    if not kinds or set(kinds) - {"video", "image"}:
        raise SystemExit(f"{path}: kinds must be a non-empty subset of [video, image], got {list(kinds)}")
    weights_dir = Path(spec["weights_dir"])
    if set(kinds) == {"video", "image"}:
        start = DetectorConfig()
    else:  # a partial refit keeps the other kind's fitted parameters: start from the detector.json there
        existing = weights_dir / DETECTOR_FILE
        if not existing.is_file():
            raise SystemExit(f"{path}: kinds {list(kinds)} refits part of {existing}, which does not exist")
        start = DetectorConfig.from_file(existing)
    base = replace(start, **spec.get("detector", {}), weights_dir=str(weights_dir))
    root = Path(spec.get("data_root", "../shared/data"))
    split = spec.get("split", "val")
    videos = read_manifest(root, kind="video", split=split) if "video" in kinds else []
    images = read_manifest(root, kind="image", split=split) if "image" in kinds else []
    if spec.get("max_items"):
        videos, images = videos[: spec["max_items"]], images[: spec["max_items"]]
    detector = Detector(base)
    v_rows = score_items(detector, videos)
    i_rows = score_items(detector, images)
    cfg, summary = fit_and_write(weights_dir, v_rows, i_rows, replace(base, weights_dir=None),
                                 l2=float(spec.get("l2", 1.0)))
    text = json.dumps(summary, indent=2, default=float)
    print(text)
    if spec.get("report"):
        Path(spec["report"]).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
