"""The training run's configuration: one frozen dataclass, read from YAML once at the edge.

A YAML file such as ``configs/train_tall.yaml`` holds exactly the fields of :class:`TrainConfig`; an
unknown key is an error that names the key and the file (with the closest field name as a hint), never
a silent rename. ``vidfake train CONFIG --set epochs=3 --set data.fps=25`` overrides fields after
loading; values are coerced to the field's declared type. The engine reads the generic fields; ``data``
is the recipe's own slice, which the engine passes through without reading it.

PyYAML follows YAML 1.1, which reads ``1e-4`` (no dot) as a *string*; numeric fields therefore accept
strings that parse as numbers, so ``lr: 1e-4`` means what its author meant.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from vidfake.preprocessing.errors import SourcedError

__all__ = ["ConfigError", "TrainConfig", "apply_overrides", "config_from_dict", "load_train_config"]

_NONE_WORDS = {"none", "null", "~"}
_TRUE_WORDS = {"true", "yes", "on", "1"}
_FALSE_WORDS = {"false", "no", "off", "0"}


class ConfigError(SourcedError):
    """A training configuration is malformed (``source``: a YAML path, ``"--set"``, ``"<dict>"``; the
    problem names the key)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything the generic engine (:func:`vidfake.training.engine.fit`) needs for one run.

    Attributes:
        name: run name, used in logs and checkpoint metadata.
        model: registered model name for ``vidfake.temporal_models.create_model``.
        model_kwargs: keyword arguments for ``create_model`` (architecture options only).
        init_checkpoint: weights the recipe loads into the model before training (``None``: the
            model's own initialisation). The engine does not read it; ``fit(resume=True)`` resumes
            from ``out_dir/last.pt`` instead.
        epochs: training epochs (the cosine schedule spans all of them).
        batch_size: samples per optimiser step *per process*; under ``torchrun`` the global batch is
            ``batch_size * world_size``.
        lr: peak learning rate of AdamW, reached at the end of warm-up.
        weight_decay: AdamW decoupled weight decay (biases, norms and other 1-D parameters get none).
        warmup_epochs: linear warm-up length in epochs (fractions allowed; 0 disables it).
        grad_clip: clip the global gradient L2 norm to this value (``None`` or 0 disables it).
        label_smoothing: cross-entropy label smoothing in [0, 1).
        seed: seed for torch, numpy, random, data order and DataLoader workers.
        num_workers: DataLoader worker processes (0 loads in the main process).
        early_stop_patience: stop after this many epochs without a validation AUC improvement
            (``None`` disables early stopping).
        max_steps_per_epoch: cap on optimiser steps per epoch (``None``: the whole training set).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        amp: mixed precision (bfloat16 where supported, else float16 with loss scaling); CUDA only,
            ignored with a warning on CPU.
        out_dir: folder for ``last.pt``, ``best.safetensors`` and ``history.json``.
        data: the recipe's own settings (datasets, augmentation); the engine does not interpret them.
        budget_minutes: wall-clock budget for training; when it runs out the engine finishes the
            current step, validates, checkpoints and stops (``None``: no budget).
    """

    name: str
    model: str
    out_dir: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init_checkpoint: str | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    seed: int = 0
    num_workers: int = 0
    early_stop_patience: int | None = None
    max_steps_per_epoch: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    budget_minutes: float | None = None

    def __post_init__(self) -> None:
        # Type checks first (a direct constructor call bypasses the YAML coercion), then ranges.
        hints = _field_types()
        for f in dataclasses.fields(self):
            value = _coerce(getattr(self, f.name), hints[f.name], f.name, "TrainConfig", strict=True)
            object.__setattr__(self, f.name, value)  # ints given for float fields become floats
        problems = [
            msg
            for ok, msg in (
                (bool(self.name.strip()), "name must not be empty"),
                (bool(self.model.strip()), "model must not be empty"),
                (bool(self.out_dir.strip()), "out_dir must not be empty"),
                (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
                (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
                (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}"),
                (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
                (0 <= self.warmup_epochs <= self.epochs,
                 f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}"),
                (self.grad_clip is None or self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}"),
                (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
                (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
                (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
                (self.early_stop_patience is None or self.early_stop_patience >= 1,
                 f"early_stop_patience must be >= 1 or null, got {self.early_stop_patience}"),
                (self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
                 f"max_steps_per_epoch must be >= 1 or null, got {self.max_steps_per_epoch}"),
                (self.budget_minutes is None or self.budget_minutes > 0,
                 f"budget_minutes must be > 0 or null, got {self.budget_minutes}"),
            )
            if not ok
        ]
        if problems:
            raise ConfigError("TrainConfig", "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (for checkpoints and logs); ``config_from_dict`` reverses it."""
        return dataclasses.asdict(self)


def _field_types() -> dict[str, Any]:
    return get_type_hints(TrainConfig)


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _coerce(value: Any, tp: Any, key: str, source: str, *, strict: bool = False) -> Any:
    """Return ``value`` as type ``tp`` or raise :class:`ConfigError` naming ``key`` and ``source``.

    Non-strict (YAML values and ``--set`` strings): strings are parsed into numbers, booleans, ``None``
    and mappings where the field's type asks for one. Strict (direct construction): no conversion.
    """

    def fail(why: str) -> ConfigError:
        return ConfigError(source, f"{key}: {why} (got {value!r})")

    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (not strict and isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            if len(options) < len(get_args(tp)):
                return None
            raise fail("must not be null")
        return _coerce(value, options[0], key, source, strict=strict)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise fail(f"must be one of {', '.join(map(repr, get_args(tp)))}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if not strict and isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        raise fail("must be true or false")
    if tp is int:
        if not strict and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise fail("must be an integer") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail("must be an integer")
    if tp is float:
        if not strict and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise fail("must be a number") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise fail("must be a number")
    if tp is str:
        if isinstance(value, str):
            return value
        if not strict and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # YAML reads `name: 2024` as an int
        raise fail("must be a string")
    if origin is dict or tp is dict:
        if not strict and isinstance(value, str):
            value = _parse_scalar(value)
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise fail("must be a mapping with string keys")
    raise TypeError(f"unsupported config field type {tp!r} for {key}")  # a bug in TrainConfig itself


def _unknown_key(key: str, source: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(source, f"unknown key {key!r}{hint}; valid keys: {', '.join(names)}")


def config_from_dict(raw: Mapping[str, Any], source: str = "<dict>") -> TrainConfig:
    """Build a :class:`TrainConfig` from plain data (a parsed YAML mapping, a checkpoint's config).

    Args:
        raw: field name -> value; values are coerced to the field types as described in the module
            docstring.
        source: printable origin used in error messages.

    Raises:
        ConfigError: an unknown or missing key, or a value of the wrong type or range.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(source, f"the top level must be a mapping of TrainConfig fields, got {type(raw).__name__}")
    hints = _field_types()
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise _unknown_key(str(key), source)
        values[key] = _coerce(value, hints[key], key, source)
    missing = [
        name for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(source, f"missing required key(s): {', '.join(missing)}")
    try:
        return TrainConfig(**values)
    except ConfigError as e:
        raise ConfigError(source, e.problem) from e


def load_train_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a training YAML file, then apply ``--set`` overrides.

    Args:
        path: YAML file whose top level holds :class:`TrainConfig` fields.
        overrides: ``"key=value"`` strings as for :func:`apply_overrides`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: the YAML does not parse, or a key or value is invalid (the message names both the
            key and the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: training config not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(str(path), f"not valid YAML: {e}") from e
    if raw is None:
        raise ConfigError(str(path), "the file is empty")
    return apply_overrides(config_from_dict(raw, str(path)), overrides)


def apply_overrides(cfg: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Return a copy of ``cfg`` with ``key=value`` overrides applied in order.

    ``value`` is coerced to the field's type (``epochs=3`` -> 3, ``amp=true`` -> True,
    ``grad_clip=null`` -> None, ``model_kwargs={drop_rate: 0.1}`` -> a dict). A dotted key sets one
    entry inside a mapping field, creating intermediate mappings: ``data.fps=25`` sets
    ``cfg.data["fps"]`` to the YAML value of ``25`` (the int 25).

    Raises:
        ConfigError: malformed override, unknown field, or a value the field cannot take.
    """
    hints = _field_types()
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("--set", f"{item!r} is not of the form key=value")
        head, _, rest = key.partition(".")
        if head not in hints:
            raise _unknown_key(head, "--set")
        if not rest:
            changes[head] = _coerce(text, hints[head], head, "--set")
            continue
        if get_origin(hints[head]) is not dict:
            raise ConfigError("--set", f"{key}: {head} is not a mapping, so it has no sub-keys")
        tree = _deep_copy_dict(changes.get(head, getattr(cfg, head)))
        node = tree
        parts = rest.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError("--set", f"{key}: {part} holds {child!r}, not a mapping")
            node = child
        node[parts[-1]] = _parse_scalar(text)
        changes[head] = tree
    if not changes:
        return cfg
    try:
        return dataclasses.replace(cfg, **changes)
    except ConfigError as e:
        raise ConfigError("--set", e.problem) from e


def _deep_copy_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy_dict(v) if isinstance(v, Mapping) else v for k, v in d.items()}
