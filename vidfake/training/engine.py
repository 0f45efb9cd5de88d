"""The generic training loop every vidfake branch uses (TALL-Swin, lip-motion, 2D detector).

The engine knows nothing about media: a recipe (``vidfake.training.recipes``) builds the model and
two map-style datasets and calls :func:`fit`. Contract:

- a dataset item collates into a batch ``(x, y, *rest)``: ``x`` a tensor (or a tuple/list/dict of
  tensors) the model takes as ``model(x)``; ``y`` ``(B,)`` integer labels, 0 real / 1 fake; anything
  after ``y`` is ignored (recipes may carry sample ids there);
- ``model(x)`` returns logits ``(B, 2)`` for ``[real, fake]``; ``p_fake = softmax(logits)[:, 1]``.

What :func:`fit` does: seeded, reproducible data order and initialisation (deterministic algorithms on
CPU); AdamW without decay on biases and norms; per-step linear warm-up then cosine decay to 0;
cross-entropy with label smoothing and optional class weights; gradient clipping; mixed precision on
CUDA; validation every epoch (ROC AUC, accuracy, loss); ``out_dir/last.pt`` every epoch (enough to
resume exactly), ``out_dir/best.safetensors`` whenever validation AUC improves, ``out_dir/history.json``;
early stopping on validation AUC; a wall-clock budget. Launched by ``torchrun`` (``RANK``/``WORLD_SIZE``
set) it trains with DistributedDataParallel: gloo on CPU, nccl on CUDA, a DistributedSampler per
epoch, validation sharded over the ranks and gathered, and only rank 0 writing files.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, Subset
from torch.utils.data.distributed import DistributedSampler

from vidfake.training.config import ConfigError, TrainConfig

logger = logging.getLogger(__name__)

__all__ = [
    "BEST_NAME",
    "HISTORY_NAME",
    "LAST_NAME",
    "EpochStats",
    "FitResult",
    "fit",
    "predict",
    "warmup_cosine",
]

LAST_NAME = "last.pt"
BEST_NAME = "best.safetensors"
HISTORY_NAME = "history.json"
_CHECKPOINT_FORMAT = 1
_POSTFIX_EVERY = 20  # steps between progress-bar updates (each one syncs the GPU)


@dataclass(frozen=True)
class EpochStats:
    """One epoch of training and validation; the same on every rank.

    Attributes:
        epoch: 1-based epoch number.
        steps: optimiser steps taken in this epoch; ``global_step`` counts them over the run.
        train_loss: mean training loss (with label smoothing and class weights) over all ranks.
        val_loss: plain cross-entropy on the validation set (no smoothing, no weights).
        val_auc: ROC AUC of ``p_fake`` against the validation labels.
        val_acc: accuracy at ``p_fake >= 0.5``.
        lr: learning rate of the last step of the epoch.
        samples_per_s: training throughput over all ranks (data loading included).
        train_seconds, val_seconds: wall time of the two phases.
        improved: validation AUC beat the best so far (``best.safetensors`` was written).
    """

    epoch: int
    steps: int
    global_step: int
    train_loss: float
    val_loss: float
    val_auc: float
    val_acc: float
    lr: float
    samples_per_s: float
    train_seconds: float
    val_seconds: float
    improved: bool


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns (identical on every rank).

    Attributes:
        best_auc: best validation AUC of the run (resumed epochs included).
        best_epoch: 1-based epoch that reached it.
        epochs_run: epochs completed over the whole run, including those before a resume.
        history: per-epoch statistics, oldest first.
        val_probs: ``(N,) float64`` validation ``p_fake`` of the best epoch, in dataset order (what a
            recipe fits the fusion on).
        val_labels: ``(N,) int64`` validation labels in the same order.
        last_checkpoint: ``out_dir/last.pt``.
        best_checkpoint: ``out_dir/best.safetensors``.
        history_path: ``out_dir/history.json``.
        stopped_reason: ``"completed"`` (all epochs), ``"early_stop"`` (patience exhausted),
            ``"budget"`` (budget_minutes spent) or ``"callback"`` (``on_epoch_end`` asked to stop).
    """

    best_auc: float
    best_epoch: int
    epochs_run: int
    history: tuple[EpochStats, ...]
    val_probs: np.ndarray
    val_labels: np.ndarray
    last_checkpoint: Path
    best_checkpoint: Path
    history_path: Path
    stopped_reason: str


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor for optimiser step ``step`` (0-based): linear warm-up, then cosine to 0.

    The first step already uses ``1 / warmup_steps`` of the peak (never a wasted step at lr 0); the
    peak is reached at step ``warmup_steps - 1``, and the factor decays as
    ``0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps)))``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------------------------------------------
# Process group, device, seeding


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any rank (stop decisions must agree)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()


def _resolve_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise ConfigError("TrainConfig", "device: 'cuda' requested but torch.cuda.is_available() is False")
    if cfg.device == "cpu" or not cuda:
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def _setup_distributed(cfg: TrainConfig) -> tuple[_Dist, torch.device]:
    """Join the process group ``torchrun`` describes in the environment, if any."""
    if dist.is_available() and dist.is_initialized():
        # The caller owns a group already: use it, leave it alive.
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = _resolve_device(cfg, local)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return _Dist(rank, world, local, owns_group=False), device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), _resolve_device(cfg, 0)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = _resolve_device(cfg, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend, device_id=device)
    else:
        dist.init_process_group(backend)
    logger.info("rank %d/%d joined the %s process group on %s", rank, world, backend, device)
    return _Dist(rank, world, local, owns_group=True), device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker with base_seed + worker_id (base_seed from the loader's generator);
    # numpy and random must follow it, or every worker repeats the same augmentations.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _epoch_seed(seed: int, rank: int, epoch: int) -> int:
    # The data order of an epoch depends only on (seed, rank, epoch), so a resumed run replays it.
    return (seed * 1_000_003 + rank * 10_007 + epoch) % 2**63


def _rng_state(device: torch.device) -> dict[str, Any]:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        # Stored as tensors and plain numbers so that torch.load(weights_only=True) reads them.
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ---------------------------------------------------------------------------------------------------
# Batches and inference


def _to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, Mapping):
        return {k: _to_device(v, device) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_to_device(v, device) for v in x)
    return x


def _split_batch(batch: Any) -> tuple[Any, torch.Tensor]:
    """``(x, y, *rest)`` -> ``(x, y)`` with ``y`` checked on the CPU: ``(B,) int64`` in {0, 1}."""
    if not isinstance(batch, list | tuple) or len(batch) < 2:
        raise TypeError(
            f"a batch must be a sequence (inputs, labels, ...), got {type(batch).__name__}; "
            "make the dataset return (x, y) pairs or pass a collate_fn"
        )
    x, y = batch[0], batch[1]
    y = torch.as_tensor(y)
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise ValueError(f"labels must be integers 0 (real) / 1 (fake), got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) > 1):
        raise ValueError(f"labels must be 0 (real) or 1 (fake), got values {sorted(set(y.tolist()))}")
    return x, y.long()


def _check_logits(logits: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
    if logits.ndim != 2 or logits.shape[1] != 2 or logits.shape[0] != y.shape[0]:
        raise ValueError(
            f"{type(model).__name__} returned logits of shape {tuple(logits.shape)}; the engine needs "
            f"(B, 2) [real, fake] logits for a batch of B={y.shape[0]}"
        )


def _amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp:
        return None
    if device.type != "cuda":
        logger.warning("amp: mixed precision is for CUDA only; training in float32 on %s", device)
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if amp_dtype is None else torch.autocast(device.type, dtype=amp_dtype)


@torch.inference_mode()
def _infer(
    model: nn.Module, loader: DataLoader, device: torch.device, amp_dtype: torch.dtype | None, desc: str,
    show: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, 2) float32`` and labels ``(N,) int64``, both on the CPU, in loader order."""
    from tqdm.auto import tqdm

    logits_all, labels_all = [], []
    for batch in tqdm(loader, desc=desc, disable=not show, leave=False, dynamic_ncols=True):
        x, y = _split_batch(batch)
        with _autocast(device, amp_dtype):
            logits = model(_to_device(x, device))
        _check_logits(logits, y, model)
        logits_all.append(logits.float().cpu())
        labels_all.append(y)
    if not logits_all:
        return torch.empty(0, 2), torch.empty(0, dtype=torch.long)
    return torch.cat(logits_all), torch.cat(labels_all)


def _p_fake(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=1)[:, 1].numpy()


def _check_dataset(dataset: Any, what: str) -> None:
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"{what} must be a map-style torch Dataset (with __len__), got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"{what} is empty")


def predict(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    device: str | torch.device = "cpu",
    *,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
    amp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Score every item of ``dataset`` with ``model``.

    The model is moved to ``device`` and run in eval mode (its previous train/eval mode is restored).

    Args:
        model: returns ``(B, 2)`` logits ``[real, fake]``.
        dataset: map-style; items collate into ``(x, y, *rest)`` as described in the module docstring.
        batch_size: samples per forward pass.
        device: torch device.
        collate_fn: DataLoader collate function (default: torch's).
        num_workers: DataLoader workers.
        amp: autocast on CUDA (bfloat16 where supported).

    Returns:
        ``(probs, labels)``: ``(N,) float64`` p_fake in [0, 1] and ``(N,) int64`` labels, in dataset order.
    """
    _check_dataset(dataset, "dataset")
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_fn, pin_memory=device.type == "cuda")
    was_training = model.training
    model.to(device).eval()
    try:
        logits, labels = _infer(model, loader, device, _amp_dtype(device, amp), "predict", _show_progress())
    finally:
        model.train(was_training)
    return _p_fake(logits), labels.numpy()


def _show_progress() -> bool:
    return sys.stderr.isatty()


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file and rename it, so a killed job never leaves a torn checkpoint."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_best(path: Path, model: nn.Module, cfg: TrainConfig, epoch: int, auc: float) -> None:
    from safetensors.torch import save

    # clone(): safetensors refuses tensors that share storage (tied weights, views). Serialised to
    # bytes and written by Python (same format as save_file, which creates files mode 0600).
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    meta = {"name": cfg.name, "model": cfg.model, "epoch": str(epoch), "val_auc": f"{auc:.6f}"}
    blob = save(tensors, metadata=meta)
    _atomic_write(path, lambda tmp: tmp.write_bytes(blob))


def _write_history(path: Path, cfg: TrainConfig, state: _State, stopped_reason: str | None) -> None:
    doc = {
        "config": cfg.to_dict(),
        "best_auc": state.best_auc if state.history else None,
        "best_epoch": state.best_epoch,
        "epochs_run": len(state.history),
        "stopped_reason": stopped_reason,
        "epochs": [asdict(h) for h in state.history],
    }
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8"))


@dataclass
class _State:
    """What survives an epoch: the run's progress, saved in ``last.pt``."""

    epoch: int = 0  # completed epochs
    global_step: int = 0
    best_auc: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement
    history: list[EpochStats] = field(default_factory=list)
    best_probs: np.ndarray = field(default_factory=lambda: np.empty(0))
    best_labels: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def _load_last(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
    cfg: TrainConfig, d: _Dist, device: torch.device,
) -> _State:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from (run without resume=True first)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a vidfake training checkpoint (format {ckpt.get('format')!r})")
    now = cfg.to_dict()
    changed = sorted(k for k, v in ckpt["config"].items() if now.get(k) != v)
    if changed:
        logger.warning("resuming %s with changed config keys: %s", path, ", ".join(changed))
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt["rng"]
    if len(rng) == d.world_size:
        _set_rng_state(rng[d.rank], device)
    else:
        logger.warning("%s was written by %d process(es), this run has %d: RNG streams are reseeded, "
                       "so the resumed run is not bit-identical", path, len(rng), d.world_size)
        _seed_everything(_epoch_seed(cfg.seed, d.rank, ckpt["epoch"]))
    state = _State(
        epoch=ckpt["epoch"], global_step=ckpt["global_step"], best_auc=ckpt["best_auc"],
        best_epoch=ckpt["best_epoch"], bad_epochs=ckpt["bad_epochs"],
        history=[EpochStats(**h) for h in ckpt["history"]],
        best_probs=ckpt["best_probs"].numpy(), best_labels=ckpt["best_labels"].numpy(),
    )
    logger.info("resumed %s from %s: %d epoch(s) done, best AUC %.4f at epoch %d",
                cfg.name, path, state.epoch, state.best_auc, state.best_epoch)
    return state


def _save_last(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
    cfg: TrainConfig, state: _State, rng: list[dict[str, Any]],
) -> None:
    ckpt = {
        "format": _CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": state.epoch,
        "global_step": state.global_step,
        "best_auc": state.best_auc,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "history": [asdict(h) for h in state.history],
        "best_probs": torch.from_numpy(state.best_probs),
        "best_labels": torch.from_numpy(state.best_labels),
        "rng": rng,  # one entry per rank
        "config": cfg.to_dict(),
    }
    _atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


# ---------------------------------------------------------------------------------------------------
# The loop


def _make_train_loader(
    dataset: Dataset, cfg: TrainConfig, d: _Dist, device: torch.device, collate_fn: Callable | None,
    generator: torch.Generator,
) -> DataLoader:
    if d.enabled:
        sampler: Any = DistributedSampler(dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True,
                                          seed=cfg.seed)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    # Drop a ragged last batch (a batch of 1 breaks BatchNorm), unless it is the only batch.
    return DataLoader(
        dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
        collate_fn=collate_fn, pin_memory=device.type == "cuda", drop_last=len(sampler) > cfg.batch_size,
        worker_init_fn=_seed_worker, generator=generator,
    )


def _evaluate(
    model: nn.Module, dataset: Dataset, cfg: TrainConfig, d: _Dist, device: torch.device,
    collate_fn: Callable | None, amp_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation logits and labels for the whole set, in dataset order, on every rank.

    Under DDP each rank scores every ``world_size``-th item (no padding, unlike DistributedSampler,
    which would count some items twice) and the shards are gathered.
    """
    if d.enabled:
        # DDP broadcasts buffers only at forward time; make BatchNorm statistics agree before scoring.
        for b in model.buffers():
            dist.broadcast(b, src=0)
    indices = list(range(d.rank, len(dataset), d.world_size))
    shard = Subset(dataset, indices) if d.enabled else dataset
    loader = DataLoader(shard, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
                        collate_fn=collate_fn, pin_memory=device.type == "cuda")
    model.eval()
    logits, labels = _infer(model, loader, device, amp_dtype, "validate", d.is_main and _show_progress())
    if not d.enabled:
        return logits, labels
    parts: list[Any] = [None] * d.world_size
    dist.all_gather_object(parts, (indices, logits, labels))
    out_logits = torch.empty(len(dataset), 2)
    out_labels = torch.empty(len(dataset), dtype=torch.long)
    for idx, lg, lb in parts:
        out_logits[idx] = lg
        out_labels[idx] = lb
    return out_logits, out_labels


def fit(
    model: nn.Module,
    train_dataset: Dataset,
    val_dataset: Dataset,
    cfg: TrainConfig,
    *,
    collate_fn: Callable | None = None,
    on_epoch_end: Callable[[EpochStats], bool | None] | None = None,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    resume: bool = False,
    restore_best: bool = True,
) -> FitResult:
    """Train ``model`` on ``train_dataset``, validating on ``val_dataset`` after every epoch.

    Args:
        model: any ``nn.Module`` returning ``(B, 2)`` logits ``[real, fake]``; moved to the run's
            device (``cuda:LOCAL_RANK`` under torchrun) and left there.
        train_dataset: map-style dataset whose items collate into ``(x, y, *rest)``.
        val_dataset: same contract; must hold both labels (ROC AUC needs them).
        cfg: the run's configuration.
        collate_fn: DataLoader collate function for both datasets (default: torch's).
        on_epoch_end: called on every rank with each epoch's :class:`EpochStats`, before ``last.pt``
            is written; returning True stops the run (``stopped_reason="callback"``), resumable later.
        class_weights: cross-entropy weights ``(w_real, w_fake)`` for the training loss.
        resume: continue from ``out_dir/last.pt`` (model, optimiser, schedule, RNG streams, history,
            best metric); on the CPU with the same world size the result is bit-identical to an
            uninterrupted run (CUDA kernels are seeded but not forced deterministic). An epoch cut
            short by the budget counts as done: a resumed run starts the next one. The budget
            restarts with each call. Without ``resume`` an existing run in ``out_dir`` is overwritten.
        restore_best: load ``best.safetensors`` into ``model`` at the end (on every rank), so that the
            model matches ``FitResult.val_probs``; False leaves the last epoch's weights.

    Returns:
        A :class:`FitResult`.

    Raises:
        ConfigError: ``device: cuda`` without CUDA.
        ValueError: empty datasets, bad labels, logits not ``(B, 2)``, a single-class validation set,
            bad class weights.
        FileNotFoundError: ``resume=True`` without ``out_dir/last.pt``.
        FloatingPointError: the training loss became NaN or infinite.
    """
    _check_dataset(train_dataset, "train_dataset")
    _check_dataset(val_dataset, "val_dataset")
    d, device = _setup_distributed(cfg)
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        return _fit(model, train_dataset, val_dataset, cfg, d, device, collate_fn, on_epoch_end,
                    class_weights, resume, restore_best)
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        if d.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _criterion(class_weights: Sequence[float] | torch.Tensor | None, cfg: TrainConfig,
               device: torch.device) -> nn.Module:
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
        if weight.numel() != 2 or not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()) \
                or float(weight.sum()) <= 0:
            raise ValueError(f"class_weights must be two finite non-negative numbers (real, fake), "
                             f"not both 0; got {weight.tolist()}")
        weight = weight.to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


@dataclass
class _Loop:
    """The pieces one training run threads through its epochs."""

    cfg: TrainConfig
    d: _Dist
    device: torch.device
    model: nn.Module  # the bare module: checkpoints, validation
    train_model: nn.Module  # the module the optimiser steps through (DDP-wrapped under torchrun)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    criterion: nn.Module
    amp_dtype: torch.dtype | None
    loader: DataLoader
    steps_per_epoch: int
    t_start: float

    def over_budget(self) -> bool:
        """True on every rank once any rank has spent ``budget_minutes`` (checked after each step)."""
        if self.cfg.budget_minutes is None:
            return False
        return self.d.any(time.monotonic() - self.t_start > self.cfg.budget_minutes * 60.0, self.device)


@dataclass(frozen=True)
class _EpochTrain:
    steps: int
    train_loss: float
    samples: float
    seconds: float
    lr: float
    out_of_budget: bool


def _train_epoch(run: _Loop, state: _State, epoch: int) -> _EpochTrain:
    from tqdm.auto import tqdm

    cfg, device = run.cfg, run.device
    params = [p for p in run.model.parameters() if p.requires_grad]
    run.train_model.train()
    t0 = time.monotonic()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_seen, steps, out_of_budget, lr_used = 0, 0, False, run.scheduler.get_last_lr()[0]
    bar = tqdm(itertools.islice(run.loader, run.steps_per_epoch), total=run.steps_per_epoch,
               disable=not (run.d.is_main and _show_progress()), desc=f"epoch {epoch}/{cfg.epochs}",
               leave=False, dynamic_ncols=True)
    for batch in bar:
        x, y = _split_batch(batch)
        x, y = _to_device(x, device), y.to(device, non_blocking=True)
        with _autocast(device, run.amp_dtype):
            logits = run.train_model(x)
        _check_logits(logits, y, run.model)
        loss = run.criterion(logits.float(), y)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if cfg.grad_clip:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        lr_used = run.scheduler.get_last_lr()[0]
        run.scheduler.step()
        steps += 1
        state.global_step += 1
        loss_sum += loss.detach().double() * y.shape[0]
        n_seen += y.shape[0]
        if steps % _POSTFIX_EVERY == 0 or steps == run.steps_per_epoch:  # float() syncs the GPU
            mean = float(loss_sum) / n_seen
            if not math.isfinite(mean):
                raise FloatingPointError(f"{cfg.name}: training loss is {mean} at epoch {epoch}, step {steps} "
                                         f"(lr {lr_used:.3g}); lower lr or enable grad_clip")
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr_used:.2e}")
        if run.over_budget():
            out_of_budget = True
            break
    bar.close()
    loss_total, seen_total = run.d.sum([float(loss_sum), float(n_seen)], device)
    train_loss = loss_total / max(seen_total, 1.0)
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"{cfg.name}: training loss is {train_loss} at epoch {epoch}")
    return _EpochTrain(steps, train_loss, seen_total, time.monotonic() - t0, float(lr_used), out_of_budget)


def _validate_epoch(
    run: _Loop, val_dataset: Dataset, collate_fn: Callable | None, state: _State, epoch: int,
    trained: _EpochTrain,
) -> tuple[EpochStats, np.ndarray, np.ndarray]:
    t1 = time.monotonic()
    val_logits, val_labels = _evaluate(run.model, val_dataset, run.cfg, run.d, run.device, collate_fn,
                                       run.amp_dtype)
    classes = set(val_labels.tolist())
    if classes != {0, 1}:
        raise ValueError(f"val_dataset holds only label(s) {sorted(classes)}: ROC AUC needs real (0) "
                         "and fake (1) samples")
    probs, labels = _p_fake(val_logits), val_labels.numpy()
    auc = float(roc_auc_score(labels, probs))
    stats = EpochStats(
        epoch=epoch, steps=trained.steps, global_step=state.global_step, train_loss=trained.train_loss,
        val_loss=float(F.cross_entropy(val_logits, val_labels)), val_auc=auc,
        val_acc=float(np.mean((probs >= 0.5) == (labels == 1))), lr=trained.lr,
        samples_per_s=trained.samples / max(trained.seconds, 1e-9), train_seconds=trained.seconds,
        val_seconds=time.monotonic() - t1, improved=auc > state.best_auc,
    )
    return stats, probs, labels


def _stop_reason(run: _Loop, state: _State, stop_by_callback: bool, trained: _EpochTrain) -> str | None:
    """Why the run stops after this epoch, or None to go on; the same answer on every rank."""
    cfg = run.cfg
    if state.epoch >= cfg.epochs and trained.steps == run.steps_per_epoch:
        return "completed"
    if run.d.any(stop_by_callback, run.device):
        return "callback"
    if cfg.early_stop_patience is not None and state.bad_epochs >= cfg.early_stop_patience:
        return "early_stop"
    if trained.out_of_budget or run.over_budget():
        return "budget"
    return "completed" if state.epoch >= cfg.epochs else None


def _fit(
    model: nn.Module, train_dataset: Dataset, val_dataset: Dataset, cfg: TrainConfig, d: _Dist,
    device: torch.device, collate_fn: Callable | None, on_epoch_end: Callable | None,
    class_weights: Any, resume: bool, restore_best: bool,
) -> FitResult:
    from timm.optim import create_optimizer_v2

    out_dir = Path(cfg.out_dir)
    last_path, best_path, history_path = out_dir / LAST_NAME, out_dir / BEST_NAME, out_dir / HISTORY_NAME
    if d.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume and last_path.exists():
            logger.warning("%s holds a previous run; starting afresh and overwriting it", out_dir)
    _seed_everything(cfg.seed + d.rank)
    model.to(device)
    amp_dtype = _amp_dtype(device, cfg.amp)

    generator = torch.Generator()
    loader = _make_train_loader(train_dataset, cfg, d, device, collate_fn, generator)
    steps_per_epoch = min(len(loader), cfg.max_steps_per_epoch or len(loader))
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    optimizer = create_optimizer_v2(model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    state = _load_last(last_path, model, optimizer, scheduler, scaler, cfg, d, device) if resume else _State()
    train_model: nn.Module = model
    if d.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    run = _Loop(cfg, d, device, model, train_model, optimizer, scheduler, scaler,
                _criterion(class_weights, cfg, device), amp_dtype, loader, steps_per_epoch, time.monotonic())
    if d.is_main:
        logger.info(
            "%s: %d train / %d val samples, %d step(s) per epoch x %d epoch(s), batch %d x %d process(es), "
            "device %s%s", cfg.name, len(train_dataset), len(val_dataset), steps_per_epoch, cfg.epochs,
            cfg.batch_size, d.world_size, device, f", amp {amp_dtype}" if amp_dtype else "",
        )

    stopped_reason = None
    if cfg.early_stop_patience is not None and state.bad_epochs >= cfg.early_stop_patience:
        stopped_reason = "early_stop"  # a resumed run that had already stopped early
    elif state.epoch >= cfg.epochs:
        stopped_reason = "completed"
    while stopped_reason is None:
        epoch = state.epoch + 1
        generator.manual_seed(_epoch_seed(cfg.seed, d.rank, epoch))
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        trained = _train_epoch(run, state, epoch)
        stats, probs, labels = _validate_epoch(run, val_dataset, collate_fn, state, epoch, trained)

        state.epoch = epoch
        state.history.append(stats)
        if stats.improved:
            state.best_auc, state.best_epoch, state.bad_epochs = stats.val_auc, epoch, 0
            state.best_probs, state.best_labels = probs, labels
            if d.is_main:
                _save_best(best_path, model, cfg, epoch, stats.val_auc)
        else:
            state.bad_epochs += 1
        if d.is_main:
            logger.info(
                "%s epoch %d/%d: train loss %.4f | val loss %.4f AUC %.4f acc %.4f%s | lr %.2e | %.1f samples/s",
                cfg.name, epoch, cfg.epochs, stats.train_loss, stats.val_loss, stats.val_auc, stats.val_acc,
                " (best)" if stats.improved else "", stats.lr, stats.samples_per_s,
            )
        stop_by_callback = bool(on_epoch_end(stats)) if on_epoch_end is not None else False
        stopped_reason = _stop_reason(run, state, stop_by_callback, trained)

        # Every rank's RNG streams go into last.pt, so that each resumes its own.
        rng = [_rng_state(device)]
        if d.enabled:
            rng = [None] * d.world_size
            dist.all_gather_object(rng, _rng_state(device))
        if d.is_main:
            _save_last(last_path, model, optimizer, scheduler, scaler, cfg, state, rng)
            _write_history(history_path, cfg, state, stopped_reason)

    if d.is_main:
        logger.info("%s: stopped (%s) after %d epoch(s); best AUC %.4f at epoch %d", cfg.name, stopped_reason,
                    state.epoch, state.best_auc, state.best_epoch)
    if restore_best and state.best_epoch > 0:
        _restore_best(model, best_path, d)
    d.barrier()
    return FitResult(
        best_auc=state.best_auc, best_epoch=state.best_epoch, epochs_run=state.epoch,
        history=tuple(state.history), val_probs=state.best_probs, val_labels=state.best_labels,
        last_checkpoint=last_path, best_checkpoint=best_path, history_path=history_path,
        stopped_reason=stopped_reason,
    )


def _restore_best(model: nn.Module, path: Path, d: _Dist) -> None:
    """Load ``best.safetensors`` into ``model``: rank 0 reads the file, the others receive it."""
    from safetensors.torch import load_file

    if d.is_main:
        model.load_state_dict(load_file(str(path)))
    if d.enabled:
        for t in itertools.chain(model.parameters(), model.buffers()):
            dist.broadcast(t.data, src=0)
