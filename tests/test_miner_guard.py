"""Admission control (membership, permit and stake, rate limit) and the miner's command-line flags."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from vidfake.commands.miner import add_arguments, config_from_args, main
from vidfake.miner.guard import OFFLINE_STAKE, Guard, GuardConfig, Membership, RateLimiter
from vidfake.miner.server import MinerConfig, open_wallet, run
from vidfake.miner.service import CostModel

VALIDATOR, MINER, POOR, STRANGER = "5Validator", "5Miner", "5PoorValidator", "5Stranger"


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def membership() -> Membership:
    return Membership([VALIDATOR, MINER, POOR], [True, False, True], [5000.0, 10.0, 3.0], block=42)


def guard(clock=None, **config) -> Guard:
    return Guard(GuardConfig(**{"min_stake": 100.0, **config}), membership(), clock=clock or FakeClock())


# --------------------------------------------------------------------------- membership
def test_membership_from_metagraph_reads_numpy_and_torch_columns():
    class Metagraph:
        hotkeys = [VALIDATOR, MINER]
        validator_permit = torch.tensor([True, False])
        S = np.array([12.5, 0.25], dtype=np.float32)
        block = torch.tensor(1234)

    m = Membership.from_metagraph(Metagraph())
    assert len(m) == 2 and m.block == 1234 and VALIDATOR in m and STRANGER not in m
    c = m.caller(MINER)
    assert (c.uid, c.validator_permit, c.stake) == (1, False, 0.25)
    assert type(c.stake) is float


def test_membership_rejects_ragged_columns():
    with pytest.raises(ValueError, match="differ in length"):
        Membership([VALIDATOR, MINER], [True], [1.0, 2.0])


def test_offline_membership_trusts_each_allowed_hotkey_once():
    m = Membership.offline([VALIDATOR, VALIDATOR, POOR])
    assert m.hotkeys == (VALIDATOR, POOR)
    assert m.caller(POOR).validator_permit and m.caller(POOR).stake == OFFLINE_STAKE


# --------------------------------------------------------------------------- admission, in order
def test_strangers_are_refused_before_any_uid_lookup(monkeypatch):
    g = guard()
    looked_up = []
    monkeypatch.setattr(g.membership, "caller", lambda hk: looked_up.append(hk) or pytest.fail("uid lookup"))
    d = g.admit(STRANGER)
    assert (d.allowed, d.step) == (False, "registered") and STRANGER in d.reason
    assert looked_up == []
    assert g.admit(None).step == "registered" and g.admit("").step == "registered"


def test_registered_non_validator_is_refused_at_the_validator_step():
    d = guard().admit(MINER)
    assert (d.allowed, d.step) == (False, "validator") and "no validator permit" in d.reason


def test_validator_under_the_minimum_stake_is_refused():
    d = guard().admit(POOR)
    assert (d.allowed, d.step) == (False, "validator") and "under the minimum" in d.reason


def test_allow_non_validators_skips_the_permit_but_not_the_stake():
    assert guard(allow_non_validators=True, min_stake=0.0).admit(MINER).allowed
    assert not guard(allow_non_validators=True, min_stake=100.0).admit(MINER).allowed


def test_validator_with_stake_is_admitted_and_blacklist_pair_says_so():
    d = guard().admit(VALIDATOR)
    assert d.allowed and d.as_blacklist() == (False, d.reason)
    assert guard().admit(STRANGER).as_blacklist()[0] is True


def test_check_runs_registration_before_rate_limit_and_counts_rejections():
    g = guard(rate_limit_per_minute=1)
    assert g.check(VALIDATOR).allowed
    assert g.check(VALIDATOR).step == "rate_limit"
    assert g.check(STRANGER).step == "registered"
    assert g.rejections() == {"rate_limit": 1, "registered": 1}


# --------------------------------------------------------------------------- rate limit
def test_rate_limit_is_a_sliding_window_per_hotkey():
    clock = FakeClock()
    g = guard(clock, rate_limit_per_minute=3)
    allowed = []
    for _ in range(3):
        allowed.append(g.take_rate(VALIDATOR).allowed)
        clock.t += 10.0
    assert allowed == [True, True, True]
    refused = g.take_rate(VALIDATOR)  # t0 + 30 s: three in the last minute
    assert refused.step == "rate_limit" and "retry in 30 s" in refused.reason
    assert g.take_rate(POOR).allowed  # another hotkey has its own window
    clock.t += 29.9
    assert not g.take_rate(VALIDATOR).allowed
    clock.t += 0.1  # t0 + 60 s: the first request leaves the window, one slot opens
    assert g.take_rate(VALIDATOR).allowed
    assert not g.take_rate(VALIDATOR).allowed


def test_refused_requests_do_not_use_up_the_quota():
    clock = FakeClock()
    limiter = RateLimiter(2, 60.0, clock)
    assert limiter.take("k") and limiter.take("k")
    for _ in range(10):
        assert not limiter.take("k")
    clock.t += 60.0
    assert limiter.take("k") and limiter.take("k") and not limiter.take("k")


def test_admission_alone_never_spends_the_quota():
    # The axon calls the blacklist before checking signatures: a spoofer must not burn a validator's quota.
    g = guard(rate_limit_per_minute=1)
    for _ in range(5):
        assert g.admit(VALIDATOR).allowed
    assert g.take_rate(VALIDATOR).allowed


def test_zero_rate_limit_means_unlimited():
    g = guard(rate_limit_per_minute=0)
    assert all(g.take_rate(VALIDATOR).allowed for _ in range(1000))


# --------------------------------------------------------------------------- priority and re-sync
def test_priority_is_the_callers_stake():
    g = guard()
    assert g.priority(VALIDATOR) == 5000.0 and g.priority(STRANGER) == 0.0 and g.priority(None) == 0.0


def test_update_swaps_the_snapshot_and_forgets_departed_hotkeys():
    clock = FakeClock()
    g = guard(clock, rate_limit_per_minute=1)
    assert g.take_rate(VALIDATOR).allowed and not g.take_rate(VALIDATOR).allowed
    g.update(Membership([MINER], [True], [500.0], block=43))
    assert g.admit(VALIDATOR).step == "registered" and g.admit(MINER).allowed
    g.update(membership())  # back again: its old window was dropped with it
    assert g.take_rate(VALIDATOR).allowed


@pytest.mark.parametrize(
    "kwargs", [{"min_stake": -1.0}, {"min_stake": float("nan")}, {"rate_limit_per_minute": -1}]
)
def test_guard_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        GuardConfig(**kwargs)


# --------------------------------------------------------------------------- flags
ALLOWED = "5F4ewQnNzaf4pxnyNPnqSftdgxoN8MkUbLw8ViYTv31Wgugc"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_default_flags_give_the_default_config():
    cfg = config_from_args(parse())
    assert cfg == MinerConfig()
    assert (cfg.netuid, cfg.network, cfg.port, cfg.ip, cfg.offline) == (34, "finney", 8091, "0.0.0.0", False)
    assert cfg.service.deadline_s < 9.0


def test_bittensor_style_flags_reach_every_component():
    cfg = config_from_args(
        parse(
            "--subtensor.network",
            "test",
            "--wallet.name",
            "cold",
            "--wallet.hotkey",
            "hot",
            "--wallet.path",
            "/w",
            "--axon.port",
            "9000",
            "--blacklist.min_stake",
            "2500",
            "--blacklist.allow_non_validators",
            "--rate_limit.per_minute",
            "12",
            "--workers",
            "3",
            "--deadline_s",
            "6.5",
            "--weights",
            "tiny",
            "--max_video_frames",
            "2000",
            "--face_workers",
            "1",
        )
    )
    assert cfg.netuid == 168 and cfg.network == "test"  # BitMind's testnet uid by default
    assert (cfg.wallet_name, cfg.wallet_hotkey, cfg.wallet_path, cfg.port) == ("cold", "hot", "/w", 9000)
    assert cfg.guard == GuardConfig(min_stake=2500.0, allow_non_validators=True, rate_limit_per_minute=12)
    assert (cfg.service.workers, cfg.service.deadline_s, cfg.weights) == (3, 6.5, "tiny")
    assert cfg.service.max_video_frames == 2000 and cfg.service.max_wire_frames >= 2000
    assert cfg.face_workers == 1 and config_from_args(parse()).face_workers is None


def test_offline_flags_bind_loopback():
    cfg = config_from_args(parse("--offline", "--offline.allow_hotkeys", ALLOWED))
    assert cfg.offline and cfg.ip == "127.0.0.1" and cfg.allow_hotkeys == (ALLOWED,)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--offline"], "needs --offline.allow_hotkeys"),
        (["--offline.allow_hotkeys", ALLOWED], "only applies with --offline"),
        (["--offline", "--offline.allow_hotkeys", "not-a-key"], "not ss58"),
        (["--offline", "--offline.allow_hotkeys", ALLOWED, "--axon.ip", "0.0.0.0"], "loopback only"),
        (["--axon.ip", "somewhere"], "not an IP address"),
        (["--axon.port", "80"], "--axon.port"),
        (["--deadline_s", "9"], "validators stop waiting"),
        (["--threads", "0"], "--threads"),
        (["--face_workers", "0"], "--face_workers"),
        (["--netuid", "-1"], "--netuid"),
    ],
)
def test_bad_flags_are_refused_with_the_flag_named(argv, message):
    with pytest.raises(ValueError, match=message):
        config_from_args(parse(*argv))


def test_run_exits_2_on_bad_flags_and_1_without_a_wallet(tmp_path, caplog, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--deadline_s", "20"])
    assert exit_.value.code == 2 and "--deadline_s" in capsys.readouterr().err
    argv = ["--offline", "--offline.allow_hotkeys", ALLOWED, "--wallet.path", str(tmp_path)]
    config = config_from_args(parse(*argv))
    with pytest.raises(FileNotFoundError, match="create one with"):
        open_wallet(config)
    assert run(config) == 1
    assert "no hotkey" in caplog.text
    caplog.clear()
    assert main(argv) == 1  # the command line reaches the same refusal
    assert "no hotkey" in caplog.text


# --------------------------------------------------------------------------- cost estimates behind the degradation
def test_cost_model_uses_fresh_measurements_then_scales_startup_timings_by_load():
    costs = CostModel(alpha=0.5, stale_after=3)
    assert costs.estimate("video", "full") is None
    costs.seed("video", "full", 4.0)
    costs.seed("video", "lite", 1.0)
    assert costs.estimate("video", "full") == 4.0  # load factor 1 until something runs
    costs.update("video", "lite", 0.5)  # lite now runs at half its start-up time
    assert costs.estimate("video", "lite") == 0.5
    assert costs.estimate("video", "full") == pytest.approx(2.0)  # never re-run: scaled by the load
    costs.update("video", "full", 3.0)
    assert costs.estimate("video", "full") == 3.0  # its own measurement while fresh
    for _ in range(3):
        costs.update("video", "lite", 0.25)
    # full's measurement is now 3 runs old: back to start-up time x the (lower) load factor
    assert costs.estimate("video", "full") < 3.0
    # load factor: 0.5 (lite 0.5/1) -> 0.625 (full 3/4) -> 0.4375 -> 0.34375 -> 0.296875 (lite 0.25/1)
    assert costs.estimate("video", "full") == pytest.approx(4.0 * 0.296875)


def test_cost_model_lets_a_skipped_plan_come_back_when_the_load_leaves():
    costs = CostModel(alpha=0.3)
    costs.seed("video", "full", 6.0)  # timed while the machine was busy
    costs.seed("video", "lite", 2.0)
    for _ in range(30):
        costs.update("video", "lite", 0.4)  # the machine is quiet again
    assert costs.estimate("video", "full") < 1.5
    assert costs.snapshot_ms()["video/full"] == pytest.approx(costs.estimate("video", "full") * 1000, abs=0.1)
