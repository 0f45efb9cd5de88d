"""The miner end to end: a real ``bt.Axon`` on 127.0.0.1, real ``bt.Dendrite`` validators, local wallets,
the real detector (tiny random-weight variants: these tests check the plumbing, not the scores).

Also the service on its own, with the tiny detector wrapped to inject latency and faults, for the
degradation and recovery paths that a healthy detector never takes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
import zlib
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from vidfake.miner.client import (
    Challenge,
    LocalValidator,
    challenge_from_frames,
    challenge_from_image,
    create_local_wallet,
    expected_reward,
    free_port,
    labelled_challenges,
    local_dendrite,
)
from vidfake.miner.guard import Guard, GuardConfig, Membership
from vidfake.miner.protocol import ImageSynapse, VideoSynapse, is_valid_prediction, video_challenge
from vidfake.miner.server import MinerConfig, MinerServer, detector_factory
from vidfake.miner.service import UNINFORMATIVE, MinerService, Plan, ServiceConfig

VALIDATOR_TIMEOUT_S = 9.0


def face_image(size: int = 320) -> np.ndarray:
    """A real photograph with a face (scikit-image's bundled astronaut), ``(size, size, 3) uint8``."""
    from skimage.data import astronaut

    img = astronaut()
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def face_clip(n: int, size: int = 320) -> np.ndarray:
    """``n`` consecutive frames: the photograph panning slowly, ``(n, size, size, 3) uint8``."""
    base = face_image(size + 64)
    return np.stack([base[(t % 32) : (t % 32) + size, (t % 64) : (t % 64) + size] for t in range(n)])


def jpeg(img: np.ndarray, quality: int = 75) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def raw_video_payload(parts: list[bytes]) -> str:
    return base64.b85encode(zlib.compress(b"".join(parts))).decode()


# --------------------------------------------------------------------------- the served miner
@pytest.fixture(scope="module")
def wallets(tmp_path_factory):
    root = tmp_path_factory.mktemp("wallets")
    return {name: create_local_wallet(name, root) for name in ("miner", "validator", "stranger")}


@pytest.fixture(scope="module")
def miner(wallets):
    allow = (wallets["validator"].hotkey.ss58_address,)
    config = MinerConfig(
        port=free_port(),
        ip="127.0.0.1",
        offline=True,
        allow_hotkeys=allow,
        weights="tiny",
        guard=GuardConfig(rate_limit_per_minute=0),
        service=ServiceConfig(workers=2),
        summary_s=3600.0,
    )
    service = MinerService(detector_factory("tiny"), config.service)
    server = MinerServer(wallets["miner"], Guard(config.guard, Membership.offline(allow)), service, config)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def validator(miner, wallets):
    return LocalValidator(wallets["validator"], miner.axon.info())


def assert_answered(result, modality: str):
    assert result.status_code == 200, result.status_message
    assert result.valid and is_valid_prediction(result.prediction), result.prediction
    assert result.modality == modality and result.latency_ms < VALIDATOR_TIMEOUT_S * 1000


def test_image_challenge_gets_a_valid_answer_and_the_image_is_not_echoed(miner, wallets):
    synapse = challenge_from_image(face_image()).synapse

    async def ask():
        d = local_dendrite(wallets["validator"])
        try:
            return (
                await d(
                    axons=[miner.axon.info()], synapse=synapse, deserialize=False, timeout=VALIDATOR_TIMEOUT_S
                )
            )[0]
        finally:
            await d.aclose_session()

    response = asyncio.run(ask())
    assert response.dendrite.status_code == 200, response.dendrite.status_message
    assert isinstance(response.prediction, list) and len(response.prediction) == 3
    assert all(type(v) is float for v in response.prediction)
    assert is_valid_prediction(response.prediction)
    assert response.image == ""  # the miner cleared it; the dendrite copied the server's empty field


@pytest.mark.parametrize("frames", [8, 137])
def test_video_challenge_gets_a_valid_answer(validator, frames):
    [result] = validator.query_sync([challenge_from_frames(face_clip(frames))])
    assert_answered(result, "video")


def test_unknown_hotkey_is_refused(miner, wallets):
    stranger = LocalValidator(wallets["stranger"], miner.axon.info())
    [result] = stranger.query_sync([challenge_from_image(face_image())])
    assert result.status_code == 403 and not result.valid
    assert "not registered" in result.status_message
    assert result.prediction == [-1.0, -1.0, -1.0]



def test_a_connection_the_dendrite_pooled_for_seconds_is_still_served(miner, wallets):
    """A validator's event loop that stalls 7 s between two queries (longer than uvicorn's default 5 s
    keep-alive, shorter than the dendrite's 15 s pool) reuses the pooled connection: both answered."""
    synapse = challenge_from_image(face_image(64)).synapse

    async def ask_twice():
        d = local_dendrite(wallets["validator"])

        async def ask():
            [r] = await d(axons=[miner.axon.info()], synapse=synapse.model_copy(deep=True),
                          deserialize=False, timeout=VALIDATOR_TIMEOUT_S)
            return r

        try:
            first = await ask()
            time.sleep(7.0)  # blocks the loop, as a validator's synchronous work between two queries does
            return first, await ask()
        finally:
            await d.aclose_session()

    first, second = asyncio.run(ask_twice())
    assert first.dendrite.status_code == 200, first.dendrite.status_message
    assert second.dendrite.status_code == 200, second.dendrite.status_message
    assert is_valid_prediction(second.prediction)

MALFORMED = {
    "image: bad base64": Challenge(ImageSynapse(image="this is not base64!"), "bad-b64", 0),
    "image: not an image": Challenge(
        ImageSynapse(image=base64.b64encode(b"hello " * 100).decode()), "text", 0
    ),
    "image: empty": Challenge(ImageSynapse(image=""), "empty", 0),
    "video: bad base85": Challenge(VideoSynapse(video="~~~ not base85 ~~~"), "bad-b85", 0),
    "video: no JPEG frames": Challenge(VideoSynapse(video=raw_video_payload([b"\x00" * 5000])), "no-jpeg", 0),
    "video: truncated zlib": Challenge(
        VideoSynapse(video=base64.b85encode(zlib.compress(b"\xff\xd8" * 1000)[:20]).decode()), "truncated", 0
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_payloads_are_refused_cleanly(validator, name):
    [result] = validator.query_sync([MALFORMED[name]])
    assert result.status_code == 400, (result.status_code, result.status_message)
    assert result.status_message  # says what was wrong
    assert result.prediction == [-1.0, -1.0, -1.0] and not result.valid


def test_odd_but_readable_videos_are_answered(validator, miner, caplog):
    frames = face_clip(12, 256)
    parts = [jpeg(f) for f in frames]
    corrupt = parts[:5] + [parts[5][:200] + b"\x00" * 300 + b"\xff\xd9"] + parts[6:]  # a garbled frame
    caplog.set_level(logging.INFO, logger="vidfake.miner")
    results = validator.query_sync(
        [
            Challenge(VideoSynapse(video=raw_video_payload(parts[:1])), "one frame", 1),
            Challenge(video_challenge(face_clip(400, 256)), "400 frames", 400),
            Challenge(VideoSynapse(video=raw_video_payload(corrupt)), "corrupt frame", 12),
        ]
    )
    for r in results:
        assert_answered(r, "video")
    assert f"scored the first {miner.service.config.max_video_frames} of 400 frames" in caplog.text


def test_server_keeps_answering_after_bad_requests(validator):
    results = validator.query_sync(list(MALFORMED.values()) + [challenge_from_image(face_image())])
    assert [r.status_code for r in results[:-1]] == [400] * len(MALFORMED)
    assert_answered(results[-1], "image")


def test_sixteen_concurrent_video_challenges_all_answered_in_time(miner, validator):
    rng = np.random.default_rng(1)
    challenges = [challenge_from_frames(face_clip(int(n), 256)) for n in rng.integers(8, 138, size=16)]
    before = dict(miner.service.summary().outcomes.get("video", {}))
    t0 = time.perf_counter()
    results = validator.query_sync(challenges, concurrency=16)
    wall = time.perf_counter() - t0
    after = miner.service.summary().outcomes["video"]
    outcomes = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    print(
        f"16 concurrent videos: {wall:.1f} s wall, outcomes {outcomes}, "
        f"latency ms {sorted(round(r.latency_ms) for r in results)}"
    )
    assert len(results) == 16
    for r in results:
        assert_answered(r, "video")
    assert wall < VALIDATOR_TIMEOUT_S


def test_rate_limited_caller_gets_429_after_its_quota(miner, validator):
    original = miner.guard
    miner.guard = Guard(GuardConfig(rate_limit_per_minute=2), original.membership)
    try:
        results = validator.query_sync([challenge_from_image(face_image())] * 3)
    finally:
        miner.guard = original
    assert [r.status_code for r in results] == [200, 200, 429]
    assert "rate limit" in results[2].status_message


def test_summary_counts_what_happened(miner):
    s = miner.service.summary()
    assert s.requests.get("image", 0) >= 1 and s.requests.get("video", 0) >= 1
    assert s.outcomes["image"].get("refused", 0) >= 1
    assert set(s.latency_ms["video"]) == {"p50", "p95", "p99", "max"}
    assert "video/full" in s.plan_cost_ms


def test_background_resync_changes_who_may_ask_and_survives_chain_errors(wallets, caplog):
    validator_hk, stranger_hk = (wallets[n].hotkey.ss58_address for n in ("validator", "stranger"))
    answers: list = [RuntimeError("chain unreachable"), Membership([stranger_hk], [True], [10.0], block=2)]

    def resync() -> Membership:
        item = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(item, Exception):
            raise item
        return item

    config = MinerConfig(
        port=free_port(),
        ip="127.0.0.1",
        offline=True,
        allow_hotkeys=(validator_hk,),
        resync_s=0.2,
        summary_s=3600.0,
    )
    service = MinerService(detector_factory("tiny"), ServiceConfig(workers=1)).start(calibrate=False)
    guard = Guard(config.guard, Membership.offline(config.allow_hotkeys))
    caplog.set_level(logging.INFO, logger="vidfake.miner.server")
    with MinerServer(wallets["miner"], guard, service, config, resync=resync) as server:
        t0 = time.perf_counter()
        while server.guard.membership.block != 2 and time.perf_counter() - t0 < 20:
            time.sleep(0.05)
        assert server.guard.membership.block == 2
        image = challenge_from_image(face_image())
        [as_validator] = LocalValidator(wallets["validator"], server.axon.info()).query_sync([image])
        [as_stranger] = LocalValidator(wallets["stranger"], server.axon.info()).query_sync([image])
    assert "re-sync failed" in caplog.text and "re-synced at block 2" in caplog.text
    assert as_validator.status_code == 403 and "not registered" in as_validator.status_message
    assert_answered(as_stranger, "image")


# ------------------------------------------------------------------ the service: degradation and faults
class Injected:
    """The real detector with latency or failures injected for chosen plans (fault injection only)."""

    def __init__(self, inner, *, delay_s: float = 0.0, delay_when=None, fail_when=None):
        self.inner, self.config = inner, inner.config
        self.delay_s, self.delay_when, self.fail_when = delay_s, delay_when, fail_when

    def detect(self, media, **kw):
        if self.fail_when and self.fail_when(media, kw):
            raise RuntimeError("injected fault")
        if self.delay_when and self.delay_when(media, kw):
            time.sleep(self.delay_s)
        return self.inner.detect(media, **kw)


def is_full_video(media, kw) -> bool:
    return kw.get("kind") == "video" and not kw.get("branches") and not kw.get("num_clips")


@pytest.fixture(scope="module")
def tiny_factory():
    return detector_factory("tiny")


def answer(service: MinerService, modality: str, payload: str, **kw):
    return asyncio.run(service.answer(modality, payload, caller="tester", **kw))


def test_video_plans_degrade_from_all_branches_to_a_still_frame(tiny_factory):
    service = MinerService(tiny_factory, ServiceConfig(workers=1)).start(calibrate=False)
    try:
        plans = service.plans["video"]
        assert plans[0] == Plan("full") and plans[-1].still
        assert any(p.branches == ("image2d",) for p in plans)
    finally:
        service.close()


def test_an_overrun_is_answered_at_the_deadline_and_the_next_request_degrades(tiny_factory, caplog):
    slow_full = lambda: Injected(tiny_factory(), delay_s=4.0, delay_when=is_full_video)  # noqa: E731
    service = MinerService(slow_full, ServiceConfig(workers=1, deadline_s=3.0)).start(calibrate=False)
    payload = video_challenge(face_clip(30)).video
    caplog.set_level(logging.WARNING, logger="vidfake.miner.service")
    try:
        # Nothing timed yet: the full plan runs, overruns, and the handler answers at the deadline.
        first = answer(service, "video", payload)
        assert first.outcome == "fallback" and "deadline" in first.detail
        assert first.prediction == list(UNINFORMATIVE) and first.latency_ms < 3500
        # The worker finishes in the background and records what the full plan really costs...
        t0 = time.perf_counter()
        while service.plan_cost("video", "full") is None and time.perf_counter() - t0 < 30:
            time.sleep(0.05)
        assert service.plan_cost("video", "full") > 4.0
        # ...so the next request goes straight to a cheaper plan and is answered in time.
        second = answer(service, "video", payload)
    finally:
        service.close()
    assert second.outcome == "degraded" and second.plan != "full", second
    assert is_valid_prediction(second.prediction) and second.latency_ms < 3500
    assert "degraded to plan" in caplog.text


def test_failing_branches_are_recovered_by_a_cheaper_plan(tiny_factory, caplog):
    factory = lambda: Injected(tiny_factory(), fail_when=is_full_video)  # noqa: E731
    service = MinerService(factory, ServiceConfig(workers=1)).start(calibrate=False)
    try:
        caplog.set_level(logging.ERROR, logger="vidfake.miner.service")
        a = answer(service, "video", video_challenge(face_clip(30)).video)
    finally:
        service.close()
    assert a.outcome == "recovered" and a.plan != "full" and is_valid_prediction(a.prediction)
    assert "plan 'full' failed" in caplog.text and "injected fault" in a.detail


def test_when_everything_fails_the_answer_is_valid_uninformative_and_logged(tiny_factory, caplog):
    factory = lambda: Injected(tiny_factory(), fail_when=lambda media, kw: True)  # noqa: E731
    service = MinerService(factory, ServiceConfig(workers=1)).start(calibrate=False)
    try:
        caplog.set_level(logging.ERROR, logger="vidfake.miner.service")
        a = answer(service, "image", challenge_from_image(face_image()).synapse.image)
        s = service.summary()
    finally:
        service.close()
    assert (
        a.outcome == "fallback" and a.prediction == list(UNINFORMATIVE) and is_valid_prediction(a.prediction)
    )
    assert "uninformative" in caplog.text and s.outcomes["image"] == {"fallback": 1}


def test_a_detector_that_overruns_is_answered_at_the_deadline(tiny_factory):
    factory = lambda: Injected(tiny_factory(), delay_s=1.5, delay_when=lambda media, kw: True)  # noqa: E731
    service = MinerService(factory, ServiceConfig(workers=1, deadline_s=0.3)).start(calibrate=False)
    try:
        t0 = time.perf_counter()
        a = answer(service, "image", challenge_from_image(face_image()).synapse.image)
        elapsed = time.perf_counter() - t0
    finally:
        service.close()
    assert a.outcome == "fallback" and "deadline" in a.detail and is_valid_prediction(a.prediction)
    assert elapsed < 1.0


def test_budget_counts_from_the_callers_send_time_and_timeout(tiny_factory):
    service = MinerService(
        tiny_factory,
        ServiceConfig(deadline_s=7.0, timeout_margin_s=1.5, max_transit_s=2.0),
        wall_clock=lambda: 1000.0,
    )
    assert service.budget_s() == 7.0
    assert service.budget_s(caller_timeout_s=5.0) == pytest.approx(3.5)
    assert service.budget_s(sent_at=999.25) == pytest.approx(6.25)
    assert service.budget_s(sent_at=990.0) == pytest.approx(5.0)  # a skewed clock costs at most 2 s
    assert service.budget_s(sent_at=1005.0) == pytest.approx(7.0)  # a clock ahead of ours costs nothing


# ------------------------------------------------------------------ expected reward on labelled media
@pytest.mark.data
def test_labelled_media_go_through_the_dendrite_and_are_scored_like_validators_score(shared_data, validator):
    challenges = labelled_challenges(shared_data, split="val", images=6, videos=3, seed=0)
    assert sorted(c.modality for c in challenges) == ["image"] * 6 + ["video"] * 3
    assert all(c.label in (0, 1, 2) for c in challenges)
    assert all(8 <= c.frames <= 137 for c in challenges if c.modality == "video")
    results = validator.query_sync(challenges, concurrency=3)
    assert all(r.valid for r in results), [r for r in results if not r.valid]
    reward = expected_reward(results)
    assert reward.image["n_answers"] == 6 and reward.video["n_answers"] == 3
    assert reward.image["validity_penalty"] == 1.0 and reward.video["validity_penalty"] == 1.0
    # Tiny random weights: the number means nothing, but it is the validators' formula on these answers.
    assert reward.total == pytest.approx(0.6 * reward.image["reward"] + 0.4 * reward.video["reward"])
    broken = [replace(r, valid=False) if r.modality == "image" else r for r in results]
    scored = expected_reward(broken).image  # invalid answers count against the validity share
    assert (scored["n_valid"], scored["validity_penalty"], scored["reward"]) == (0, 0.0, 0.0)


@pytest.mark.slow
@pytest.mark.data
def test_expected_reward_of_the_shipped_weights_on_validation_media(shared_data, wallets, capsys):
    from vidfake.detector import DETECTOR_FILE, shipped_weights_dir

    if not (shipped_weights_dir() / DETECTOR_FILE).is_file():
        pytest.skip(f"no shipped weights yet ({shipped_weights_dir() / DETECTOR_FILE} is missing)")
    allow = (wallets["validator"].hotkey.ss58_address,)
    config = MinerConfig(
        port=free_port(),
        ip="127.0.0.1",
        offline=True,
        allow_hotkeys=allow,
        guard=GuardConfig(rate_limit_per_minute=0),
        service=ServiceConfig(workers=1),
        summary_s=3600.0,
    )
    server = MinerServer(
        wallets["miner"],
        Guard(config.guard, Membership.offline(allow)),
        MinerService(detector_factory("default"), config.service),
        config,
    )
    challenges = labelled_challenges(shared_data, split="val", images=24, videos=10, seed=0)
    with server:
        results = LocalValidator(wallets["validator"], server.axon.info()).query_sync(challenges)
    reward = expected_reward(results)
    with capsys.disabled():
        print(
            f"\nexpected reward on {len(results)} val challenges: total {reward.total:.3f}; "
            f"image {reward.image['reward']:.3f} (binary MCC {reward.image['binary_mcc']:.3f}), "
            f"video {reward.video['reward']:.3f} (binary MCC {reward.video['binary_mcc']:.3f})"
        )
    assert all(r.valid for r in results), [r for r in results if not r.valid]
    assert 0.0 <= reward.total <= 1.0
    assert reward.image["n_answers"] == 24 and reward.video["n_answers"] == 10
