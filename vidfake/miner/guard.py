"""Who may ask the miner for work: membership, validator permit and stake, then a per-hotkey rate limit.

The checks run in this order, and the first one never looks up a uid: the subnet template does
``metagraph.hotkeys.index(hotkey)`` before checking membership and raises on every stranger.

1. **registered**: the caller's hotkey is on the subnet's metagraph (offline: on the allow-list).
2. **validator**: it holds a validator permit (unless non-validators are allowed) and at least
   ``min_stake`` stake.
3. **rate limit**: at most ``rate_limit_per_minute`` requests in any 60 s window per hotkey.

The axon calls its blacklist hook *before* it verifies the request's signature, so steps 1-2 run there
(:meth:`Guard.admit`: cheap and safe on unverified claims), while step 3 (:meth:`Guard.take_rate`) runs
in the forward handler, after verification: counting unverified requests would let anyone who knows a
validator's public hotkey spend that validator's quota and lock it out.

:class:`Membership` is an immutable snapshot; the server swaps in a fresh one after each background
metagraph sync (:meth:`Guard.update`), so a check never sees a half-synced metagraph.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: Stake credited to allow-listed hotkeys offline: they are trusted like the largest validator.
OFFLINE_STAKE = math.inf


@dataclass(frozen=True)
class GuardConfig:
    """Admission rules.

    Attributes:
        min_stake: stake (as the metagraph's ``S`` reports it) a caller needs.
        allow_non_validators: serve registered hotkeys without a validator permit (testing only).
        rate_limit_per_minute: requests per hotkey in any 60 s window; 0 disables the limit.
    """

    min_stake: float = 0.0
    allow_non_validators: bool = False
    rate_limit_per_minute: int = 60

    def __post_init__(self):
        if not math.isfinite(self.min_stake) or self.min_stake < 0:
            raise ValueError(f"min_stake must be a finite number >= 0, got {self.min_stake}")
        if self.rate_limit_per_minute < 0:
            raise ValueError(f"rate_limit_per_minute must be >= 0, got {self.rate_limit_per_minute}")


@dataclass(frozen=True)
class Caller:
    """A registered caller as the current snapshot sees it."""

    hotkey: str
    uid: int
    validator_permit: bool
    stake: float


@dataclass(frozen=True)
class Decision:
    """Outcome of a check.

    Attributes:
        allowed: whether the request may go on.
        step: the check that decided: ``"registered"``, ``"validator"``, ``"rate_limit"``, or ``"ok"``.
        reason: words for the log and for the caller's status message.
    """

    allowed: bool
    step: str
    reason: str

    def as_blacklist(self) -> tuple[bool, str]:
        """The ``(blacklisted, reason)`` pair an axon blacklist hook returns."""
        return (not self.allowed, self.reason)


class Membership:
    """Immutable snapshot of the subnet's neurons: hotkey -> uid, validator permit, stake.

    Args:
        hotkeys: ss58 hotkey of each uid, in uid order.
        validator_permit: permit flag of each uid.
        stake: stake of each uid.
        block: chain block of the snapshot (``None`` offline).
        source: where it came from, for logs (``"metagraph"``, ``"offline allow-list"``).
    """

    def __init__(
        self,
        hotkeys: Sequence[str],
        validator_permit: Sequence[bool],
        stake: Sequence[float],
        *,
        block: int | None = None,
        source: str = "metagraph",
    ):
        if not (len(hotkeys) == len(validator_permit) == len(stake)):
            raise ValueError(
                f"membership columns differ in length: {len(hotkeys)} hotkeys, "
                f"{len(validator_permit)} permits, {len(stake)} stakes"
            )
        self.hotkeys = tuple(str(h) for h in hotkeys)
        self.validator_permit = tuple(bool(p) for p in validator_permit)
        self.stake = tuple(float(s) for s in stake)
        self.block = block
        self.source = source
        # A dict, not list.index: membership is tested first, and in O(1), for every caller.
        self._uid = {h: uid for uid, h in enumerate(self.hotkeys)}

    @classmethod
    def from_metagraph(cls, metagraph) -> Membership:
        """Snapshot a synced ``bt.Metagraph`` (its ``hotkeys``, ``validator_permit`` and ``S``)."""
        block = getattr(metagraph, "block", None)
        return cls(
            list(metagraph.hotkeys),
            _as_list(metagraph.validator_permit, bool),
            _as_list(metagraph.S, float),
            block=int(block.item() if hasattr(block, "item") else block) if block is not None else None,
            source="metagraph",
        )

    @classmethod
    def offline(cls, allow_hotkeys: Iterable[str]) -> Membership:
        """Offline mode: the allow-listed hotkeys are the validators, each with a permit and top stake."""
        hotkeys = list(dict.fromkeys(allow_hotkeys))
        return cls(
            hotkeys, [True] * len(hotkeys), [OFFLINE_STAKE] * len(hotkeys), source="offline allow-list"
        )

    def __contains__(self, hotkey: object) -> bool:
        return hotkey in self._uid

    def __len__(self) -> int:
        return len(self.hotkeys)

    def caller(self, hotkey: str) -> Caller:
        """The registered caller behind ``hotkey``.

        Raises:
            KeyError: ``hotkey`` is not registered; test with ``in`` first.
        """
        uid = self._uid[hotkey]
        return Caller(hotkey, uid, self.validator_permit[uid], self.stake[uid])


def _as_list(values, cast: Callable) -> list:
    """Metagraph columns are numpy arrays or torch tensors depending on bittensor's mode."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return [cast(v) for v in np.asarray(values).reshape(-1).tolist()]


class RateLimiter:
    """At most ``limit`` events per key in any sliding window of ``window_s`` seconds. Thread-safe.

    Only admitted (registered) hotkeys reach it, so the number of keys it holds is bounded by the
    subnet's size; :meth:`retain` drops keys that left the metagraph.
    """

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit = int(limit)
        self.window_s = float(window_s)
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        """Record one event for ``key`` if it is under its limit; False (nothing recorded) if not."""
        if self.limit <= 0:
            return True
        now = self._clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and now - events[0] >= self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            return True

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may send again (0 when it may now)."""
        now = self._clock()
        with self._lock:
            events = self._events.get(key)
            if self.limit <= 0 or not events or len(events) < self.limit:
                return 0.0
            return max(0.0, self.window_s - (now - events[0]))

    def retain(self, keys: Iterable[str]) -> None:
        keep = set(keys)
        with self._lock:
            for key in [k for k in self._events if k not in keep]:
                del self._events[key]


class Guard:
    """Admission control for the miner's axon (see the module docstring for the order and why).

    Args:
        config: the rules.
        membership: the initial snapshot (offline: :meth:`Membership.offline`).
        clock: monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(
        self, config: GuardConfig, membership: Membership, *, clock: Callable[[], float] = time.monotonic
    ):
        self.config = config
        self._membership = membership
        self._rate = RateLimiter(config.rate_limit_per_minute, 60.0, clock)
        self._rejected: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    @property
    def membership(self) -> Membership:
        return self._membership

    def update(self, membership: Membership) -> None:
        """Swap in a fresh snapshot (one reference assignment: readers see the old or the new one)."""
        self._membership = membership
        self._rate.retain(membership.hotkeys)

    def admit(self, hotkey: str | None) -> Decision:
        """Steps 1-2: registered, then validator permit and stake. Safe on an unverified hotkey."""
        membership = self._membership
        if not hotkey:
            return self._reject("registered", "request carries no hotkey")
        if hotkey not in membership:
            return self._reject("registered", f"hotkey {hotkey} is not registered ({membership.source})")
        caller = membership.caller(hotkey)
        if not caller.validator_permit and not self.config.allow_non_validators:
            return self._reject("validator", f"uid {caller.uid} has no validator permit")
        if caller.stake < self.config.min_stake:
            return self._reject(
                "validator",
                f"uid {caller.uid} stake {caller.stake:.4g} is under the minimum {self.config.min_stake:.4g}",
            )
        return Decision(True, "ok", f"uid {caller.uid}")

    def take_rate(self, hotkey: str) -> Decision:
        """Step 3: count one request against ``hotkey``'s window. Call after signature verification."""
        if self._rate.take(hotkey):
            return Decision(True, "ok", "within rate limit")
        wait = self._rate.retry_after(hotkey)
        return self._reject(
            "rate_limit",
            f"rate limit of {self.config.rate_limit_per_minute} requests per minute reached; "
            f"retry in {wait:.0f} s",
        )

    def check(self, hotkey: str | None) -> Decision:
        """All three steps in order (for callers that have already verified the hotkey)."""
        decision = self.admit(hotkey)
        return self.take_rate(hotkey) if decision.allowed else decision

    def priority(self, hotkey: str | None) -> float:
        """The caller's stake (0 for unknown callers): bigger validators are served first under load."""
        membership = self._membership
        if not hotkey or hotkey not in membership:
            return 0.0
        return membership.caller(hotkey).stake

    def rejections(self) -> dict[str, int]:
        """Requests refused so far, by the step that refused them."""
        with self._count_lock:
            return dict(self._rejected)

    def _reject(self, step: str, reason: str) -> Decision:
        with self._count_lock:
            self._rejected[step] += 1
        return Decision(False, step, reason)
