"""``vidfake miner``: the miner's command line (flags, checks, logging); the serving is
:func:`vidfake.miner.server.run`.

The flags follow bittensor's dotted style (``--wallet.name``, ``--axon.port``) so a miner operator's
usual command lines work. They are read once here into a :class:`~vidfake.miner.server.MinerConfig`;
nothing below this module sees ``argparse``.

    vidfake miner --netuid 34 --wallet.name miner --wallet.hotkey default --axon.port 8091
    python -m vidfake.miner.server ...        # the same
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from collections.abc import Sequence

import bittensor as bt

from vidfake.miner.guard import GuardConfig
from vidfake.miner.server import BITMIND_NETUID, LOOPBACK, VALIDATOR_TIMEOUT_S, MinerConfig, run
from vidfake.miner.service import ServiceConfig

__all__ = ["add_arguments", "build_parser", "config_from_args", "main"]

DESCRIPTION = "``vidfake miner``: serve the detector to the BitMind subnet's validators on a bittensor axon."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidfake miner", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the miner's flags (bittensor style, with dots) to ``parser``."""
    d, g, s = MinerConfig(), GuardConfig(), ServiceConfig()
    chain = parser.add_argument_group("chain and wallet")
    chain.add_argument(
        "--netuid", type=int, default=None, help="subnet uid (default: 34 on finney, 168 on test)"
    )
    chain.add_argument(
        "--subtensor.network",
        dest="subtensor.network",
        metavar="NETWORK",
        default=d.network,
        help="finney, test, local or a ws:// endpoint (default: %(default)s)",
    )
    chain.add_argument(
        "--wallet.name",
        dest="wallet.name",
        metavar="NAME",
        default=d.wallet_name,
        help="coldkey wallet name (default: %(default)s)",
    )
    chain.add_argument(
        "--wallet.hotkey",
        dest="wallet.hotkey",
        metavar="NAME",
        default=d.wallet_hotkey,
        help="hotkey name (default: %(default)s)",
    )
    chain.add_argument(
        "--wallet.path",
        dest="wallet.path",
        metavar="DIR",
        default=d.wallet_path,
        help="wallets folder (default: %(default)s)",
    )
    chain.add_argument(
        "--metagraph.resync_s",
        dest="metagraph.resync_s",
        metavar="SECONDS",
        type=float,
        default=d.resync_s,
        help="re-sync the metagraph in the background every this many seconds (default: %(default)s)",
    )

    axon = parser.add_argument_group("axon")
    axon.add_argument(
        "--axon.port",
        dest="axon.port",
        metavar="PORT",
        type=int,
        default=d.port,
        help="port the axon listens on (default: %(default)s)",
    )
    axon.add_argument(
        "--axon.ip",
        dest="axon.ip",
        metavar="IP",
        default=None,
        help="address to bind (default: 0.0.0.0 online, 127.0.0.1 offline)",
    )
    axon.add_argument(
        "--axon.external_ip",
        dest="axon.external_ip",
        metavar="IP",
        default=None,
        help="IP announced on chain (default: looked up when serving)",
    )
    axon.add_argument(
        "--axon.external_port",
        dest="axon.external_port",
        metavar="PORT",
        type=int,
        default=None,
        help="port announced on chain (default: --axon.port)",
    )

    guard = parser.add_argument_group("who may ask")
    guard.add_argument(
        "--blacklist.min_stake",
        dest="blacklist.min_stake",
        metavar="STAKE",
        type=float,
        default=g.min_stake,
        help="minimum stake of a caller; the validator permit already limits callers to the "
        "subnet's top stakers (default: %(default)s)",
    )
    guard.add_argument(
        "--blacklist.allow_non_validators",
        dest="blacklist.allow_non_validators",
        action="store_true",
        help="serve registered hotkeys without a validator permit (testing)",
    )
    guard.add_argument(
        "--rate_limit.per_minute",
        dest="rate_limit.per_minute",
        metavar="N",
        type=int,
        default=g.rate_limit_per_minute,
        help="requests per caller per minute, 0 for no limit (default: %(default)s)",
    )
    guard.add_argument(
        "--offline",
        action="store_true",
        help="no chain: serve only --offline.allow_hotkeys on 127.0.0.1 (local testing)",
    )
    guard.add_argument(
        "--offline.allow_hotkeys",
        dest="offline.allow_hotkeys",
        nargs="+",
        default=[],
        metavar="SS58",
        help="hotkeys allowed to query an offline miner",
    )

    work = parser.add_argument_group("detection")
    work.add_argument(
        "--weights",
        default=d.weights,
        help="'default' (shipped), 'tiny' (plumbing tests only) or a weights folder (default: %(default)s)",
    )
    work.add_argument("--device", default=d.device, help="torch device (default: %(default)s)")
    work.add_argument(
        "--image_model",
        metavar="hf:ID|hf:DIR",
        default=None,
        help="a transformers image classifier added as branch hf_image (cached hub id or local folder)",
    )
    work.add_argument(
        "--video_model",
        metavar="hf:ID|hf:DIR",
        default=None,
        help="a transformers video classifier added as branch hf_video (cached hub id or local folder)",
    )
    work.add_argument(
        "--label_map",
        metavar="MAP",
        default=None,
        help='real/fake for hub model labels the name table does not know, e.g. "LABEL_0=real,LABEL_1=fake"',
    )
    work.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    work.add_argument(
        "--face_workers",
        type=int,
        default=None,
        help="face-tracking threads per replica, ~150 MB each (default: min(2, CPUs))",
    )
    work.add_argument(
        "--workers",
        type=int,
        default=s.workers,
        help="detection threads, one detector replica each (default: %(default)s)",
    )
    work.add_argument(
        "--deadline_s",
        type=float,
        default=s.deadline_s,
        help=f"answer within this many seconds of arrival; validators wait {VALIDATOR_TIMEOUT_S:g} s "
        "including the network (default: %(default)s)",
    )
    work.add_argument(
        "--max_video_frames",
        type=int,
        default=s.max_video_frames,
        help="score at most this many consecutive frames of a video (default: %(default)s)",
    )
    work.add_argument(
        "--log.summary_s",
        dest="log.summary_s",
        metavar="SECONDS",
        type=float,
        default=d.summary_s,
        help="log a summary every this many seconds (default: %(default)s)",
    )
    work.add_argument(
        "--log.level",
        dest="log.level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default: %(default)s)",
    )


def config_from_args(args: argparse.Namespace) -> MinerConfig:
    """Validate the parsed flags into a :class:`MinerConfig`.

    Raises:
        ValueError: a bad value or combination, with a message naming the flag.
    """
    get = lambda name: getattr(args, name)  # noqa: E731 - dotted dests need getattr
    network = get("subtensor.network")
    offline = bool(get("offline"))
    allow = tuple(get("offline.allow_hotkeys") or ())
    if offline and not allow:
        raise ValueError(
            "--offline needs --offline.allow_hotkeys SS58 [SS58 ...] (the local validators' hotkeys)"
        )
    if allow and not offline:
        raise ValueError("--offline.allow_hotkeys only applies with --offline; online, the metagraph decides")
    bad = [h for h in allow if not bt.utils.is_valid_ss58_address(h)]
    if bad:
        raise ValueError(f"--offline.allow_hotkeys: not ss58 addresses: {bad}")
    ip = get("axon.ip") or (LOOPBACK if offline else "0.0.0.0")
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError as e:
        raise ValueError(f"--axon.ip: {ip!r} is not an IP address") from e
    if offline and not addr.is_loopback:
        raise ValueError(f"--offline serves loopback only; --axon.ip {ip} is not a loopback address")
    port = int(get("axon.port"))
    if not 1024 < port < 65535:
        raise ValueError(f"--axon.port must be in 1025..65534, got {port}")
    netuid = get("netuid")
    if netuid is None:
        netuid = BITMIND_NETUID.get(network, BITMIND_NETUID["finney"])
    if netuid < 0:
        raise ValueError(f"--netuid must be >= 0, got {netuid}")
    for name in ("threads", "face_workers"):
        if get(name) is not None and get(name) < 1:
            raise ValueError(f"--{name} must be at least 1")
    deadline = float(get("deadline_s"))
    if not 0.5 <= deadline < VALIDATOR_TIMEOUT_S:
        raise ValueError(
            f"--deadline_s must be in [0.5, {VALIDATOR_TIMEOUT_S:g}): validators stop waiting at "
            f"{VALIDATOR_TIMEOUT_S:g} s, network included; got {deadline}"
        )
    if get("metagraph.resync_s") < 10 or get("log.summary_s") <= 0:
        raise ValueError("--metagraph.resync_s must be >= 10 and --log.summary_s > 0")
    for name in ("image_model", "video_model"):
        spec = get(name)
        if spec is not None and (not spec.startswith("hf:") or not spec[3:].strip()):
            raise ValueError(f"--{name}: give hf:<hub id> or hf:<local folder>, got {spec!r}")
    if get("label_map") is not None:
        from vidfake.hub import parse_label_map

        parse_label_map(get("label_map"))  # HubError is a ValueError: a malformed map exits 2 here
    max_frames = int(get("max_video_frames"))
    guard = GuardConfig(
        min_stake=float(get("blacklist.min_stake")),
        allow_non_validators=bool(get("blacklist.allow_non_validators")),
        rate_limit_per_minute=int(get("rate_limit.per_minute")),
    )
    service = ServiceConfig(
        workers=int(get("workers")),
        deadline_s=deadline,
        max_video_frames=max_frames,
        max_wire_frames=max(ServiceConfig().max_wire_frames, max_frames),
    )
    return MinerConfig(
        netuid=int(netuid),
        network=network,
        wallet_name=get("wallet.name"),
        wallet_hotkey=get("wallet.hotkey"),
        wallet_path=get("wallet.path"),
        port=port,
        ip=ip,
        external_ip=get("axon.external_ip"),
        external_port=get("axon.external_port"),
        offline=offline,
        allow_hotkeys=allow,
        weights=get("weights"),
        device=get("device"),
        threads=get("threads"),
        face_workers=get("face_workers"),
        image_model=get("image_model"),
        video_model=get("video_model"),
        label_map=get("label_map"),
        guard=guard,
        service=service,
        resync_s=float(get("metagraph.resync_s")),
        summary_s=float(get("log.summary_s")),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``vidfake miner`` and ``python -m vidfake.miner.server``: parse, check, serve until a signal.

    Exit codes: 0 stopped cleanly; 1 cannot serve (see :func:`vidfake.miner.server.run`); 2 bad flags.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))  # exits 2
    _setup_logging(getattr(args, "log.level"))
    return run(config)


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("vidfake").setLevel(level)
