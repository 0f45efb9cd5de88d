"""vidfake.temporal_models.weights: safetensors out, every supported source in, checksums, reports."""

from __future__ import annotations

import hashlib
import time

import pytest
import torch
from safetensors import safe_open
from torch import nn

from vidfake.temporal_models import weights as weights_mod
from vidfake.temporal_models.weights import (
    ChecksumMismatchError,
    WeightsError,
    file_sha256,
    load_weights,
    read_state_dict,
    save_weights,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)


@pytest.fixture
def tiny() -> Tiny:
    torch.manual_seed(0)
    model = Tiny()
    model.bn.running_mean.uniform_(-1, 1)
    return model


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_returns_file_sha_and_metadata(tiny, tmp_path):
    path = tmp_path / "sub" / "tiny.safetensors"
    sha = save_weights(tiny, path, metadata={"epoch": 3, "note": "hello"})
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert meta["epoch"] == "3" and meta["note"] == "hello"
        assert set(f.keys()) == set(tiny.state_dict())
    assert [p.name for p in path.parent.iterdir()] == ["tiny.safetensors"], "no temporary file left behind"


def test_round_trip_is_exact(tiny, tmp_path):
    path = tmp_path / "tiny.safetensors"
    sha = save_weights(tiny, path)
    other = Tiny()
    report = load_weights(other, path, expected_sha256=sha)
    assert report.complete and report.sha256 == sha and report.loaded == len(tiny.state_dict())
    assert same_state(tiny, other)


def test_checksum_mismatch_is_refused_before_loading(tiny, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_weights(tiny, path)
    other = Tiny()
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ChecksumMismatchError, match="does not match the expected"):
        load_weights(other, path, expected_sha256="f" * 64)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    with pytest.raises(ValueError, match="applies to files"):
        load_weights(other, tiny.state_dict(), expected_sha256="f" * 64)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
@pytest.mark.parametrize("suffix", [".pth", ".pt", ".ckpt"])
def test_torch_files_unwrap_training_checkpoints(tiny, tmp_path, wrapper, suffix):
    path = tmp_path / f"tiny{suffix}"
    state = tiny.state_dict()
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 5, "optimizer": {}}, path)
    other = Tiny()
    report = load_weights(other, path)
    assert report.complete and report.source == str(path)
    assert same_state(tiny, other)


class NotATensor:
    pass


def test_pickles_with_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "object": NotATensor()}, path)
    with pytest.raises(WeightsError, match="cannot read weights"):
        read_state_dict(path)


def test_bad_sources_have_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        read_state_dict(tmp_path / "absent.safetensors")
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unsupported weights format '.npz'"):
        read_state_dict(odd)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 10)
    with pytest.raises(WeightsError, match="cannot read weights"):
        read_state_dict(broken)
    with pytest.raises(WeightsError, match="no tensors found"):
        read_state_dict({"epoch": 1})


def test_filter_fn_runs_before_matching(tiny):
    state = {"net." + k: v for k, v in tiny.state_dict().items()}
    other = Tiny()
    with pytest.raises(WeightsError, match="missing"):
        load_weights(other, state)
    report = load_weights(other, state, filter_fn=lambda s, m: {k[len("net.") :]: v for k, v in s.items()})
    assert report.complete and same_state(tiny, other)


def test_hub_id_is_parsed_and_fetched_lazily(tiny, tmp_path, monkeypatch):
    import huggingface_hub

    path = tmp_path / "w.safetensors"
    save_weights(tiny, path)
    calls = []

    def fake_download(repo_id, filename):
        calls.append((repo_id, filename))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    other = Tiny()
    report = load_weights(other, "hf-hub:org/repo/sub/w.safetensors")
    assert calls == [("org/repo", "sub/w.safetensors")] and report.complete and same_state(tiny, other)
    load_weights(Tiny(), "hf-hub:org/repo")
    assert calls[-1] == ("org/repo", "model.safetensors")
    with pytest.raises(WeightsError, match="expected hf-hub:org/repo"):
        load_weights(Tiny(), "hf-hub:justone")

    def failing(repo_id, filename):
        raise OSError("no connection")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing)
    with pytest.raises(
        WeightsError, match=r"could not get 'model.safetensors' from Hugging Face repo 'org/repo'"
    ):
        load_weights(Tiny(), "hf-hub:org/repo")


def test_hub_id_fails_fast_and_clearly_offline(monkeypatch):
    """huggingface_hub's real offline mode: no request is made, the error names the repo and the reason."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        load_weights(nn.Linear(2, 2), "hf-hub:vidfake-test/absent-repo/w.safetensors")
    assert time.perf_counter() - start < 5, "offline failure must not wait on the network"
    message = str(info.value)
    assert "'w.safetensors' from Hugging Face repo 'vidfake-test/absent-repo'" in message
    assert "HF_HUB_OFFLINE is set" in message


def test_state_dict_with_shared_or_strided_tensors_saves(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"t": base.t(), "row": base[1]}  # non-contiguous views
    path = tmp_path / "views.safetensors"
    save_weights(state, path)
    loaded, _, _ = read_state_dict(path)
    assert torch.equal(loaded["t"], base.t()) and torch.equal(loaded["row"], base[1])


def test_module_default_hub_file_constant():
    assert weights_mod.DEFAULT_HUB_FILE == "model.safetensors"
