"""vidfake's networks, their configs and weights (timm style).

    from vidfake.temporal_models import create_model, get_config, list_models
    model = create_model("tall_swin_compact", pretrained=True)   # shipped weights, or FileNotFoundError
    cfg = get_config("lip_compact_mstcn")                         # what preprocessing must produce

Families: ``tall_swin`` (TALL thumbnail layouts -> Swin), ``lip`` (mouth sequences -> 3D conv +
ResNet-18 + MS-TCN/LSTM), ``image2d`` (EfficientNet-Lite0, NPR). Importing this package registers them;
it needs torch and timm only.
"""

from vidfake.temporal_models import image2d, lip, tall_swin  # noqa: F401  (registers the variants)
from vidfake.temporal_models.config import ModelConfig
from vidfake.temporal_models.registry import (
    create_model,
    get_checkpoint_filter,
    get_config,
    is_model,
    list_models,
    pretrained_path,
    register_config,
    register_model,
)
from vidfake.temporal_models.weights import (
    ChecksumMismatchError,
    LoadReport,
    WeightsError,
    file_sha256,
    load_weights,
    save_weights,
)

__all__ = [
    "ChecksumMismatchError",
    "LoadReport",
    "ModelConfig",
    "WeightsError",
    "create_model",
    "file_sha256",
    "get_checkpoint_filter",
    "get_config",
    "is_model",
    "list_models",
    "load_weights",
    "pretrained_path",
    "register_config",
    "register_model",
    "save_weights",
]
