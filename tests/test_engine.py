"""The generic training engine and its configuration, on tiny models and synthetic tensors (CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from vidfake.training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_train_config,
)
from vidfake.training.engine import fit, predict, warmup_cosine

REPO = Path(__file__).resolve().parents[1]


def separable(n: int, seed: int, shift: float = 1.0) -> TensorDataset:
    """Two Gaussian blobs in 8-D, labels 0/1 in random order."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) + (2.0 * y[:, None].float() - 1.0) * shift
    return TensorDataset(x, y)


class NoisyDataset(Dataset):
    """Adds fresh torch noise on every read, like a random augmentation, so data RNG matters."""

    def __init__(self, base: TensorDataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x + 0.3 * torch.randn(x.shape), y


def mlp(seed: int, batchnorm: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(8, 16)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2)]
    return nn.Sequential(*layers)


def cfg_for(out_dir: Path, **kw) -> TrainConfig:
    base = dict(name="tiny", model="mlp", out_dir=str(out_dir), epochs=3, batch_size=32, lr=1e-2,
                weight_decay=0.01, warmup_epochs=1.0, device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


# --------------------------------------------------------------------------- schedule


def test_warmup_cosine_golden_values():
    assert warmup_cosine(0, 4, 20) == 0.25
    assert warmup_cosine(3, 4, 20) == 1.0
    assert warmup_cosine(4, 4, 20) == 1.0
    assert warmup_cosine(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine(19, 4, 20) == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 16)))
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0)
    assert warmup_cosine(0, 0, 10) == 1.0


# --------------------------------------------------------------------------- training


def test_fit_learns_and_writes_checkpoints(tmp_path):
    train, val = separable(256, 1), separable(128, 2)
    model = mlp(0)
    res = fit(model, train, val, cfg_for(tmp_path))

    assert res.best_auc > 0.95
    assert res.epochs_run == 3 and len(res.history) == 3 and res.stopped_reason == "completed"
    assert 1 <= res.best_epoch <= 3 and res.history[res.best_epoch - 1].val_auc == res.best_auc
    assert [h.epoch for h in res.history] == [1, 2, 3]
    assert all(h.steps == 8 for h in res.history)  # 256 / 32, no ragged batch
    np.testing.assert_array_equal(res.val_labels, val.tensors[1].numpy())
    assert res.val_probs.shape == (128,) and res.val_probs.dtype == np.float64
    assert ((res.val_probs >= 0) & (res.val_probs <= 1)).all()

    # restore_best=True: the model in memory is best.safetensors and reproduces val_probs.
    probs, labels = predict(model, val, batch_size=50, device="cpu")
    np.testing.assert_allclose(probs, res.val_probs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels, res.val_labels)
    best = load_file(str(res.best_checkpoint))
    fresh = mlp(123)
    fresh.load_state_dict(best)  # strict: every key present, nothing extra
    assert_same_state(fresh.state_dict(), model.state_dict())
    with safe_open(str(res.best_checkpoint), "pt") as f:
        meta = f.metadata()
    assert meta["epoch"] == str(res.best_epoch) and meta["model"] == "mlp"

    last = torch.load(res.last_checkpoint, weights_only=True)
    assert last["epoch"] == 3 and last["global_step"] == 24 and last["config"]["name"] == "tiny"
    doc = json.loads(res.history_path.read_text())
    assert doc["stopped_reason"] == "completed" and doc["best_epoch"] == res.best_epoch
    assert [e["val_auc"] for e in doc["epochs"]] == [h.val_auc for h in res.history]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_learning_rate_follows_warmup_cosine(tmp_path):
    # 200 samples, batch 32 -> 6 full batches, capped to 4 steps per epoch; warm-up 1 epoch of 4.
    res = fit(mlp(0), separable(200, 1), separable(64, 2),
              cfg_for(tmp_path, epochs=3, max_steps_per_epoch=4, lr=0.02))
    assert [h.steps for h in res.history] == [4, 4, 4]
    assert [h.global_step for h in res.history] == [4, 8, 12]
    expected = [0.02 * warmup_cosine(s, 4, 12) for s in (3, 7, 11)]  # last step of each epoch
    assert [h.lr for h in res.history] == pytest.approx(expected)


def test_resume_is_bit_identical_to_uninterrupted_run(tmp_path):
    train, val = NoisyDataset(separable(96, 1)), separable(64, 2)
    cfg_a = cfg_for(tmp_path / "a", epochs=2)
    model_a = mlp(0)
    res_a = fit(model_a, train, val, cfg_a, restore_best=False)

    cfg_b = cfg_for(tmp_path / "b", epochs=2)
    first = fit(mlp(0), train, val, cfg_b, restore_best=False, on_epoch_end=lambda s: s.epoch == 1)
    assert first.stopped_reason == "callback" and first.epochs_run == 1
    torch.manual_seed(999)  # the resumed run must not depend on the caller's RNG state ...
    model_b = mlp(7)  # ... nor on the weights it is handed
    res_b = fit(model_b, train, val, cfg_b, resume=True, restore_best=False)

    assert res_b.epochs_run == 2 and res_b.stopped_reason == "completed"
    assert_same_state(model_a.state_dict(), model_b.state_dict())
    assert [h.train_loss for h in res_b.history] == [h.train_loss for h in res_a.history]
    assert [h.val_auc for h in res_b.history] == [h.val_auc for h in res_a.history]
    np.testing.assert_array_equal(res_a.val_probs, res_b.val_probs)


def test_seeded_runs_with_workers_repeat_and_seed_matters(tmp_path):
    train, val = NoisyDataset(separable(64, 1)), separable(32, 2)

    def run(sub: str, seed: int) -> dict[str, torch.Tensor]:
        model = mlp(0)
        fit(model, train, val, cfg_for(tmp_path / sub, epochs=2, num_workers=2, seed=seed),
            restore_best=False)
        return model.state_dict()

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert_same_state(a, b)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping_and_resuming_a_stopped_run(tmp_path):
    # lr so small that AdamW cannot move float32 weights: the validation AUC never improves again.
    cfg = cfg_for(tmp_path, epochs=10, lr=1e-12, weight_decay=0.0, early_stop_patience=2)
    res = fit(mlp(0, batchnorm=False), separable(64, 1), separable(64, 2), cfg)
    assert res.stopped_reason == "early_stop"
    assert res.epochs_run == 3 and res.best_epoch == 1
    assert [h.improved for h in res.history] == [True, False, False]
    assert json.loads(res.history_path.read_text())["stopped_reason"] == "early_stop"

    again = fit(mlp(0, batchnorm=False), separable(64, 1), separable(64, 2), cfg, resume=True)
    assert again.stopped_reason == "early_stop" and again.epochs_run == 3


def test_budget_stops_after_the_current_step_and_keeps_the_best(tmp_path):
    res = fit(mlp(0), separable(256, 1), separable(64, 2), cfg_for(tmp_path, epochs=5, budget_minutes=1e-9))
    assert res.stopped_reason == "budget"
    assert res.epochs_run == 1 and res.history[0].steps == 1
    assert res.best_checkpoint.is_file() and res.last_checkpoint.is_file()
    assert json.loads(res.history_path.read_text())["stopped_reason"] == "budget"


def test_class_weights_shift_predictions(tmp_path):
    # Labels carry no signal: only the loss weights decide which way the model leans.
    g = torch.Generator().manual_seed(5)
    noise = TensorDataset(torch.randn(128, 8, generator=g), torch.arange(128) % 2)

    def mean_p(weights, sub):
        res = fit(mlp(0), noise, noise, cfg_for(tmp_path / sub, epochs=3), class_weights=weights)
        return float(res.val_probs.mean())

    assert mean_p((5.0, 1.0), "real") < 0.35
    assert mean_p((1.0, 5.0), "fake") > 0.65


class ThreeLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(x)


class NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(x) * float("nan")


def test_bad_inputs_raise_clear_errors(tmp_path):
    cfg = cfg_for(tmp_path, epochs=1)
    val = separable(32, 2)
    x = torch.randn(32, 8)
    with pytest.raises(ValueError, match=r"0 \(real\) or 1 \(fake\)"):
        fit(mlp(0), TensorDataset(x, torch.full((32,), 2)), val, cfg)
    with pytest.raises(ValueError, match="integers"):
        fit(mlp(0), TensorDataset(x, torch.zeros(32)), val, cfg)
    with pytest.raises(ValueError, match=r"\(3,|\(32, 3\)"):
        fit(ThreeLogits(), separable(32, 1), val, cfg)
    with pytest.raises(ValueError, match="only label"):
        fit(mlp(0), separable(32, 1), TensorDataset(x, torch.zeros(32, dtype=torch.long)), cfg)
    with pytest.raises(ValueError, match="class_weights"):
        fit(mlp(0), separable(32, 1), val, cfg, class_weights=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="empty"):
        fit(mlp(0), TensorDataset(torch.empty(0, 8), torch.empty(0, dtype=torch.long)), val, cfg)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(NaNModel(), separable(64, 1), val, cfg)
    with pytest.raises(FileNotFoundError, match="last.pt"):
        fit(mlp(0), separable(32, 1), val, cfg_for(tmp_path / "none"), resume=True)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            fit(mlp(0), separable(32, 1), val, cfg_for(tmp_path, device="cuda"))


def test_predict_keeps_order_and_training_mode():
    model = mlp(0).train()
    ds = separable(40, 3)
    probs, labels = predict(model, ds, batch_size=16)
    assert model.training
    model.eval()
    with torch.no_grad():
        ref = torch.softmax(model(ds.tensors[0]).double(), 1)[:, 1].numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-6)
    np.testing.assert_array_equal(labels, ds.tensors[1].numpy())


# --------------------------------------------------------------------------- configuration


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_train_config_coerces_yaml(tmp_path):
    p = write(tmp_path / "run.yaml", "name: 2024\nmodel: m\nout_dir: runs/x\nlr: 1e-4\nepochs: 4\n"
                                     "grad_clip: null\nmodel_kwargs: {depth: 2}\ndata: {root: d}\n")
    cfg = load_train_config(p)
    assert cfg.name == "2024" and cfg.lr == 1e-4 and isinstance(cfg.lr, float)
    assert cfg.epochs == 4 and cfg.grad_clip is None
    assert cfg.model_kwargs == {"depth": 2} and cfg.data == {"root": "d"}
    assert config_from_dict(cfg.to_dict()) == cfg


def test_unknown_missing_and_bad_keys_name_key_and_file(tmp_path):
    p = write(tmp_path / "typo.yaml", "name: a\nmodel: m\nout_dir: o\nepoch: 3\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml.*'epoch'.*did you mean 'epochs'"):
        load_train_config(p)
    p = write(tmp_path / "missing.yaml", "name: a\nout_dir: o\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml.*model"):
        load_train_config(p)
    p = write(tmp_path / "type.yaml", "name: a\nmodel: m\nout_dir: o\nepochs: three\n")
    with pytest.raises(ConfigError, match=r"type\.yaml.*epochs.*integer"):
        load_train_config(p)
    p = write(tmp_path / "range.yaml", "name: a\nmodel: m\nout_dir: o\nlabel_smoothing: 1.0\n")
    with pytest.raises(ConfigError, match=r"range\.yaml.*label_smoothing"):
        load_train_config(p)
    p = write(tmp_path / "device.yaml", "name: a\nmodel: m\nout_dir: o\ndevice: tpu\n")
    with pytest.raises(ConfigError, match=r"device.*'cuda'"):
        load_train_config(p)
    with pytest.raises(ConfigError, match="empty"):
        load_train_config(write(tmp_path / "empty.yaml", ""))
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config(write(tmp_path / "list.yaml", "- a\n- b\n"))
    with pytest.raises(FileNotFoundError):
        load_train_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(name="a", model="m", out_dir="o", epochs="3")  # no coercion on direct construction


def test_overrides_coerce_by_field_type():
    cfg = TrainConfig(name="a", model="m", out_dir="o", data={"root": "d", "aug": {"p": 0.5}})
    new = apply_overrides(cfg, ["epochs=3", "lr=1e-3", "amp=true", "grad_clip=null", "budget_minutes=2",
                                "data.fps=25", "data.aug.level=2", "model_kwargs={drop_rate: 0.1}",
                                "name=run two", "early_stop_patience=4"])
    assert new.epochs == 3 and type(new.epochs) is int
    assert new.lr == 1e-3 and new.amp is True and new.grad_clip is None
    assert new.budget_minutes == 2.0 and type(new.budget_minutes) is float
    assert new.data == {"root": "d", "aug": {"p": 0.5, "level": 2}, "fps": 25}
    assert new.model_kwargs == {"drop_rate": 0.1} and new.name == "run two" and new.early_stop_patience == 4
    assert cfg.epochs == 10 and cfg.data == {"root": "d", "aug": {"p": 0.5}}  # the original is untouched
    assert apply_overrides(cfg, []) is cfg


@pytest.mark.parametrize("bad, match", [
    ("epochs=3.5", "epochs.*integer"),
    ("amp=maybe", "amp.*true or false"),
    ("nokey=1", "unknown key 'nokey'"),
    ("epochs", "key=value"),
    ("lr.x=1", "not a mapping"),
    ("epochs=0", "epochs must be >= 1"),
    ("data=[1, 2]", "data.*mapping"),
])
def test_bad_overrides_are_errors(bad, match):
    cfg = TrainConfig(name="a", model="m", out_dir="o")
    with pytest.raises(ConfigError, match=match):
        apply_overrides(cfg, [bad])


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("train_*.yaml")), ids=lambda p: p.name)
def test_repository_training_configs_load(path):
    cfg = load_train_config(path)
    assert cfg.model and cfg.out_dir and cfg.data
