"""Saving and loading model weights: safetensors out; safetensors, ``torch.load(weights_only=True)`` in.

Sources are tried in the order an offline library wants: an in-memory state dict, a local file, then a
Hugging Face Hub id (``hf-hub:org/repo[/path/file]``, downloaded only when such an id is passed, through
:mod:`huggingface_hub` imported at that moment). A file's sha256 is checked before it is parsed when one
is expected. ``strict=False`` loads what fits and logs every missing, unexpected and shape-mismatched
key; the same lists come back in the :class:`LoadReport`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "ChecksumMismatchError",
    "LoadReport",
    "StateDict",
    "WeightsError",
    "file_sha256",
    "load_weights",
    "read_state_dict",
    "save_weights",
]

_logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
HUB_PREFIX = "hf-hub:"
DEFAULT_HUB_FILE = "model.safetensors"
_TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")


class WeightsError(RuntimeError):
    """Weights cannot be read, or do not fit the model they are loaded into.

    A plain ``RuntimeError``: ``temporal_models`` imports nothing from ``preprocessing`` or the rest of
    ``vidfake`` (not even the error bases), so the networks and their weights load anywhere torch does.

    Args:
        source: printable name of the weights (path, hub id, ``"<state dict>"``).
        problem: what is wrong.
    """

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class ChecksumMismatchError(WeightsError):
    """The weights file's sha256 differs from the expected one (corrupt, truncated or another file)."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        source: printable name of the weights.
        sha256: sha256 of the file read, ``None`` for an in-memory state dict.
        loaded: number of tensors copied into the model.
        missing_keys: model keys the weights did not provide (left as initialised).
        unexpected_keys: weight keys the model has no place for (ignored).
        mismatched_keys: ``(key, weights_shape, model_shape)`` for keys present in both with different
            shapes (ignored).
    """

    source: str
    sha256: str | None
    loaded: int
    missing_keys: tuple[str, ...] = ()
    unexpected_keys: tuple[str, ...] = ()
    mismatched_keys: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()

    @property
    def complete(self) -> bool:
        """True when every model key was loaded and every weight was used."""
        return not (self.missing_keys or self.unexpected_keys or self.mismatched_keys)


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(
    model: nn.Module | Mapping[str, torch.Tensor], path: str | Path, metadata: dict | None = None
) -> str:
    """Write a model's state dict as safetensors, atomically, and return the file's sha256.

    Args:
        model: the model (or a state dict).
        path: destination, conventionally ``*.safetensors``.
        metadata: extra header fields; values that are not strings are stored as JSON. The model's
            registered name is added as ``"model"`` when it carries a ``vidfake_config``.

    Returns:
        Hex sha256 of the written file (what :class:`~.config.ModelConfig` ``weights_sha256`` records).
    """
    from safetensors.torch import save_file

    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    header: dict[str, str] = {"format": "pt"}
    config = getattr(model, "vidfake_config", None)
    if config is not None:
        header["model"] = config.name
    for key, value in (metadata or {}).items():
        header[str(key)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a crash never leaves a truncated file under the final name.
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    sha = file_sha256(path)
    _logger.info("saved %d tensors to %s (sha256 %s)", len(tensors), path, sha)
    return sha


def _unwrap(obj: Any, source: str) -> StateDict:
    """Dig the tensor dict out of training checkpoints (``{"model": ...}``, ``{"state_dict": ...}``)."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise WeightsError(source, f"expected a state dict, got {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(source, f"no tensors found (top-level keys: {sorted(map(str, obj))[:10]})")
    skipped = len(obj) - len(tensors)
    if skipped:
        _logger.info("%s: ignoring %d non-tensor entries", source, skipped)
    return tensors


def _hub_file(hub_id: str) -> Path:
    """Resolve ``hf-hub:org/repo[/path/file]`` to a local file through the Hugging Face cache."""
    spec = hub_id[len(HUB_PREFIX) :].strip("/")
    parts = spec.split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise WeightsError(hub_id, "expected hf-hub:org/repo or hf-hub:org/repo/path/to/file")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or DEFAULT_HUB_FILE
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - huggingface_hub comes with timm
        raise WeightsError(hub_id, "huggingface_hub is not installed (pip install huggingface_hub)") from e
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as e:  # the hub raises a dozen types (offline, 404, auth, network)
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " HF_HUB_OFFLINE is set and the file is not in the local cache." if offline else ""
        raise WeightsError(
            hub_id,
            f"could not get {filename!r} from Hugging Face repo {repo_id!r}: {type(e).__name__}: {e}.{hint}",
        ) from e


def read_state_dict(
    source: str | Path | Mapping[str, torch.Tensor], expected_sha256: str | None = None
) -> tuple[StateDict, str, str | None]:
    """Read weights from a state dict, a local file or a hub id.

    Args:
        source: see :func:`load_weights`.
        expected_sha256: verify the file against this before parsing it.

    Returns:
        ``(state_dict, printable source, sha256 of the file or None)``.
    """
    if isinstance(source, Mapping):
        if expected_sha256 is not None:
            raise ValueError("expected_sha256 applies to files; an in-memory state dict has no file to hash")
        return _unwrap(source, "<state dict>"), "<state dict>", None
    name = str(source)
    path = _hub_file(name) if name.startswith(HUB_PREFIX) else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    sha = file_sha256(path)
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise ChecksumMismatchError(name, f"sha256 {sha} does not match the expected {expected_sha256}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in _TORCH_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise WeightsError(
                name, f"unsupported weights format {suffix!r} (use .safetensors or {_TORCH_SUFFIXES})"
            )
    except WeightsError:
        raise
    except Exception as e:  # corrupt file, pickle with non-tensor objects refused by weights_only, ...
        raise WeightsError(name, f"cannot read weights: {type(e).__name__}: {e}") from e
    return _unwrap(state, name), name, sha


def load_weights(
    model: nn.Module,
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    filter_fn: Callable[[StateDict, nn.Module], StateDict] | None = None,
    strict: bool = True,
    expected_sha256: str | None = None,
) -> LoadReport:
    """Load weights into ``model`` in place.

    Args:
        model: the network.
        source: a state dict, a local ``.safetensors``/``.pth``/``.pt``/``.ckpt``/``.bin`` file (torch files
            are read with ``weights_only=True``; ``{"state_dict": ...}``/``{"model": ...}`` wrappers are
            unwrapped) or ``hf-hub:org/repo[/path/file]`` (default file ``model.safetensors``).
        filter_fn: pure ``fn(state_dict, model) -> state_dict`` applied before loading, e.g. a
            reference-checkpoint converter.
        strict: raise :class:`WeightsError` unless every key matches by name and shape. With
            ``strict=False`` the fitting tensors load and every missing, unexpected and mismatched key is
            logged at WARNING level and returned.
        expected_sha256: hex sha256 the file must have.

    Returns:
        A :class:`LoadReport`.
    """
    state, name, sha = read_state_dict(source, expected_sha256)
    if filter_fn is not None:
        state = filter_fn(state, model)
    own = model.state_dict()
    missing = tuple(k for k in own if k not in state)
    unexpected = tuple(k for k in state if k not in own)
    mismatched = tuple(
        (k, tuple(v.shape), tuple(own[k].shape))
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    )
    if strict and (missing or unexpected or mismatched):
        raise WeightsError(
            name, "weights do not fit the model: " + _describe(missing, unexpected, mismatched)
        )
    bad = {k for k, _, _ in mismatched}
    fitting = {k: v for k, v in state.items() if k in own and k not in bad}
    model.load_state_dict(fitting, strict=False)
    report = LoadReport(name, sha, len(fitting), missing, unexpected, mismatched)
    for key in missing:
        _logger.warning("%s: missing key %s (left as initialised)", name, key)
    for key in unexpected:
        _logger.warning("%s: unexpected key %s (ignored)", name, key)
    for key, got, want in mismatched:
        _logger.warning("%s: shape mismatch for %s: weights %s, model %s (ignored)", name, key, got, want)
    _logger.info("%s: loaded %d/%d tensors (sha256 %s)", name, len(fitting), len(own), sha)
    return report


def _describe(missing: tuple, unexpected: tuple, mismatched: tuple, limit: int = 8) -> str:
    def head(items: tuple) -> str:
        shown = ", ".join(str(i) for i in items[:limit])
        return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")

    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {head(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {head(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatch {len(mismatched)}: {head(mismatched)}")
    return "; ".join(parts)
