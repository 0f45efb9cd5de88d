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

import logging
import signal
import threading
import time
import typing
from collections.abc import Callable
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
#: Seconds the axon keeps an idle keep-alive connection open. A validator's dendrite (bittensor 10.5.0:
#: a default ``aiohttp.ClientSession``, whose connector pools idle connections for 15 s) reuses a
#: connection for 15 s, while the axon's uvicorn closes it after 5 s (``uvicorn.Config`` default). A
#: validator whose event loop stalls 5-15 s between two queries then sends into a socket the axon has
#: closed, and gets "Can not write request body" (status 422) for a miner that was up all along. Keeping
#: connections longer than the dendrite's pool leaves closing to the dendrite.
AXON_KEEP_ALIVE_S = 20


@dataclass(frozen=True)
class MinerConfig:
    """Everything ``vidfake miner`` needs, read once from the command line by :mod:`vidfake.commands.miner`.

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
        image_model, video_model: ``hf:<hub id or folder>`` transformers classifiers added as the
            ``hf_image``/``hf_video`` branches (``vidfake.hub``); label_map: real/fake names for their labels.
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
    image_model: str | None = None
    video_model: str | None = None
    label_map: str | None = None
    guard: GuardConfig = field(default_factory=GuardConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    resync_s: float = 300.0
    summary_s: float = 60.0


def detector_factory(
    weights: str,
    device: str = "cpu",
    threads: int | None = None,
    face_workers: int | None = None,
    *,
    image_model: str | None = None,
    video_model: str | None = None,
    label_map: str | None = None,
) -> Callable[[], object]:
    """A callable that builds one detector replica (the service calls it once per worker).

    ``image_model``/``video_model`` (``hf:...``) add hub branches; ``None`` keeps the weights' own.
    """
    hub = {k: v for k, v in (("hf_image_model", image_model), ("hf_video_model", video_model),
                             ("label_map", label_map)) if v is not None}

    def build():
        from vidfake.detector import Detector

        # Every network now: a damaged weights file stops the miner at start, never on a request.
        return Detector.from_pretrained(
            weights, device=device, threads=threads, face_workers=face_workers, **hub
        ).load()

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
        self.axon.fast_server.config.timeout_keep_alive = AXON_KEEP_ALIVE_S
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


def run(config: MinerConfig) -> int:
    """Serve ``config`` until SIGINT/SIGTERM. Returns the process exit code.

    0: stopped cleanly; 1: cannot serve (no hotkey, not registered, chain unreachable, weights missing).
    The flags are read and checked before this, by :mod:`vidfake.commands.miner` (bad flags exit 2 there).
    """
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
        detector_factory(
            config.weights,
            config.device,
            config.threads,
            config.face_workers,
            image_model=config.image_model,
            video_model=config.video_model,
            label_map=config.label_map,
        ),
        config.service,
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


if __name__ == "__main__":  # python -m vidfake.miner.server: the same as `vidfake miner`
    from vidfake.commands.miner import main

    raise SystemExit(main())
