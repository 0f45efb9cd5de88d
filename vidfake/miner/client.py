"""A local validator: send challenges to a miner's axon the way the subnet's validators do, and score them.

Used by the end-to-end tests, the benchmark and by hand against an offline miner::

    python -m vidfake.miner.client wallet --wallet.name validator            # prints the hotkey to allow
    vidfake miner --offline --offline.allow_hotkeys <that hotkey> --weights default &
    python -m vidfake.miner.client query --miner.wallet.name miner photo.jpg clip.mp4
    python -m vidfake.miner.client score --miner.wallet.name miner --images 40 --videos 20

Challenges are built like the validators build them (:func:`vidfake.miner.protocol.image_challenge`,
:func:`~vidfake.miner.protocol.video_challenge`) and sent with a real ``bt.Dendrite`` and the
validators' 9 s timeout. :func:`expected_reward` applies the validators' reward
(:func:`vidfake.metrics.subnet_reward`) to what the miner answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import bittensor as bt
import numpy as np

from vidfake.miner.protocol import (
    ImageSynapse,
    VideoSynapse,
    image_challenge,
    is_valid_prediction,
    video_challenge,
)

logger = logging.getLogger(__name__)

VALIDATOR_TIMEOUT_S = 9.0
LOOPBACK = "127.0.0.1"
#: Frames per video challenge: validators send clips of 8 to about 137 frames.
MIN_VIDEO_FRAMES, MAX_VIDEO_FRAMES = 8, 137


@contextlib.contextmanager
def _loopback_external_ip() -> Iterator[None]:
    """``bt.Dendrite()`` asks an internet service for its external IP; offline, it is 127.0.0.1."""
    from bittensor.utils import networking

    original = networking.get_external_ip
    networking.get_external_ip = lambda: LOOPBACK
    try:
        yield
    finally:
        networking.get_external_ip = original


def local_dendrite(wallet) -> bt.Dendrite:
    """A ``bt.Dendrite`` signing with ``wallet``'s hotkey, built without any network access."""
    with _loopback_external_ip():
        return bt.Dendrite(wallet=wallet)


def create_local_wallet(name: str, path: str | Path, hotkey: str = "default", *, overwrite: bool = False):
    """Create an unencrypted coldkey + hotkey under ``path`` for local testing (no chain involved).

    Raises:
        FileExistsError: the hotkey exists and ``overwrite`` is False.
    """
    wallet = bt.Wallet(name=name, hotkey=hotkey, path=str(Path(path).expanduser()))
    if wallet.hotkey_file.exists_on_device() and not overwrite:
        raise FileExistsError(f"wallet {name!r} hotkey {hotkey!r} already exists under {path}")
    wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return wallet


def free_port(ip: str = LOOPBACK) -> int:
    """A TCP port free on ``ip`` right now, for a local axon (tests, benchmarks, offline runs)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def axon_target(hotkey: str, port: int, ip: str = LOOPBACK) -> bt.AxonInfo:
    """Address of a miner's axon: its hotkey (requests are signed for it), IP and port."""
    return bt.AxonInfo(version=0, ip=ip, port=port, ip_type=4, hotkey=hotkey, coldkey="")


@dataclass(frozen=True)
class ChallengeResult:
    """One challenge as the validator saw it.

    Attributes:
        modality: ``"image"`` or ``"video"``.
        source: what was sent (file name or a description).
        prediction: the answer as validators deserialise it (``[-1, -1, -1]``: no answer).
        valid: whether validators would score it (three floats in [0, 1] summing to 1).
        status_code: HTTP-like status from the axon (200, 400 refused, 403 blacklisted, 408 timeout, ...).
        status_message: the axon's message.
        latency_ms: send to receive, as the dendrite measured it.
        frames: frames sent (1 for an image).
        label: the true three-class label, when known (0 real, 1 synthetic, 2 semi-synthetic).
    """

    modality: str
    source: str
    prediction: list[float]
    valid: bool
    status_code: int | None
    status_message: str | None
    latency_ms: float
    frames: int
    label: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Challenge:
    """A prepared request and what is known about it."""

    synapse: ImageSynapse | VideoSynapse
    source: str
    frames: int
    label: int | None = None

    @property
    def modality(self) -> str:
        return "image" if isinstance(self.synapse, ImageSynapse) else "video"


class LocalValidator:
    """Queries one miner axon like a validator would.

    Args:
        wallet: the validator's wallet (its hotkey must be allowed by the miner).
        target: the miner's ``bt.AxonInfo`` (see :func:`axon_target`, or ``axon.info()``).
        timeout_s: how long to wait per request (validators: 9 s).
        max_concurrency: requests in flight at once. Each slot has its own dendrite: an axon rejects a
            nonce older than the last one it saw from the same dendrite, and concurrent requests from one
            dendrite can arrive out of order (validators send one request per miner at a time).
    """

    def __init__(
        self,
        wallet,
        target: bt.AxonInfo,
        *,
        timeout_s: float = VALIDATOR_TIMEOUT_S,
        max_concurrency: int = 16,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.wallet = wallet
        self.target = target
        self.timeout_s = float(timeout_s)
        self.max_concurrency = int(max_concurrency)

    async def query(self, challenges: Sequence[Challenge], concurrency: int = 1) -> list[ChallengeResult]:
        """Send ``challenges`` with at most ``concurrency`` in flight; results in the same order."""
        concurrency = max(1, min(int(concurrency), self.max_concurrency, len(challenges) or 1))
        dendrites = [local_dendrite(self.wallet) for _ in range(concurrency)]
        free: asyncio.Queue = asyncio.Queue()
        for d in dendrites:
            free.put_nowait(d)

        async def one(ch: Challenge) -> ChallengeResult:
            d = await free.get()
            try:
                return await self._send(d, ch)
            finally:
                free.put_nowait(d)

        try:
            return list(await asyncio.gather(*(one(ch) for ch in challenges)))
        finally:
            for d in dendrites:
                await d.aclose_session()

    def query_sync(self, challenges: Sequence[Challenge], concurrency: int = 1) -> list[ChallengeResult]:
        """:meth:`query` from synchronous code (runs its own event loop)."""
        return asyncio.run(self.query(challenges, concurrency))

    async def _send(self, dendrite: bt.Dendrite, ch: Challenge) -> ChallengeResult:
        synapse = ch.synapse.model_copy(deep=True)  # the dendrite fills the synapse in place
        t0 = time.perf_counter()
        response = (
            await dendrite(axons=[self.target], synapse=synapse, deserialize=False, timeout=self.timeout_s)
        )[0]
        latency = (time.perf_counter() - t0) * 1000.0
        try:
            vec = [float(v) for v in response.deserialize().tolist()]
        except (TypeError, ValueError):
            vec = [-1.0, -1.0, -1.0]
        status = response.dendrite.status_code if response.dendrite is not None else None
        message = response.dendrite.status_message if response.dendrite is not None else None
        return ChallengeResult(
            ch.modality,
            ch.source,
            vec,
            status == 200 and is_valid_prediction(vec),
            int(status) if status is not None else None,
            message,
            round(latency, 1),
            ch.frames,
            ch.label,
        )


# --------------------------------------------------------------------------- challenges from media
def challenge_from_image(
    image: np.ndarray, *, source: str = "<image>", label: int | None = None
) -> Challenge:
    """An image challenge from an ``(H, W, 3) uint8`` RGB image (any size)."""
    return Challenge(image_challenge(image), source, 1, label)


def challenge_from_frames(
    frames: np.ndarray, *, source: str = "<video>", label: int | None = None
) -> Challenge:
    """A video challenge from ``(T, H, W, 3) uint8`` RGB consecutive frames (any size)."""
    return Challenge(video_challenge(frames), source, int(len(frames)), label)


def challenge_from_file(
    path: str | Path, *, label: int | None = None, rng: np.random.Generator | None = None
) -> Challenge:
    """A challenge from a file: an image as a whole, a video as a random clip of 8-137 consecutive frames.

    Raises:
        MediaError: the file cannot be read (the message names it).
    """
    from vidfake.preprocessing.media import open_media

    rng = rng or np.random.default_rng(0)
    with open_media(str(path), max_side=1024) as media:
        if media.kind.value == "image":
            return challenge_from_image(media.image, source=str(path), label=label)
        n = int(media.video.num_frames)
        length = int(min(n, rng.integers(MIN_VIDEO_FRAMES, MAX_VIDEO_FRAMES + 1)))
        start = int(rng.integers(0, n - length + 1))
        frames = media.video.get_frames(list(range(start, start + length)))
    return challenge_from_frames(frames, source=f"{path}[{start}:{start + length}]", label=label)


# --------------------------------------------------------------------------- reward
@dataclass(frozen=True)
class ExpectedReward:
    """The validators' reward for what the miner answered.

    Attributes:
        total: ``0.6 * image + 0.4 * video`` (a modality with no answers counts 0).
        image, video: per-modality reports (``vidfake.metrics.RewardReport`` as dicts), or ``None``.
    """

    total: float
    image: dict | None
    video: dict | None

    def to_dict(self) -> dict:
        return asdict(self)


def expected_reward(results: Sequence[ChallengeResult]) -> ExpectedReward:
    """Apply the validators' reward per modality, in the order answered, to labelled results.

    Raises:
        ValueError: a result has no label.
    """
    from vidfake.metrics import SUBNET_IMAGE_WEIGHT, SUBNET_VIDEO_WEIGHT, subnet_reward

    reports = {}
    for modality in ("image", "video"):
        rows = [r for r in results if r.modality == modality]
        if not rows:
            reports[modality] = None
            continue
        if any(r.label is None for r in rows):
            raise ValueError("expected_reward needs the true label of every challenge")
        preds = [r.prediction if r.valid else None for r in rows]
        reports[modality] = subnet_reward([r.label for r in rows], preds, modality)
    total = sum(
        w * reports[m].reward
        for m, w in (("image", SUBNET_IMAGE_WEIGHT), ("video", SUBNET_VIDEO_WEIGHT))
        if reports[m] is not None
    )
    return ExpectedReward(
        float(total), *(asdict(reports[m]) if reports[m] else None for m in ("image", "video"))
    )


def labelled_challenges(
    data_root: str | Path, *, split: str = "val", images: int = 40, videos: int = 20, seed: int = 0
) -> list[Challenge]:
    """Challenges from the labelled development data, real and fake mixed, in a seeded random order.

    Args:
        data_root: folder with ``manifest.csv`` (``../shared/data``).
        images, videos: how many of each to draw (all of them if fewer exist).
    """
    from vidfake.training.data import read_manifest

    rng = np.random.default_rng(seed)
    chosen = []
    for kind, n in (("image", images), ("video", videos)):
        items = read_manifest(data_root, kind=kind, split=split)
        idx = rng.permutation(len(items))[: max(0, n)]
        chosen += [items[i] for i in idx]
    order = rng.permutation(len(chosen))
    return [challenge_from_file(chosen[i].path, label=chosen[i].class3, rng=rng) for i in order]


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Median, p95 and p99 of ``values`` (NaN when empty)."""
    if not values:
        return {"median": math.nan, "p95": math.nan, "p99": math.nan}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "p99": float(np.percentile(arr, 99)),
    }


# --------------------------------------------------------------------------- command line
def _wallet_args(p: argparse.ArgumentParser, prefix: str, default_name: str) -> None:
    p.add_argument(
        f"--{prefix}wallet.name",
        dest=f"{prefix}wallet.name",
        default=default_name,
        help="wallet name (default: %(default)s)",
    )
    p.add_argument(
        f"--{prefix}wallet.hotkey",
        dest=f"{prefix}wallet.hotkey",
        default="default",
        help="hotkey name (default: %(default)s)",
    )
    p.add_argument(
        f"--{prefix}wallet.path",
        dest=f"{prefix}wallet.path",
        default="~/.bittensor/wallets",
        help="wallets folder (default: %(default)s)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vidfake.miner.client", description="A local validator for an offline vidfake miner."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wallet", help="create a local, unencrypted test wallet and print its hotkey")
    _wallet_args(w, "", "validator")
    for name, help_ in (
        ("query", "send media files as challenges and print the answers"),
        ("score", "send labelled dev media and print the validators' expected reward"),
    ):
        q = sub.add_parser(name, help=help_)
        _wallet_args(q, "", "validator")
        q.add_argument(
            "--miner.hotkey",
            dest="miner.hotkey",
            default=None,
            metavar="SS58",
            help="the miner's hotkey (or give --miner.wallet.name of a local wallet)",
        )
        _wallet_args(q, "miner.", "miner")
        q.add_argument(
            "--axon.ip", dest="axon.ip", default=LOOPBACK, help="miner address (default: %(default)s)"
        )
        q.add_argument(
            "--axon.port", dest="axon.port", type=int, default=8091, help="miner port (default: %(default)s)"
        )
        q.add_argument(
            "--timeout", type=float, default=VALIDATOR_TIMEOUT_S, help="seconds (default: %(default)s)"
        )
        q.add_argument("--concurrency", type=int, default=1, help="requests in flight (default: %(default)s)")
        q.add_argument("--seed", type=int, default=0, help="clip choice (default: %(default)s)")
        q.add_argument("--format", choices=("text", "json"), default="text")
    sub.choices["query"].add_argument("files", nargs="+", help="images and videos")
    s = sub.choices["score"]
    s.add_argument("--data", default=None, help="data folder with manifest.csv (default: ../shared/data)")
    s.add_argument("--split", default="val", help="manifest split (default: %(default)s)")
    s.add_argument("--images", type=int, default=40, help="image challenges (default: %(default)s)")
    s.add_argument("--videos", type=int, default=20, help="video challenges (default: %(default)s)")
    return parser


def _miner_hotkey(args) -> str:
    hotkey = getattr(args, "miner.hotkey")
    if hotkey:
        return hotkey
    wallet = bt.Wallet(
        name=getattr(args, "miner.wallet.name"),
        hotkey=getattr(args, "miner.wallet.hotkey"),
        path=getattr(args, "miner.wallet.path"),
    )
    return wallet.hotkey.ss58_address


def _print_results(results: Sequence[ChallengeResult], fmt: str) -> None:
    if fmt == "json":
        for r in results:
            print(json.dumps(r.to_dict()))
        return
    for r in results:
        pred = "[" + ", ".join(f"{v:.3f}" for v in r.prediction) + "]"
        status = "valid" if r.valid else f"INVALID ({r.status_code} {r.status_message or ''})".strip()
        print(f"{r.modality:<5} {r.frames:>4} fr {r.latency_ms:>8.0f} ms  {pred}  {status}  {r.source}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "wallet":
        try:
            wallet = create_local_wallet(
                getattr(args, "wallet.name"), getattr(args, "wallet.path"), getattr(args, "wallet.hotkey")
            )
        except FileExistsError:
            wallet = bt.Wallet(
                name=getattr(args, "wallet.name"),
                hotkey=getattr(args, "wallet.hotkey"),
                path=getattr(args, "wallet.path"),
            )
            print(f"(exists) {wallet.hotkey.ss58_address}")
            return 0
        print(wallet.hotkey.ss58_address)
        return 0

    from vidfake.preprocessing.errors import MediaError

    wallet = bt.Wallet(
        name=getattr(args, "wallet.name"),
        hotkey=getattr(args, "wallet.hotkey"),
        path=getattr(args, "wallet.path"),
    )
    client = LocalValidator(
        wallet,
        axon_target(_miner_hotkey(args), getattr(args, "axon.port"), getattr(args, "axon.ip")),
        timeout_s=args.timeout,
    )
    rng = np.random.default_rng(args.seed)
    if args.command == "query":
        challenges, failed = [], 0
        for f in args.files:
            try:
                challenges.append(challenge_from_file(f, rng=rng))
            except MediaError as e:
                print(f"error: {e}", file=sys.stderr)
                failed += 1
        results = client.query_sync(challenges, args.concurrency)
        _print_results(results, args.format)
        return 1 if failed or not all(r.valid for r in results) else 0

    root = Path(args.data or os.environ.get("VIDFAKE_DATA", "../shared/data"))
    try:
        challenges = labelled_challenges(
            root, split=args.split, images=args.images, videos=args.videos, seed=args.seed
        )
    except MediaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results = client.query_sync(challenges, args.concurrency)
    _print_results(results, args.format)
    reward = expected_reward(results)
    if args.format == "json":
        print(json.dumps(reward.to_dict()))
    else:
        for m in ("image", "video"):
            r = getattr(reward, m)
            if r:
                print(
                    f"{m}: reward {r['reward']:.3f} = (0.75 binary MCC {r['binary_mcc']:.3f} "
                    f"+ 0.25 multi-class MCC {r['multiclass_mcc']:.3f}) "
                    f"x validity {r['validity_penalty']:.3f} "
                    f"({r['n_valid']}/{r['n_answers']} valid)"
                )
        print(f"expected reward (0.6 image + 0.4 video): {reward.total:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
