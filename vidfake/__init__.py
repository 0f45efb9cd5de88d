"""vidfake: tell real videos and images from deepfakes and AI-generated media.

    from vidfake import Detector
    result = Detector.from_pretrained().detect("clip.mp4")
    print(result.verdict, result.probability_fake)

Heavy modules (torch, mediapipe) load when a detector is built, not at import.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

__all__ = ["Detector", "DetectorConfig", "DetectionResult", "__version__", "use_offline_hubs"]


def use_offline_hubs() -> None:
    """Keep the Hugging Face libraries (hub, datasets, transformers) off the network unless the
    environment already says otherwise. Call it before they are imported; the CLI does at start."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")


def __getattr__(name: str):
    if name in ("Detector", "DetectorConfig"):
        from vidfake import detector

        return getattr(detector, name)
    if name == "DetectionResult":
        from vidfake.result import DetectionResult

        return DetectionResult
    raise AttributeError(f"module 'vidfake' has no attribute {name!r}")
