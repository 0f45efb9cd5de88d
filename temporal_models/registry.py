"""One ``create_model`` for every vidfake network (timm style).

Each family module (``tall_swin``, ``lip``, ``image2d``) registers a :class:`~.config.ModelConfig` per
variant with :func:`register_config` and the variant's builder with :func:`register_model`, when it is
imported; ``vidfake.temporal_models`` imports them all. Weights load only when asked for:

* ``pretrained=True``: the file named by the config, shipped inside the package folder
  ``vidfake.temporal_models.pretrained``; a missing file is an error that says how to get it, never a
  download and never a silent random initialisation.
* ``checkpoint_path``: an in-memory state dict, a local file or a ``hf-hub:org/repo[/file]`` id. Files in
  a reference implementation's naming (DeepfakeBench TALL, LipForensics, NPR, EfficientNet-PyTorch) are
  converted by the variant's ``checkpoint_filter_fn``; files written by :func:`~.weights.save_weights`
  pass through it unchanged.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from vidfake.temporal_models.config import ModelConfig
from vidfake.temporal_models.weights import LoadReport, StateDict, load_weights

__all__ = [
    "PRETRAINED_PACKAGE",
    "create_model",
    "get_checkpoint_filter",
    "get_config",
    "is_model",
    "list_models",
    "pretrained_path",
    "register_config",
    "register_model",
]

_logger = logging.getLogger(__name__)

PRETRAINED_PACKAGE = "vidfake.temporal_models.pretrained"

FilterFn = Callable[[StateDict, nn.Module], StateDict]
F = TypeVar("F", bound=Callable[..., nn.Module])

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
_CONFIGS: dict[str, ModelConfig] = {}
_FILTERS: dict[str, FilterFn] = {}


def register_config(config: ModelConfig) -> ModelConfig:
    """Record the config of a variant; call before :func:`register_model` decorates its builder."""
    if config.name in _CONFIGS and _CONFIGS[config.name] != config:
        raise ValueError(f"a different config is already registered for model {config.name!r}")
    _CONFIGS[config.name] = config
    return config


def register_model(fn: F | None = None, *, checkpoint_filter: FilterFn | None = None) -> Any:
    """Register a variant builder under its function name.

    Use as ``@register_model`` or ``@register_model(checkpoint_filter=fn)``. The builder takes
    architecture keyword arguments only and returns a randomly initialised ``nn.Module``; a config of
    the same name must already be registered.

    Args:
        fn: the builder.
        checkpoint_filter: pure ``fn(state_dict, model) -> state_dict`` converting the reference
            implementation's checkpoints; it must return this library's own state dicts unchanged.
    """

    def wrap(f: F) -> F:
        name = f.__name__
        if name not in _CONFIGS:
            raise ValueError(
                f"register_config(ModelConfig(name={name!r}, ...)) must come before @register_model"
            )
        if name in _ENTRYPOINTS and _ENTRYPOINTS[name] is not f:
            raise ValueError(f"model {name!r} is already registered")
        _ENTRYPOINTS[name] = f
        if checkpoint_filter is not None:
            _FILTERS[name] = checkpoint_filter
        return f

    return wrap(fn) if fn is not None else wrap


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_ENTRYPOINTS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"unknown model {name!r}{hint} Registered: {', '.join(sorted(_ENTRYPOINTS))}")


def list_models(pattern: str = "*") -> list[str]:
    """Registered variant names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _ENTRYPOINTS if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    """True when ``name`` is a registered variant."""
    return name in _ENTRYPOINTS


def get_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a registered variant (no model is built)."""
    if name not in _ENTRYPOINTS:
        raise _unknown(name)
    return _CONFIGS[name]


def get_checkpoint_filter(name: str) -> FilterFn | None:
    """The variant's converter for reference checkpoints, or ``None`` when it has none."""
    if name not in _ENTRYPOINTS:
        raise _unknown(name)
    return _FILTERS.get(name)


def pretrained_path(name: str) -> Path:
    """Path of the shipped weights file of ``name``.

    Raises:
        FileNotFoundError: the variant has no shipped weights, or the file is not installed; the
            message says where it is expected and how to get or train it.
    """
    config = get_config(name)
    if config.weights_file is None:
        raise FileNotFoundError(
            f"model {name!r} has no shipped weights ({config.weights_source or 'none are planned'}). "
            f"Build it with pretrained=False, or pass checkpoint_path=<file | state dict | hf-hub:org/repo>."
        )
    folder = resources.files(PRETRAINED_PACKAGE)
    candidate = folder / config.weights_file
    if not candidate.is_file():
        raise FileNotFoundError(
            f"shipped weights for {name!r} not found: expected {config.weights_file!r} in {folder} "
            f"(package {PRETRAINED_PACKAGE}). {config.weights_source} "
            f"Put the file there (it must match sha256 {config.weights_sha256 or '<not yet recorded>'}), "
            f"or pass checkpoint_path=... to create_model. vidfake never downloads weights by itself."
        )
    # The pretrained folder is a plain directory in both editable and wheel installs.
    return Path(str(candidate))


def create_model(
    name: str,
    pretrained: bool = False,
    checkpoint_path: str | Path | StateDict | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with weights.

    Args:
        name: registered variant (see :func:`list_models`).
        pretrained: load the shipped weights named by the config (sha256-verified, strict).
        checkpoint_path: weights to load instead: a state dict, a local ``.safetensors``/``.pth``/``.pt``/
            ``.ckpt`` file, or ``hf-hub:org/repo[/file]``. Reference checkpoints are converted by the
            variant's ``checkpoint_filter_fn``; loading is strict.
        **kwargs: architecture arguments passed to the variant builder (e.g. ``drop_path_rate``).

    Returns:
        The model in eval mode, with ``model.pretrained_cfg`` and ``model.vidfake_config`` set to its
        :class:`ModelConfig` and ``model.load_report`` set to the :class:`LoadReport` (``None`` when no
        weights were loaded).
    """
    if name not in _ENTRYPOINTS:
        raise _unknown(name)
    if pretrained and checkpoint_path is not None:
        raise ValueError("pass pretrained=True or checkpoint_path, not both")
    config = _CONFIGS[name]
    weights_file = pretrained_path(name) if pretrained else None  # fail before building a large model

    model = _ENTRYPOINTS[name](**kwargs)
    model.pretrained_cfg = config
    model.vidfake_config = config
    report: LoadReport | None = None
    if weights_file is not None:
        if config.weights_sha256 is None:
            _logger.warning("no sha256 recorded for %s; loading %s unverified", name, weights_file)
        report = load_weights(model, weights_file, expected_sha256=config.weights_sha256)
    elif checkpoint_path is not None:
        report = load_weights(model, checkpoint_path, filter_fn=_FILTERS.get(name))
    model.load_report = report
    return model.eval()
