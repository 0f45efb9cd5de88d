"""The miner's work: decode a challenge, run the shared detector inside the deadline, shape the answer.

Knows nothing of bittensor: :class:`MinerService` takes a payload string and returns an :class:`Answer`,
so it is tested, benchmarked and served the same way. The axon handlers in :mod:`vidfake.miner.server`
are thin wrappers around :meth:`MinerService.answer`.

**Workers.** Detection runs off the event loop in a fixed pool of threads; each thread owns one
detector replica (the face tracker inside a detector is not safe to share between threads), so memory
grows with ``workers``. Jobs wait in a priority queue ordered by the caller's stake, then arrival.

**Deadline and degradation.** Each request gets a budget: ``deadline_s`` from when the caller sent it
(the dendrite's signed nonce; upload and parsing under a burst count), or less when the caller's own
timeout is shorter. When a worker picks a job up it knows how much of the budget is left and how many
jobs wait behind it, and runs the richest *plan* whose expected cost fits, with a safety factor, while
leaving the jobs behind time for their cheapest plan: all branches, then fewer TALL clips and 2D frames,
then the 2D branch alone, then the middle frame scored as a still image. Expected costs come from
:class:`CostModel`: moving averages of measured runs, and start-up timings scaled by the current load
for plans that have not run lately. Every degradation is logged with the reason.

**Failures.** A plan that raises (other than on unreadable media) is logged with its traceback and the
next, cheaper plan runs on the same frames, down to the still-image path, which shares no code with the
face tracker. Unreadable media (bad base64, no JPEG frame) is *refused*: no prediction is invented,
the caller gets status 400 and the reason. If the deadline passes or every plan failed, the answer is
:data:`UNINFORMATIVE`, logged as an error and counted in the summary. Why that vector: validators score
a missing or malformed answer as zero for the round (and count it against the validity share), while
any valid vector keeps the reward; argmax ``real`` is the better blind guess for the three-class MCC
(real is the most frequent single class when fakes split into synthetic and semi-synthetic), and
``p_real = 0.5`` says "no idea" to anything that reads the probability. It is never presented as a
detection: it is the only answer that is not one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from vidfake.miner.protocol import wire_prediction
from vidfake.preprocessing.errors import MediaError

logger = logging.getLogger(__name__)

Modality = Literal["image", "video"]
MODALITIES: tuple[Modality, ...] = ("image", "video")

#: The answer when no detection finished (see the module docstring for why this vector).
UNINFORMATIVE: tuple[float, float, float] = (0.5, 0.25, 0.25)
#: Start-up timings come from a face-free synthetic clip (no lip windows, no landmarks): scale them up
#: until real requests have replaced them.
CALIBRATION_MARGIN = 2.0


@dataclass(frozen=True)
class Plan:
    """One way to run the detector, from richest to cheapest.

    Attributes:
        name: short name for logs and summaries.
        branches: branches to run (``None``: the detector's default).
        num_clips: TALL clips (``None``: default).
        num_frames: frames for the 2D detector (``None``: default).
        still: score the middle frame as a still image (no face tracking: the last resort).
    """

    name: str
    branches: tuple[str, ...] | None = None
    num_clips: int | None = None
    num_frames: int | None = None
    still: bool = False

    def detect_kwargs(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("branches", self.branches),
                ("num_clips", self.num_clips),
                ("num_frames", self.num_frames),
            )
            if v is not None
        }


IMAGE_PLANS: tuple[Plan, ...] = (Plan("full"),)


def video_plans(num_clips: int, num_frames: int) -> tuple[Plan, ...]:
    """The degradation ladder for videos, given the detector's default clip and frame counts."""
    lite_clips, lite_frames = max(1, num_clips // 4), max(1, num_frames // 4)
    ladder = [
        Plan("full"),
        Plan("lite", None, lite_clips, lite_frames),
        Plan("image2d", ("image2d",), None, lite_frames),
        Plan("image2d_1", ("image2d",), None, 1),
        Plan("still", still=True),
    ]
    out: list[Plan] = []
    for plan in ladder:  # drop rungs identical to the one above (tiny detectors have small defaults)
        if not out or (plan.detect_kwargs(), plan.still) != (out[-1].detect_kwargs(), out[-1].still):
            out.append(plan)
    return tuple(out)


@dataclass(frozen=True)
class ServiceConfig:
    """How the service spends its time.

    Attributes:
        workers: detection threads, each with its own detector replica.
        deadline_s: answer within this many seconds of the caller sending the request (of its arrival
            when the send time is unknown); validators wait 9 s, network included.
        timeout_margin_s: when the caller's own timeout is known, keep this much of it for the network.
        max_transit_s: most time the request may be credited with before it reached the handler (upload,
            parsing), measured from the sender's signed send time; caps what a skewed clock can cost.
        safety: a plan runs only if ``safety * estimated cost`` fits in the time left.
        max_video_frames: longer videos are scored on their first this many (consecutive) frames.
        max_wire_frames: JPEG frames a video payload may hold at all (decoding stops with an error beyond).
        ewma_alpha: weight of the newest timing in the moving cost averages.
        latency_window: recent requests kept for the summary's percentiles.
        video_plans: override the degradation ladder (default: :func:`video_plans` of the detector).
    """

    workers: int = 2
    deadline_s: float = 7.0
    timeout_margin_s: float = 1.5
    max_transit_s: float = 2.0
    safety: float = 1.3
    max_video_frames: int = 160
    max_wire_frames: int = 1024
    ewma_alpha: float = 0.3
    latency_window: int = 1000
    video_plans: tuple[Plan, ...] | None = None

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not (0.0 < self.deadline_s < 60.0):
            raise ValueError(f"deadline_s must be in (0, 60), got {self.deadline_s}")
        if self.timeout_margin_s < 0 or self.max_transit_s < 0 or self.safety < 1.0:
            raise ValueError("timeout_margin_s and max_transit_s must be >= 0, safety >= 1")
        if self.max_video_frames < 1 or self.max_wire_frames < self.max_video_frames:
            raise ValueError("need 1 <= max_video_frames <= max_wire_frames")


@dataclass(frozen=True)
class Answer:
    """What the service concluded about one challenge.

    Attributes:
        modality: ``"image"`` or ``"video"``.
        prediction: ``[real, synthetic, semi-synthetic]``, valid for the validators, or ``None`` when the
            request was refused.
        outcome: ``"ok"`` (full plan), ``"degraded"`` (a cheaper plan, for time), ``"recovered"`` (a cheaper
            plan after an internal error), ``"fallback"`` (:data:`UNINFORMATIVE`: deadline or every plan
            failed) or ``"refused"`` (unreadable media).
        plan: the plan that produced the prediction (``""`` if none).
        frames: frames decoded from the payload (1 for an image; 0 when unknown: refused, or no
            worker finished in time).
        frames_used: frames the detector looked at.
        latency_ms: from the handler receiving the request to the answer.
        queue_ms: time spent waiting for a worker.
        detail: warnings, the degradation reason or the error, for logs and the caller's status message.
    """

    modality: str
    prediction: list[float] | None
    outcome: str
    plan: str = ""
    frames: int = 0
    frames_used: int = 0
    latency_ms: float = 0.0
    queue_ms: float = 0.0
    detail: str = ""

    @property
    def refused(self) -> bool:
        return self.prediction is None


@dataclass(frozen=True)
class ServiceSummary:
    """Counters since start and latency percentiles over the recent window (milliseconds)."""

    uptime_s: float
    requests: dict[str, int]
    outcomes: dict[str, dict[str, int]]
    plans: dict[str, dict[str, int]]
    latency_ms: dict[str, dict[str, float]]
    queue_depth: int
    busy_workers: int
    plan_cost_ms: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


class _OutOfTime(Exception):
    """The job reached a worker with too little of its budget left for any plan."""


class _AllPlansFailed(Exception):
    """Every plan raised; the messages are in ``args[0]``."""


@dataclass
class _Work:
    """What a worker returns to the waiting handler."""

    prediction: list[float]
    plan: Plan
    plan_index: int
    frames: int
    frames_used: int
    queue_s: float
    notes: list[str] = field(default_factory=list)
    recovered: bool = False


class CostModel:
    """How long each ``(modality, plan)`` takes, in seconds. Thread-safe.

    A plan's estimate is the moving average of its own recent runs while that is fresh (it ran within
    the last ``stale_after`` runs of its modality). Otherwise it is its start-up timing scaled by the
    modality's *load factor*, a moving average of measured / start-up time over every run of any plan.
    Without the second rule, a plan skipped because it looked slow during a busy moment would never run
    again, so its estimate would never come down: the miner would stay degraded after the load left.
    """

    def __init__(self, alpha: float, stale_after: int = 20):
        self.alpha = alpha
        self.stale_after = stale_after
        self._base: dict[tuple[str, str], float] = {}
        self._avg: dict[tuple[str, str], float] = {}
        self._last_run: dict[tuple[str, str], int] = {}
        self._runs: Counter[str] = Counter()
        self._load: dict[str, float] = {}
        self._lock = threading.Lock()

    def seed(self, modality: str, plan: str, seconds: float) -> None:
        """Record a start-up timing (the reference the load factor scales)."""
        with self._lock:
            self._base[(modality, plan)] = max(seconds, 1e-6)

    def update(self, modality: str, plan: str, seconds: float) -> None:
        """Record a measured run."""
        key = (modality, plan)
        with self._lock:
            old = self._avg.get(key)
            self._avg[key] = seconds if old is None else old + self.alpha * (seconds - old)
            self._runs[modality] += 1
            self._last_run[key] = self._runs[modality]
            if key in self._base:
                ratio = seconds / self._base[key]
                load = self._load.get(modality)
                self._load[modality] = ratio if load is None else load + self.alpha * (ratio - load)

    def estimate(self, modality: str, plan: str) -> float | None:
        """Expected seconds for one run, or ``None`` if the plan was never timed."""
        key = (modality, plan)
        with self._lock:
            fresh = key in self._avg and self._runs[modality] - self._last_run[key] < self.stale_after
            if fresh or key not in self._base:
                return self._avg.get(key)
            return self._base[key] * self._load.get(modality, 1.0)

    def snapshot_ms(self) -> dict[str, float]:
        with self._lock:
            keys = sorted(set(self._base) | set(self._avg))
        out = {}
        for m, p in keys:
            est = self.estimate(m, p)
            if est is not None:
                out[f"{m}/{p}"] = round(est * 1000.0, 1)
        return out


class _PriorityPool:
    """Fixed threads, one detector replica each, consuming a queue ordered by (-priority, arrival)."""

    def __init__(self, replicas: Sequence[Any], name: str = "vidfake-miner"):
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._busy = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, args=(replica,), name=f"{name}-{i}", daemon=True)
            for i, replica in enumerate(replicas)
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[[Any], Any], priority: float) -> concurrent.futures.Future:
        """Queue ``fn(replica)``; a higher ``priority`` runs first. Cancel the future to drop the job."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        key = -priority if math.isfinite(priority) else (-math.inf if priority > 0 else math.inf)
        self._queue.put((key, next(self._seq), (fn, future)))
        return future

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def busy(self) -> int:
        return self._busy

    def close(self, timeout: float = 5.0) -> None:
        for _ in self._threads:  # sentinels sort before every job, so threads stop first
            self._queue.put((-math.inf, -1 - next(self._seq), None))
        for t in self._threads:
            t.join(timeout)
        while True:  # jobs nobody will run: fail them rather than leave their waiters hanging
            try:
                _, _, item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()

    def _loop(self, replica: Any) -> None:
        while True:
            _, _, item = self._queue.get()
            if item is None:
                return
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue  # the handler gave up on it (deadline passed) before it started
            with self._lock:
                self._busy += 1
            try:
                future.set_result(fn(replica))
            except BaseException as e:  # noqa: BLE001 - delivered to the waiting handler, never lost
                future.set_exception(e)
            finally:
                with self._lock:
                    self._busy -= 1


class MinerService:
    """Answers image and video challenges with the shared detector, within a deadline.

    Args:
        detector_factory: builds one detector (``vidfake.detector.Detector`` or anything with its
            ``detect`` and ``config.num_clips``/``config.num_frames``); called ``workers`` times in
            :meth:`start`, never in the constructor.
        config: timing and size rules.
        clock: monotonic seconds (tests may pass a fake).

    Use :meth:`start` before answering and :meth:`close` after; or use it as a context manager.
    """

    def __init__(
        self,
        detector_factory: Callable[[], Any],
        config: ServiceConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.config = config or ServiceConfig()
        self._factory = detector_factory
        self._clock = clock
        self._wall_clock = wall_clock
        self._pool: _PriorityPool | None = None
        self._replicas: list[Any] = []
        self._costs = CostModel(self.config.ewma_alpha)
        self._plans: dict[str, tuple[Plan, ...]] = {"image": IMAGE_PLANS, "video": ()}
        self._started_at = 0.0
        self._stats_lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._outcomes: dict[str, Counter[str]] = {m: Counter() for m in MODALITIES}
        self._plan_use: dict[str, Counter[str]] = {m: Counter() for m in MODALITIES}
        self._latencies: dict[str, deque[float]] = {
            m: deque(maxlen=self.config.latency_window) for m in MODALITIES
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, calibrate: bool = True) -> MinerService:
        """Build the detector replicas, warm them up, time each plan once, start the workers."""
        if self._pool is not None:
            return self
        t0 = time.perf_counter()
        replicas = [self._factory() for _ in range(self.config.workers)]
        cfg = getattr(replicas[0], "config", None)
        self._plans["video"] = self.config.video_plans or video_plans(
            int(getattr(cfg, "num_clips", 8)), int(getattr(cfg, "num_frames", 16))
        )
        if calibrate:
            self._calibrate(replicas)
        self._replicas = replicas
        self._pool = _PriorityPool(replicas)
        self._started_at = self._clock()
        logger.info(
            "miner service: %d worker(s) ready in %.1f s; video plans %s; plan costs (ms) %s",
            len(replicas),
            time.perf_counter() - t0,
            [p.name for p in self._plans["video"]],
            self._costs.snapshot_ms(),
        )
        return self

    def close(self) -> None:
        """Stop the workers (a job already running finishes first) and release the detectors."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        for replica in self._replicas:
            close = getattr(replica, "close", None)
            if callable(close):
                close()
        self._replicas = []

    def __enter__(self) -> MinerService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def plans(self) -> dict[str, tuple[Plan, ...]]:
        return dict(self._plans)

    def plan_cost(self, modality: str, plan: str) -> float | None:
        """Current cost estimate of a plan in seconds (``None`` before it was ever timed)."""
        return self._costs.estimate(modality, plan)

    def _calibrate(self, replicas: Sequence[Any]) -> None:
        """Warm every replica (at once: they share nothing), then time each plan on the first one.

        The media are synthetic and face-free (nothing is shipped to calibrate on), so lip windows and
        landmarks are not exercised: the timings are scaled by :data:`CALIBRATION_MARGIN` and replaced
        by moving averages of real requests as they come.
        """
        rng = np.random.default_rng(0)
        base = np.linspace(0, 255, 256, dtype=np.float32)
        image = np.clip(
            base[None, :, None] * 0.5 + base[:, None, None] * 0.5 + rng.normal(0, 12, (256, 256, 3)), 0, 255
        ).astype(np.uint8)
        video = np.stack([np.roll(image, 2 * t, axis=1) for t in range(32)])

        def warm(replica: Any) -> None:
            for modality, media in (("image", image), ("video", video)):
                try:
                    self._run_plan(replica, modality, self._plans[modality][0], media, "<warm-up>")
                except Exception:  # noqa: BLE001 - logged; requests will find out for themselves
                    logger.warning("warm-up of the %s path failed", modality, exc_info=True)

        threads = [
            threading.Thread(target=warm, args=(r,), name=f"vidfake-warm-{i}") for i, r in enumerate(replicas)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for modality, media in (("image", image), ("video", video)):
            for plan in self._plans[modality]:
                t = time.perf_counter()
                try:
                    self._run_plan(replicas[0], modality, plan, media, "<calibration>")
                except Exception:  # noqa: BLE001 - the plan stays untimed (and is tried when needed)
                    logger.warning("calibration of %s plan %r failed", modality, plan.name, exc_info=True)
                    continue
                self._costs.seed(modality, plan.name, (time.perf_counter() - t) * CALIBRATION_MARGIN)

    # ------------------------------------------------------------------ answering
    def budget_s(self, caller_timeout_s: float | None = None, sent_at: float | None = None) -> float:
        """Seconds left for this request, from now.

        ``deadline_s`` (or the caller's timeout less ``timeout_margin_s``, if shorter) counts from when the
        caller sent the request (``sent_at``, wall-clock seconds: the dendrite's signed nonce) when that is
        known, so upload and parsing time under a burst is not forgotten; the time credited to transit is
        clamped to ``[0, max_transit_s]`` so a skewed clock can only cost that much.
        """
        budget = self.config.deadline_s
        if caller_timeout_s is not None and math.isfinite(caller_timeout_s) and caller_timeout_s > 0:
            budget = min(budget, caller_timeout_s - self.config.timeout_margin_s)
        if sent_at is not None and math.isfinite(sent_at):
            budget -= min(max(self._wall_clock() - sent_at, 0.0), self.config.max_transit_s)
        return max(budget, 0.1)

    async def answer(
        self,
        modality: Modality,
        payload: str | bytes,
        *,
        caller: str = "?",
        timeout_s: float | None = None,
        sent_at: float | None = None,
        priority: float = 0.0,
    ) -> Answer:
        """Answer one challenge; never raises, never returns an invalid prediction.

        Args:
            modality: ``"image"`` (standard base64 of one image) or ``"video"`` (base85 of zlib of JPEG
                frames), as the subnet sends them.
            payload: the synapse's ``image`` or ``video`` field.
            caller: the caller's hotkey, for logs.
            timeout_s: the caller's own timeout (the synapse's ``timeout``), if known.
            sent_at: when the caller sent it, wall-clock seconds (the dendrite's nonce), if known.
            priority: queue priority (the caller's stake).
        """
        t0 = self._clock()
        deadline = t0 + self.budget_s(timeout_s, sent_at)
        try:
            answer = await self._answer(modality, payload, caller, t0, deadline, priority)
        except Exception as e:  # noqa: BLE001 - the last net: the process keeps serving
            logger.exception("unexpected failure answering a %s challenge from %s", modality, caller)
            answer = self._fallback(modality, f"internal error: {type(e).__name__}: {e}", t0)
        self._record(answer, caller)
        return answer

    async def _answer(
        self, modality: str, payload, caller: str, t0: float, deadline: float, priority: float
    ) -> Answer:
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}")
        if self._pool is None:
            raise RuntimeError("MinerService.answer called before start()")
        job = functools.partial(
            self._work, modality=modality, payload=payload, caller=caller, submitted=t0, deadline=deadline
        )
        future = self._pool.submit(job, priority)
        try:
            work: _Work = await asyncio.wait_for(
                asyncio.wrap_future(future), timeout=max(0.0, deadline - self._clock())
            )
        except TimeoutError:
            future.cancel()
            return self._fallback(
                modality, f"deadline of {deadline - t0:.1f} s passed before detection finished", t0
            )
        except MediaError as e:
            return Answer(modality, None, "refused", latency_ms=self._ms(t0), detail=str(e))
        except _OutOfTime as e:
            return self._fallback(modality, str(e), t0)
        except _AllPlansFailed as e:
            return self._fallback(modality, f"every plan failed: {e}", t0)
        plan_name = work.plan.name
        if work.recovered:
            outcome = "recovered"
        elif work.plan_index > 0:
            outcome = "degraded"
        else:
            outcome = "ok"
        return Answer(
            modality,
            work.prediction,
            outcome,
            plan_name,
            work.frames,
            work.frames_used,
            self._ms(t0),
            round(work.queue_s * 1000.0, 1),
            "; ".join(work.notes),
        )

    def _fallback(self, modality: str, reason: str, t0: float) -> Answer:
        logger.error(
            "%s challenge answered with the uninformative vector %s: %s",
            modality,
            list(UNINFORMATIVE),
            reason,
        )
        return Answer(modality, list(UNINFORMATIVE), "fallback", latency_ms=self._ms(t0), detail=reason)

    def _ms(self, t0: float) -> float:
        return round((self._clock() - t0) * 1000.0, 1)

    # ------------------------------------------------------------------ in a worker thread
    def _work(
        self, replica: Any, *, modality: str, payload, caller: str, submitted: float, deadline: float
    ) -> _Work:
        started = self._clock()
        plans = self._plans[modality]
        waited = started - submitted
        decode_est = self._costs.estimate(modality, "decode") or 0.0
        cheapest = min((self._costs.estimate(modality, p.name) or 0.0) for p in plans)
        # Decode first, whatever the time left: an unreadable payload is always refused (400) for what
        # it is, never answered with the uninformative vector because the miner happened to be busy.
        # Decoding is bounded by the wire limits and its cost is part of the budget checked below.
        source = f"<wire:{modality} from {caller[:12]}>"
        t = time.perf_counter()
        media, notes = self._decode(modality, payload, source)
        self._costs.update(modality, "decode", time.perf_counter() - t)
        frames = 1 if modality == "image" else int(media.shape[0])
        left = deadline - self._clock()
        # A burst shares the deadline: leave the jobs queued behind this one time for their cheapest plan.
        behind = self._pool.pending if self._pool is not None else 0
        reserve = math.ceil(behind / self.config.workers) * (decode_est + cheapest) * self.config.safety
        first = self._choose(modality, plans, left, reserve)
        if first is None:
            raise _OutOfTime(
                f"{left:.2f} s left after {waited:.2f} s in the queue and decoding, under the "
                f"{cheapest * self.config.safety:.2f} s the cheapest plan needs"
            )
        if first > 0:
            full = self._costs.estimate(modality, plans[0].name) or 0.0
            note = (
                f"degraded to plan {plans[first].name!r}: {left:.2f} s left after {waited:.2f} s "
                f"in the queue, {behind} queued behind (keeping {reserve:.2f} s for them); "
                f"plan {plans[0].name!r} takes ~{full:.2f} s"
            )
            logger.warning("%s from %s: %s", modality, caller, note)
            notes.append(note)
        errors: list[str] = []
        for index in range(first, len(plans)):
            plan = plans[index]
            if index > first:  # a retry after a failure: only if this plan can still finish in time
                est = self._costs.estimate(modality, plan.name) or 0.0
                if deadline - self._clock() < est * self.config.safety:
                    errors.append(f"{plan.name}: skipped, not enough time left")
                    continue
            t = time.perf_counter()
            try:
                result = self._run_plan(replica, modality, plan, media, source)
                prediction = wire_prediction(result.three_class)
            except MediaError:
                raise
            except Exception as e:  # noqa: BLE001 - logged with traceback; the next plan answers
                logger.error(
                    "%s: plan %r failed: %s: %s", source, plan.name, type(e).__name__, e, exc_info=True
                )
                errors.append(f"{plan.name}: {type(e).__name__}: {e}")
                continue
            # Timed on success only: a plan that fails fast must not look cheap.
            self._costs.update(modality, plan.name, time.perf_counter() - t)
            if errors:
                notes.append("recovered after " + "; ".join(errors))
            notes.extend(getattr(result, "warnings", ()))
            return _Work(
                prediction,
                plan,
                index,
                frames,
                int(getattr(result, "frames_used", frames)),
                started - submitted,
                notes,
                recovered=bool(errors),
            )
        raise _AllPlansFailed("; ".join(errors) or "no plan to run")

    def _choose(
        self, modality: str, plans: Sequence[Plan], left_s: float, reserve_s: float = 0.0
    ) -> int | None:
        """Index of the plan to run with ``left_s`` seconds to the deadline.

        The richest plan whose estimated cost times the safety factor fits in ``left_s - reserve_s``
        (the reserve is time kept for the requests queued behind); failing that, the cheapest plan if it
        fits in ``left_s``. A plan never timed counts as fitting. ``None`` when nothing fits: running a
        plan anyway would only finish after the handler has answered, delaying the requests behind it.
        """

        def fits(plan: Plan, budget: float) -> bool:
            est = self._costs.estimate(modality, plan.name)
            return est is None or est * self.config.safety <= budget

        for i, plan in enumerate(plans):
            if fits(plan, left_s - reserve_s):
                return i
        return len(plans) - 1 if fits(plans[-1], left_s) else None

    def _decode(self, modality: str, payload, source: str) -> tuple[np.ndarray, list[str]]:
        """Payload -> ``(H, W, 3)`` image or ``(T, H, W, 3)`` video, ``uint8`` RGB.

        Raises:
            MediaError: the payload cannot be read (bad encoding, no frame, over the limits).
        """
        from vidfake.preprocessing import wire

        if modality == "image":
            return wire.decode_image_b64(payload, source=source, limits=self._limits), []
        video = wire.decode_video_b85(payload, source=source, limits=self._limits)
        frames, notes = video.frames, list(video.warnings)  # corrupt frames skipped are listed here
        if frames.shape[0] > self.config.max_video_frames:
            notes.append(f"scored the first {self.config.max_video_frames} of {frames.shape[0]} frames")
            frames = frames[: self.config.max_video_frames]
        return frames, notes

    @functools.cached_property
    def _limits(self):
        """Bounds on one payload: far above what validators send (~137 frames of 256x256 JPEG, a few MB),
        far below what would hurt the process (zlib bombs, absurd frame sizes or counts)."""
        from vidfake.preprocessing.inputs import MediaLimits

        return MediaLimits(
            max_bytes=64 * 1024**2,
            max_pixels_per_frame=2048 * 2048,
            max_frames=self.config.max_wire_frames,
            max_decoded_bytes=1024**3,
            # ~137 JPEG frames of 256x256 are a few MB; 48 MiB leaves 10x headroom while a 300 KB zlib
            # bomb is refused after 48 MiB of inflation instead of 256 MiB (+0.5 GB RSS, seconds).
            max_decompressed_bytes=48 * 1024**2,
            decode_timeout_s=self.config.deadline_s,
        )

    @staticmethod
    def _run_plan(replica: Any, modality: str, plan: Plan, media: np.ndarray, source: str):
        if modality == "image":
            return replica.detect(media, source=source, kind="image", **plan.detect_kwargs())
        if plan.still:
            return replica.detect(media[media.shape[0] // 2], source=source, kind="image")
        return replica.detect(media, source=source, kind="video", **plan.detect_kwargs())

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, answer: Answer, caller: str) -> None:
        with self._stats_lock:
            self._requests[answer.modality] += 1
            self._outcomes.setdefault(answer.modality, Counter())[answer.outcome] += 1
            if answer.plan:
                self._plan_use.setdefault(answer.modality, Counter())[answer.plan] += 1
            self._latencies.setdefault(answer.modality, deque(maxlen=self.config.latency_window)).append(
                answer.latency_ms
            )
        pred = (
            "refused"
            if answer.prediction is None
            else "[" + ", ".join(f"{v:.4f}" for v in answer.prediction) + "]"
        )
        level = logging.INFO if answer.outcome in ("ok", "degraded") else logging.WARNING
        logger.log(
            level,
            "%s from %s: %s frames=%d used=%d plan=%s latency=%.0f ms (queue %.0f ms) prediction=%s%s",
            answer.modality,
            caller,
            answer.outcome,
            answer.frames,
            answer.frames_used,
            answer.plan or "-",
            answer.latency_ms,
            answer.queue_ms,
            pred,
            f" | {answer.detail}" if answer.detail else "",
        )

    def summary(self) -> ServiceSummary:
        """Counters since start, latency percentiles over the last ``latency_window`` requests."""
        with self._stats_lock:
            lat = {}
            for m, values in self._latencies.items():
                if values:
                    arr = np.asarray(values, dtype=np.float64)
                    lat[m] = {
                        "p50": float(np.percentile(arr, 50)),
                        "p95": float(np.percentile(arr, 95)),
                        "p99": float(np.percentile(arr, 99)),
                        "max": float(arr.max()),
                    }
            summary = ServiceSummary(
                uptime_s=round(self._clock() - self._started_at, 1) if self._started_at else 0.0,
                requests=dict(self._requests),
                outcomes={m: dict(c) for m, c in self._outcomes.items() if c},
                plans={m: dict(c) for m, c in self._plan_use.items() if c},
                latency_ms=lat,
                queue_depth=self._pool.pending if self._pool else 0,
                busy_workers=self._pool.busy if self._pool else 0,
                plan_cost_ms=self._costs.snapshot_ms(),
            )
        return summary
