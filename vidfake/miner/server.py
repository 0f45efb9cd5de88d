"""``vidfake miner``: serve the detector to the BitMind subnet's validators on a bittensor axon.

Composition, no class hierarchy: a :class:`~vidfake.miner.guard.Guard` decides who may ask, a
:class:`~vidfake.miner.service.MinerService` answers, and :class:`MinerServer` wires both to a
``bt.Axon`` (the handlers below are all it adds). Nothing talks to the chain in a constructor: the
subtensor connection, the registration check and ``axon.serve`` happen in :func:`run`.

Offline mode (``--offline``) needs no chain: the allow-listed hotkeys are the validators, the axon
listens on 127.0.0.1 only, and nothing is served to the network. The tests and the benchmark use it.

This module deliberately does not use ``from __future__ import annotations``: ``bt.Axon.attach`` compares
the handlers' signatures with real classes (``synapse: ImageSynapse``, ``-> typing.Tuple[bool, str]``),
and postponed annotations would turn them into strings.
"""

import argparse
import ipaddress
import logging
import signal
import threading
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import bittensor as bt
from bittensor.core.axon import V_7_2_0

from vidfake.miner.guard import Guard, GuardConfig, Membership
from vidfake.miner.protocol import ImageSynapse, VideoSynapse
from vidfake.miner.service import MinerService, ServiceConfig

logger = logging.getLogger(__name__)

#: The subnet's netuid on each network (BitMind: 34 on finney, 168 on test).
BITMIND_NETUID = {"finney": 34, "test": 168}
VALIDATOR_TIMEOUT_S = 9.0
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class MinerConfig:
    """Everything ``vidfake miner`` needs, read once from the command line.

    Attributes:
        netuid: subnet to serve.
        network: subtensor network name or endpoint (``finney``, ``test``, ``local``, ``ws://...``).
        wallet_name, wallet_hotkey, wallet_path: the miner's keys (``bt.Wallet`` arguments).
        port: axon port; ip: address the axon binds; external_ip/external_port: what is announced.
        offline: no chain, allow-listed callers, loopback only.
        allow_hotkeys: ss58 hotkeys allowed in offline mode.
        weights: detector weights (``default``, ``tiny`` or a folder).
        device: torch device; threads: torch CPU threads (``None``: torch's default).
        face_workers: face-tracking threads per detector replica (``None``: ``min(2, CPUs)``); each
            holds its own mediapipe graphs (about 150 MB), so memory grows with workers x this.
        guard: admission rules; service: workers, deadline, limits.
        resync_s: metagraph re-sync period when online.
        summary_s: period of the summary log line.
    """

    netuid: int = BITMIND_NETUID["finney"]
    network: str = "finney"
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: str = "~/.bittensor/wallets"
    port: int = 8091
    ip: str = "0.0.0.0"
    external_ip: str | None = None
    external_port: int | None = None
    offline: bool = False
    allow_hotkeys: tuple[str, ...] = ()
    weights: str = "default"
    device: str = "cpu"
    threads: int | None = None
    face_workers: int | None = None
    guard: GuardConfig = field(default_factory=GuardConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    resync_s: float = 300.0
    summary_s: float = 60.0


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
        guard=guard,
        service=service,
        resync_s=float(get("metagraph.resync_s")),
        summary_s=float(get("log.summary_s")),
    )


def detector_factory(
    weights: str, device: str = "cpu", threads: int | None = None, face_workers: int | None = None
) -> Callable[[], object]:
    """A callable that builds one detector replica (the service calls it once per worker)."""

    def build():
        from vidfake.detector import Detector

        return Detector.from_pretrained(weights, device=device, threads=threads, face_workers=face_workers)

    return build


class MinerServer:
    """The axon, its handlers, and the background threads (metagraph re-sync, periodic summary).

    Args:
        wallet: the miner's wallet (its hotkey signs every response).
        guard: admission control.
        service: the detection service (started by :meth:`start` if it is not yet).
        config: ports, addresses, periods.
        resync: called every ``config.resync_s`` seconds to return a fresh :class:`Membership`
            (online); ``None`` offline.
    """

    def __init__(
        self,
        wallet,
        guard: Guard,
        service: MinerService,
        config: MinerConfig,
        *,
        resync: Callable[[], Membership] | None = None,
    ):
        self.wallet = wallet
        self.guard = guard
        self.service = service
        self.config = config
        self._resync = resync
        self.axon: bt.Axon | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "MinerServer":
        """Start the service, build and start the axon, start the background threads."""
        self.service.start()
        cfg = bt.Config()  # bittensor defaults only: never re-parse our process's command line
        self.axon = bt.Axon(
            wallet=self.wallet,
            config=cfg,
            port=self.config.port,
            ip=self.config.ip,
            external_ip=LOOPBACK if self.config.offline else self.config.external_ip,
            external_port=self.config.external_port,
        )
        self.axon.attach(
            forward_fn=self.forward_image, blacklist_fn=self.blacklist_image, priority_fn=self.priority_image
        )
        self.axon.attach(
            forward_fn=self.forward_video, blacklist_fn=self.blacklist_video, priority_fn=self.priority_video
        )
        # uvicorn binds 0.0.0.0 whatever the axon's ip says; bind what was asked.
        self.axon.fast_server.config.host = self.config.ip
        self.axon.start()
        self._wait_listening()
        self._spawn(self._summary_loop, "vidfake-miner-summary")
        if self._resync is not None:
            self._spawn(self._resync_loop, "vidfake-miner-resync")
        logger.info(
            "miner axon listening on %s:%d as %s (%s; %d callers in %s)",
            self.config.ip,
            self.config.port,
            self.wallet.hotkey.ss58_address,
            "offline" if self.config.offline else self.config.network,
            len(self.guard.membership),
            self.guard.membership.source,
        )
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.axon is not None:
            self.axon.stop()
            self.axon = None
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self.service.close()
        self.log_summary()

    def __enter__(self) -> "MinerServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_listening(self, timeout_s: float = 10.0) -> None:
        t0 = time.monotonic()
        while not getattr(self.axon.fast_server, "started", False):
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(
                    f"axon did not start listening on {self.config.ip}:{self.config.port} "
                    f"within {timeout_s:.0f} s (port in use?)"
                )
            time.sleep(0.02)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _summary_loop(self) -> None:
        while not self._stop.wait(self.config.summary_s):
            self.log_summary()

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.config.resync_s):
            try:
                membership = self._resync()
            except Exception:  # noqa: BLE001 - keep serving on the last good snapshot
                logger.warning(
                    "metagraph re-sync failed; keeping the snapshot of block %s",
                    self.guard.membership.block,
                    exc_info=True,
                )
                continue
            self.guard.update(membership)
            logger.info(
                "metagraph re-synced at block %s: %d neurons, %d with a validator permit",
                membership.block,
                len(membership),
                sum(membership.validator_permit),
            )

    def log_summary(self) -> None:
        s = self.service.summary()
        logger.info(
            "summary: up %.0f s | requests %s | outcomes %s | plans %s | latency ms %s | "
            "refused by guard %s | queue %d, busy %d | plan costs ms %s",
            s.uptime_s,
            s.requests,
            s.outcomes,
            s.plans,
            {m: {k: round(v) for k, v in p.items()} for m, p in s.latency_ms.items()},
            self.guard.rejections(),
            s.queue_depth,
            s.busy_workers,
            s.plan_cost_ms,
        )

    # ------------------------------------------------------------------ axon handlers
    async def forward_image(self, synapse: ImageSynapse) -> ImageSynapse:
        """Answer an image challenge (route ``/ImageSynapse``)."""
        payload, synapse.image = synapse.image, ""  # the axon echoes the synapse: do not send it back
        return await self._forward(synapse, "image", payload)

    async def forward_video(self, synapse: VideoSynapse) -> VideoSynapse:
        """Answer a video challenge (route ``/VideoSynapse``)."""
        payload, synapse.video = synapse.video, ""
        return await self._forward(synapse, "video", payload)

    async def _forward(self, synapse, modality: str, payload: str):
        hotkey = synapse.dendrite.hotkey if synapse.dendrite is not None else None
        # The signature has been verified by now; only now does the request count against the rate limit.
        decision = self.guard.take_rate(hotkey) if hotkey else self.guard.admit(hotkey)
        if not decision.allowed:
            logger.warning("%s from %s refused: %s", modality, hotkey, decision.reason)
            return _refuse(synapse, 429 if decision.step == "rate_limit" else 403, decision.reason)
        answer = await self.service.answer(
            modality,
            payload,
            caller=hotkey,
            timeout_s=synapse.timeout,
            sent_at=_sent_at(synapse),
            priority=self.guard.priority(hotkey),
        )
        if answer.prediction is None:
            return _refuse(synapse, 400, answer.detail)
        synapse.prediction = answer.prediction
        return synapse

    # bt.Axon.attach compares these signatures exactly, annotations included (typing.Tuple, not tuple).
    async def blacklist_image(self, synapse: ImageSynapse) -> typing.Tuple[bool, str]:  # noqa: UP006
        return self._blacklist(synapse)

    async def blacklist_video(self, synapse: VideoSynapse) -> typing.Tuple[bool, str]:  # noqa: UP006
        return self._blacklist(synapse)

    async def priority_image(self, synapse: ImageSynapse) -> float:
        return self._priority(synapse)

    async def priority_video(self, synapse: VideoSynapse) -> float:
        return self._priority(synapse)

    def _blacklist(self, synapse) -> tuple[bool, str]:
        hotkey = synapse.dendrite.hotkey if synapse.dendrite is not None else None
        decision = self.guard.admit(hotkey)
        if not decision.allowed:
            logger.info(
                "%s from %s blacklisted at step %r: %s", synapse.name, hotkey, decision.step, decision.reason
            )
        return decision.as_blacklist()

    def _priority(self, synapse) -> float:
        hotkey = synapse.dendrite.hotkey if synapse.dendrite is not None else None
        stake = self.guard.priority(hotkey)
        return stake if stake < float("inf") else 1e30  # offline callers: as high as a float priority goes


def _sent_at(synapse) -> float | None:
    """When the caller sent the request (wall-clock seconds): the dendrite's signed nonce is ``time_ns()``
    at send time from bittensor 7.2 on (the axon's own replay check relies on the same fact)."""
    d = synapse.dendrite
    if d is None or d.nonce is None or d.version is None or d.version < V_7_2_0:
        return None
    return d.nonce / 1e9


def _refuse(synapse, status: int, message: str):
    """Answer with an HTTP error status and a reason; the prediction stays the 'no answer' default."""
    if synapse.axon is None:
        synapse.axon = bt.TerminalInfo()
    synapse.axon.status_code = status
    synapse.axon.status_message = message[:500]
    return synapse


def open_wallet(config: MinerConfig):
    """The miner's wallet, checked to have a hotkey on disk (nothing is created here).

    Raises:
        FileNotFoundError: with the command that creates the keys.
    """
    wallet = bt.Wallet(name=config.wallet_name, hotkey=config.wallet_hotkey, path=config.wallet_path)
    if not wallet.hotkey_file.exists_on_device():
        raise FileNotFoundError(
            f"no hotkey {config.wallet_hotkey!r} in wallet {config.wallet_name!r} under "
            f"{config.wallet_path}; create one with `btcli wallet new_hotkey --wallet.name "
            f"{config.wallet_name} --wallet.hotkey {config.wallet_hotkey}` (offline testing: "
            f"`python -m vidfake.miner.client wallet --wallet.name {config.wallet_name} "
            f"--wallet.path {config.wallet_path}`)"
        )
    return wallet


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("vidfake").setLevel(level)


def run(args: argparse.Namespace) -> int:
    """Run ``vidfake miner`` until SIGINT/SIGTERM. Returns the process exit code.

    0: stopped cleanly; 1: cannot serve (not registered, chain unreachable, weights missing); 2: bad flags.
    """
    try:
        config = config_from_args(args)
    except ValueError as e:
        logger.error("vidfake miner: %s", e)
        return 2
    _setup_logging(getattr(args, "log.level", "INFO"))
    try:
        wallet = open_wallet(config)
    except FileNotFoundError as e:
        logger.error("vidfake miner: %s", e)
        return 1
    if config.offline:
        membership, resync, subtensor = Membership.offline(config.allow_hotkeys), None, None
        logger.info(
            "offline mode: no chain; serving %d allow-listed hotkey(s) on %s",
            len(config.allow_hotkeys),
            config.ip,
        )
    else:
        try:
            subtensor = bt.Subtensor(network=config.network)
            metagraph = subtensor.metagraph(config.netuid)
        except Exception as e:  # noqa: BLE001 - any chain failure ends in the same advice
            logger.error("vidfake miner: cannot reach subtensor %r: %s", config.network, e)
            return 1
        membership = Membership.from_metagraph(metagraph)
        if wallet.hotkey.ss58_address not in membership:
            logger.error(
                "vidfake miner: hotkey %s is not registered on netuid %d (%s); register with `btcli subnet "
                "register --netuid %d --wallet.name %s --wallet.hotkey %s --network %s`",
                wallet.hotkey.ss58_address,
                config.netuid,
                config.network,
                config.netuid,
                config.wallet_name,
                config.wallet_hotkey,
                config.network,
            )
            return 1

        def resync() -> Membership:
            metagraph.sync(subtensor=subtensor)
            return Membership.from_metagraph(metagraph)

    service = MinerService(
        detector_factory(config.weights, config.device, config.threads, config.face_workers), config.service
    )
    server = MinerServer(wallet, Guard(config.guard, membership), service, config, resync=resync)
    try:
        server.start()
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        logger.error("vidfake miner: cannot start: %s", e)
        server.stop()
        return 1
    if subtensor is not None:
        try:
            server.axon.serve(netuid=config.netuid, subtensor=subtensor)
        except Exception as e:  # noqa: BLE001 - validators cannot find an unannounced axon: stop
            logger.error("vidfake miner: cannot announce the axon on netuid %d: %s", config.netuid, e)
            server.stop()
            return 1
        logger.info("axon announced on netuid %d (%s)", config.netuid, config.network)
    _wait_for_signal()
    server.stop()
    return 0


def _wait_for_signal() -> None:
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vidfake.miner.server``: the same as ``vidfake miner``."""
    parser = argparse.ArgumentParser(prog="vidfake miner", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
