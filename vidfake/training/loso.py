"""Leave-one-source-out (LOSO) evaluation of still-image detectors on cached frozen features.

The validation split holds out people and scenes, not sources, and flatters: the shipped 2D detector
scores AUC 0.90 there and about 0.5 on sources it never saw. The quality figure that matters to users
meeting new generators is how a detector does on a generator family *and* a kind of real photo that it
never trained on. This module measures that for cheap heads on the features cached by
:mod:`vidfake.training.features`.

Protocol (no head is ever scored on an item whose source group it saw in training):

1. Groups come from :mod:`vidfake.training.groups`: fakes by generator family, reals by kind of source.
2. Real groups are dealt into ``real_folds`` folds (largest group first, each into the fold with the
   fewest items so far; deterministic).
3. For every pair (fake group ``F``, real fold ``R``) one head is trained on every item whose group is
   neither ``F`` nor in ``R``, on all its training views, and scores ``F``'s fakes and ``R``'s reals.
4. The AUC of fake group ``F`` is the Mann-Whitney statistic over every (fake of ``F``, real) pair, each
   pair compared by the head that saw neither side's source: the per-head AUCs averaged with the number
   of reals of each fold as weights. MCC (threshold 0.5 on the head's probability) is averaged the same
   way. The AUC of a real group is read off the same heads (each fake group against that real group,
   weighted by the fake group's size).
5. *Clean*: items scored on view 0 (as stored). *Validator-style*: scored on views 1..K-1 (the
   validators' augmentation mix, 256 px JPEG 75), each view a separate sample. Heads train on all K
   views of the training items; a held-out item's views are never trained on, whichever view is scored.

Heads: ``logreg`` (standardised features, L2 logistic regression, balanced class weights, fixed ``C``),
``logreg_cv`` (``C`` picked by group k-fold inside the training part of each fold), ``logreg_groupbal``
(``logreg`` with every source group of a label weighted alike: :func:`group_balanced_weights`), ``mlp``
(standardised, PCA to at most 128 whitened components fitted on the training part, one hidden layer
of 128 units), ``finetune_tail`` (the shipped 2D recipe's trainable layers fitted per fold on the
``lite0_stage5`` candidate: :mod:`vidfake.training.tail`), ``score`` (no training: a one-column
training-free score is the ranking, so every group is unseen by construction), ``score_sum``
(:class:`ScoreSum`: several such scores, each standardised, summed), ``score_content``
(:class:`ContentNormalisedScore`: such a score standardised by the real training rows of its content
cluster, the clusters from the other columns), ``blend_score`` (:class:`ScoreBlend`:
``logreg_groupbal`` plus such a score, fixed equal weight), ``logreg_content`` and ``blend_content``
(the same with real and fake weighed alike inside every content cluster: :func:`content_balanced_weights`).
``--train-only-group`` trains on a source in every fold and never scores it, e.g. the ImageNet samples,
which the frozen ImageNet trunk trained on, so they are no unseen source for anything built on it
(``docs/loso_images.md``, fifth pass); ``--exclude-group`` leaves a source out altogether. Candidates are named in
:data:`vidfake.training.features.CANDIDATES`; the confound
candidates (image size alone, JPEG bytes alone) go through the same protocol, and the shipped detector
is scored with no training (its logit is the score) as a *reference*: it saw every source, so its row
is not a LOSO figure.

    python -m vidfake.training.features --data ../shared/data --extractor lite0 --extractor confounds
    python -m vidfake.training.loso --data ../shared/data --candidate lite0_last --candidate confound_size \\
        --head logreg --head mlp --out runs/loso_images.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "HEADS",
    "CandidateResult",
    "Fold",
    "GroupScore",
    "deal_real_folds",
    "evaluate",
    "make_folds",
    "markdown_table",
]

# Candidate -> the candidate holding the same features of self-blended copies (loso --aux-sbi).
AUX_SBI = {"lite0_patches": "lite0_patches_sbi", "lite0_multi": "lite0_multi_sbi"}

# Two real folds: each head holds out half the real groups (about 490 reals). Four folds cost twice the
# fits (lite0_last + logreg: 206 s for 56 fits on a shared 2-core CPU) for slightly more training reals.
DEFAULT_REAL_FOLDS = 2
LOGREG_C = 0.01  # strong L2: thousands of standardised features, a few thousand rows per fold
INNER_CS = (0.001, 0.01, 0.1)


# --------------------------------------------------------------------------- folds
@dataclass(frozen=True)
class Fold:
    """One head's hold-out: a fake group and a fold of real groups."""

    fake_group: str
    real_groups: tuple[str, ...]

    @property
    def held_out(self) -> frozenset[str]:
        return frozenset((self.fake_group, *self.real_groups))


def deal_real_folds(real_sizes: dict[str, int], n: int) -> list[tuple[str, ...]]:
    """Real groups dealt into ``n`` folds of similar size: largest first, into the lightest fold.

    Ties are broken by name, so the folds depend only on the group sizes.
    """
    n = max(1, min(n, len(real_sizes)))
    folds: list[list[str]] = [[] for _ in range(n)]
    load = [0] * n
    for name, size in sorted(real_sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        k = min(range(n), key=lambda j: (load[j], j))
        folds[k].append(name)
        load[k] += size
    return [tuple(sorted(f)) for f in folds]


def make_folds(labels: np.ndarray, groups: Sequence[str], real_folds: int = DEFAULT_REAL_FOLDS) -> list[Fold]:
    """Every (fake group, real fold) pair; see the module docstring.

    Raises:
        ValueError: a group holds both labels.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    by_group: dict[str, set[int]] = {}
    for g, y in zip(groups, labels, strict=True):
        by_group.setdefault(str(g), set()).add(int(y))
    mixed = [g for g, ys in by_group.items() if len(ys) > 1]
    if mixed:
        raise ValueError(f"groups holding both labels: {mixed}")
    fakes = sorted(g for g, ys in by_group.items() if ys == {1})
    reals = {g: int((groups == g).sum()) for g, ys in by_group.items() if ys == {0}}
    return [Fold(f, r) for f in fakes for r in deal_real_folds(reals, real_folds)]


# --------------------------------------------------------------------------- heads
def _logreg(c: float = LOGREG_C, class_weight: str | None = "balanced"):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # tol 1e-3 (default 1e-4): AUCs agree to 3 decimals on lite0_last, at a fraction of the iterations.
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight=class_weight, max_iter=500,
                                                              tol=1e-3))


def _logreg_inner_cv():
    from sklearn.model_selection import GridSearchCV, GroupKFold

    return GridSearchCV(_logreg(), {"logisticregression__C": list(INNER_CS)}, scoring="roc_auc",
                        cv=GroupKFold(3), refit=True)


def _mlp():
    from sklearn.decomposition import PCA
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    class _PCA(PCA):
        # At most 128 components, fewer when the features have fewer (the confound candidates).
        def fit(self, X, y=None):
            self.n_components = min(128, X.shape[1])
            return super().fit(X, y)

        def fit_transform(self, X, y=None):
            self.n_components = min(128, X.shape[1])
            return super().fit_transform(X, y)

    return make_pipeline(StandardScaler(), _PCA(whiten=True, svd_solver="randomized", random_state=0),
                         MLPClassifier((128,), alpha=1e-2, max_iter=200, early_stopping=True,
                                       random_state=0))


def group_balanced_weights(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Sample weights giving every source group of a label the same total weight, and both labels half.

    The dev data's groups range from 8 to 412 items, and content follows the group (the SD 1.5 fine-tunes
    are art, most face groups are real): unweighted, the largest groups decide what "fake" looks like.
    """
    y = np.asarray(y)
    groups = np.asarray(groups).astype(str)
    w = np.zeros(len(y), dtype=np.float64)
    for label in np.unique(y):
        on = y == label
        names, counts = np.unique(groups[on], return_counts=True)
        size = dict(zip(names, counts, strict=True))
        w[on] = [1.0 / (len(names) * size[g]) for g in groups[on]]
    return w * (len(y) / w.sum())


class GroupBalanced:
    """A classifier fitted with :func:`group_balanced_weights` (needs the training groups)."""

    takes_groups = True

    def __init__(self, make: Callable[[], object]):
        self.model = make()

    def weights(self, x, y, groups) -> np.ndarray:
        return group_balanced_weights(y, groups)

    def fit(self, x, y, groups):
        step = self.model.steps[-1][0]
        self.model.fit(x, y, **{f"{step}__sample_weight": self.weights(x, y, groups)})
        return self

    def predict_proba(self, x):
        return self.model.predict_proba(x)


def _logreg_balanced():
    return GroupBalanced(lambda: _logreg(class_weight=None))  # the weights balance the labels already


CONTENT_CLUSTERS = 12  # k-means clusters of the training rows (faces, photos, art, anime, ... by feature)
CONTENT_FLOOR = 0.05  # weight share kept by clusters that hold one label only


class ContentClusters:
    """k-means content clusters of feature rows: standardised, 32 principal components, ``k`` clusters
    (label-free; shared by :func:`content_balanced_weights` and :class:`ContentNormalisedScore`)."""

    def __init__(self, k: int, seed: int = 0):
        self.k, self.seed = k, seed

    def fit(self, x: np.ndarray) -> ContentClusters:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = np.asarray(x, np.float64)
        self.embed = make_pipeline(StandardScaler(), PCA(min(32, x.shape[1], len(x) - 1), random_state=self.seed))
        self.km = KMeans(self.k, n_init=4, random_state=self.seed).fit(self.embed.fit_transform(x))
        self.labels_ = self.km.labels_
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.km.predict(self.embed.transform(np.asarray(x, np.float64)))


def content_balanced_weights(x: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int = CONTENT_CLUSTERS,
                             floor: float = CONTENT_FLOOR, seed: int = 0) -> np.ndarray:
    """Group-balanced weights rescaled so that real and fake weigh the same *inside every content cluster*.

    Content follows the label in the dev data (faces are mostly real, art and anime mostly fake), so a
    head learns "face = real". The training rows are clustered (k-means on 32 standardised principal
    components of the features themselves); in a cluster holding both labels the reals and fakes are each
    given half the cluster's weight, so the cluster's content cannot tell them apart; a cluster holding one
    label keeps only ``floor`` of its weight: it teaches content and nothing else.
    """
    y = np.asarray(y)
    w = group_balanced_weights(y, groups)
    cluster = ContentClusters(k, seed).fit(x).labels_
    out = w.copy()
    for c in np.unique(cluster):
        on = cluster == c
        s_real, s_fake = w[on & (y == 0)].sum(), w[on & (y == 1)].sum()
        if s_real > 0 and s_fake > 0:
            out[on & (y == 0)] *= (s_real + s_fake) / (2 * s_real)
            out[on & (y == 1)] *= (s_real + s_fake) / (2 * s_fake)
        else:
            out[on] *= floor
    return out * (len(y) / out.sum())


class ContentBalanced(GroupBalanced):
    """A classifier fitted with :func:`content_balanced_weights`: it learns what tells real from fake
    *within* a kind of content."""

    def weights(self, x, y, groups) -> np.ndarray:
        return content_balanced_weights(x, y, groups)


def _logreg_content():
    return ContentBalanced(lambda: _logreg(class_weight=None))


class SourceProjection:
    """Logistic regression on features with the directions that tell *sources of one label* apart removed.

    Nuisance attribute projection (as speaker verification removes channel directions): after
    standardising, each training source group's mean is taken relative to the mean of its label's group
    means; the top right singular vectors of those offsets span what differs between sources whose label
    is the same (subject matter, style, format), and are projected out before a group-balanced logistic
    regression. The label direction itself survives unless it lies in that span. Every direction the
    offsets span goes: at most the number of training groups minus the number of labels.
    """

    takes_groups = True

    def __init__(self):
        self.model = _logreg(class_weight=None)

    def _project(self, x):
        z = self.scaler.transform(x)
        return z - (z @ self.basis.T) @ self.basis

    def fit(self, x, y, groups):
        from sklearn.preprocessing import StandardScaler

        y, groups = np.asarray(y), np.asarray(groups).astype(str)
        self.scaler = StandardScaler().fit(x)
        z = self.scaler.transform(x)
        offsets = []
        for label in np.unique(y):
            names = np.unique(groups[y == label])
            means = np.stack([z[(y == label) & (groups == g)].mean(0) for g in names])
            offsets.append(means - means.mean(0))
        _, sv, vt = np.linalg.svd(np.concatenate(offsets), full_matrices=False)
        keep = int((sv > 1e-6 * sv[0]).sum())
        self.basis = vt[:keep]
        step = self.model.steps[-1][0]
        self.model.fit(z - (z @ self.basis.T) @ self.basis, y,
                       **{f"{step}__sample_weight": group_balanced_weights(y, groups)})
        return self

    def predict_proba(self, x):
        return self.model.predict_proba(self._project(x))


class ScoreBlend:
    """A group-balanced logistic regression on every column but the last, plus the last column, a
    training-free score (``rigid_score``, ``rigid_mid1``: joint candidates ``lite0_multi+<score>``), with
    equal weight: each is standardised on the training rows
    and the two are summed. The weight is fixed, not fitted, so the score's contribution cannot be
    tuned to the sources the fold trains on."""

    takes_groups = True
    base: Callable[[], object] = staticmethod(_logreg_balanced)

    def __init__(self, probe_weight: float = 1.0):
        self.probe_weight = probe_weight  # the shipped still-image term's weight on the head (vidfake.probe)

    def fit(self, x, y, groups):
        x = np.asarray(x)
        self.model = self.base().fit(x[:, :-1], y, groups)
        logit = self._logit(x[:, :-1])
        self.stats = (logit.mean(), logit.std() + 1e-12, x[:, -1].mean(), x[:, -1].std() + 1e-12)
        return self

    def _logit(self, x):
        return self.model.model.decision_function(x)  # the pipeline's log-odds, unclipped

    def predict_proba(self, x):
        x = np.asarray(x)
        m1, s1, m2, s2 = self.stats
        z = self.probe_weight * (self._logit(x[:, :-1]) - m1) / s1 + (x[:, -1] - m2) / s2
        p = 1.0 / (1.0 + np.exp(-z))
        return np.stack([1 - p, p], 1)


class ScoreSum:
    """Training-free scores side by side (joint candidates such as ``zs_mid5x4+zs_hf_head``), each
    standardised on the training rows and summed with equal weight: nothing but each column's scale is
    fitted, so no source's content can be learned."""

    def fit(self, x, y=None):
        x = np.asarray(x, np.float64)
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-12
        return self

    def predict_proba(self, x):
        z = ((np.asarray(x, np.float64) - self.mean) / self.scale).sum(1) / np.sqrt(len(self.mean))
        p = 1.0 / (1.0 + np.exp(-z))
        return np.stack([1 - p, p], 1)


class ContentNormalisedScore:
    """A training-free score (the last column) measured against the *real* training rows of its content:
    the other columns are clustered (k-means, 8 clusters, on 32
    standardised principal components), and the score becomes ``(score - mean) / std`` of the reals in
    the row's cluster (a cluster with fewer than 10 reals uses all reals). Faces are stable in the
    middle of the network whether generated or not; this asks whether an image is less stable than real
    images that look like it. Fitted on reals' scores and label-free clusters only: no fake is learned.
    """

    n_clusters = 8
    min_reals = 10

    def fit(self, x, y):
        x, real = np.asarray(x, np.float64), np.asarray(y) == 0
        self.clusters = ContentClusters(self.n_clusters).fit(x[:, :-1])
        s, c = x[:, -1], self.clusters.labels_
        stats = [(s[real & (c == j)].mean(), s[real & (c == j)].std()) if (real & (c == j)).sum() >= self.min_reals
                 else (s[real].mean(), s[real].std()) for j in range(self.n_clusters)]
        self.mean, self.scale = (np.array(v) for v in zip(*stats, strict=True))
        self.scale = self.scale + 1e-12
        return self

    def predict_proba(self, x):
        x = np.asarray(x, np.float64)
        c = self.clusters.predict(x[:, :-1])
        p = 1.0 / (1.0 + np.exp(-(x[:, -1] - self.mean[c]) / self.scale[c]))
        return np.stack([1 - p, p], 1)


class ContentScoreBlend(ScoreBlend):
    """:class:`ScoreBlend` over a content-balanced logistic regression (:class:`ContentBalanced`)."""

    base = staticmethod(_logreg_content)


def _finetune_tail():
    from vidfake.training.tail import TailFinetune

    return TailFinetune()


HEADS: dict[str, Callable[[], object]] = {"logreg": _logreg, "logreg_cv": _logreg_inner_cv, "mlp": _mlp,
                                          "logreg_groupbal": _logreg_balanced, "finetune_tail": _finetune_tail,
                                          "logreg_nap": SourceProjection, "score": None,
                                          "blend_score": ScoreBlend, "logreg_content": _logreg_content,
                                          "blend_content": ContentScoreBlend, "score_sum": ScoreSum,
                                          "score_content": ContentNormalisedScore}


def _scores(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranking score, P(fake)) of a fitted sklearn classifier."""
    p = model.predict_proba(x)[:, 1]
    return p, p


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class GroupScore:
    """AUC and MCC of one held-out group; ``None`` where the view set is empty (K = 1)."""

    group: str
    label: int
    n: int
    auc_clean: float
    auc_validator: float | None
    mcc_clean: float
    mcc_validator: float | None


@dataclass(frozen=True)
class CandidateResult:
    """LOSO figures of one candidate and head; ``loso=False`` marks a reference (no training)."""

    candidate: str
    head: str
    loso: bool
    views: int
    folds: int
    fake_groups: tuple[GroupScore, ...]
    real_groups: tuple[GroupScore, ...]
    seconds: float

    def summary(self, which: str = "fake_groups") -> dict[str, float | None]:
        rows = getattr(self, which)
        out: dict[str, float | None] = {}
        for key in ("auc_clean", "auc_validator", "mcc_clean", "mcc_validator"):
            vals = [getattr(r, key) for r in rows if getattr(r, key) is not None]
            out[f"{key}_mean"] = float(np.mean(vals)) if vals else None
            out[f"{key}_worst"] = float(np.min(vals)) if vals else None
        return out


def _auc_mcc(y: np.ndarray, s: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    return float(roc_auc_score(y, s)), float(matthews_corrcoef(y, p >= 0.5))


def evaluate(features: np.ndarray, labels: np.ndarray, groups: Sequence[str], head: str | Callable | None,
             *, candidate: str = "", real_folds: int = DEFAULT_REAL_FOLDS, fit_groups: bool = True,
             aux: tuple[np.ndarray, Sequence[str]] | None = None, train_fakes: bool = True,
             folds: Sequence[Fold] | None = None) -> CandidateResult:
    """LOSO figures of one candidate (see the module docstring).

    Args:
        features: ``(N, K, D)``; view 0 clean, 1..K-1 validator-style.
        labels: ``(N,)`` 0 real, 1 fake.
        groups: ``(N,)`` source group of each item.
        head: a name in :data:`HEADS`, a factory returning an sklearn-style classifier, or ``None``: no
            training, ``features[..., 0]`` is the score (a logit; P = sigmoid) — the reference row.
        fit_groups: pass training groups to ``fit`` as ``groups=`` when the head takes them (inner CV).
        aux: extra *fake* training rows ``(features (M, K, D), groups (M,))`` made from real items, e.g.
            self-blended fakes of real faces, each tagged with its real source's group: a fold trains on
            them only where that group is not held out, and they are never scored.
        train_fakes: ``False`` trains on reals (and ``aux``) only: no labelled fake of any source is seen
            (SBI's recipe), so every fake group is unseen by construction.
        folds: explicit hold-outs instead of every (fake group, real fold) pair, e.g. each fake source
            with the real source filmed alike (content-matched pairs).

    Returns:
        Per-group AUC/MCC for fake and real groups.
    """
    t0 = time.perf_counter()
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels).astype(int)
    groups = np.asarray(groups).astype(str)
    n, k, _ = features.shape
    folds = list(folds) if folds is not None else make_folds(labels, groups, real_folds)
    factory = HEADS[head] if isinstance(head, str) else head  # "score": no training, a LOSO figure
    if factory is None and features.shape[-1] != 1:
        raise ValueError(f"{candidate or 'features'}: a score without training needs one column, got "
                         f"{features.shape[-1]}; pick a trained head")
    # pairs[(fake group, real group)][view set] = (auc, mcc); weights from group sizes.
    pairs: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for fold in folds:
        held = np.isin(groups, list(fold.held_out))
        test = held & ((groups == fold.fake_group) | np.isin(groups, list(fold.real_groups)))
        if factory is None:
            model = None
        else:
            train = ~held if train_fakes else ~held & (labels == 0)
            x = features[train].reshape(-1, features.shape[-1])  # (items x K) rows, item-major
            y = np.repeat(labels[train], k)
            g_train = np.repeat(groups[train], k)
            if aux is not None:
                ax, ag = np.asarray(aux[0], dtype=np.float32), np.asarray(aux[1]).astype(str)
                keep = ~np.isin(ag, list(fold.held_out))
                x = np.concatenate([x, ax[keep].reshape(-1, ax.shape[-1])])
                y = np.concatenate([y, np.ones(int(keep.sum()) * ax.shape[1], dtype=y.dtype)])
                g_train = np.concatenate([g_train, np.repeat(ag[keep], ax.shape[1])])
            if len(np.unique(y)) < 2:
                raise ValueError(f"fold {fold}: the training part holds one class only")
            model = factory()
            if fit_groups and (hasattr(model, "cv") or getattr(model, "takes_groups", False)):
                model.fit(x, y, groups=g_train)
            else:
                model.fit(x, y)
        for view_set, views in (("clean", [0]), ("validator", list(range(1, k)))):
            if not views:
                continue
            xt = features[test][:, views].reshape(-1, features.shape[-1])
            yt = np.repeat(labels[test], len(views))
            gt = np.repeat(groups[test], len(views))
            if model is None:
                s = xt[:, 0]
                p = 1.0 / (1.0 + np.exp(-s))
            else:
                s, p = _scores(model, xt)
            for real in fold.real_groups:
                sel = (gt == fold.fake_group) | (gt == real)
                pairs.setdefault((fold.fake_group, real), {})[view_set] = _auc_mcc(yt[sel], s[sel], p[sel])
    size = {g: int((groups == g).sum()) for g in np.unique(groups)}
    label_of = {g: int(labels[groups == g][0]) for g in size}

    def score(g: str, side: int) -> GroupScore:
        mine = {(f, r): v for (f, r), v in pairs.items() if (f if side == 1 else r) == g}
        other = {key: size[key[0] if side == 0 else key[1]] for key in mine}
        w = np.array([other[key] for key in mine], dtype=float)

        def avg(view_set: str, idx: int) -> float | None:
            vals = [v[view_set][idx] for v in mine.values() if view_set in v]
            return float(np.average(vals, weights=w)) if vals else None

        return GroupScore(g, side, size[g], avg("clean", 0), avg("validator", 0), avg("clean", 1),
                          avg("validator", 1))

    scored = {g for pair in pairs for g in pair}  # a train-only group (see --train-only-group) is never scored
    fakes = tuple(score(g, 1) for g in sorted(size) if label_of[g] == 1 and g in scored)
    reals = tuple(score(g, 0) for g in sorted(size) if label_of[g] == 0 and g in scored)
    name = head if isinstance(head, str) else ("reference" if head is None else getattr(head, "__name__", "head"))
    return CandidateResult(candidate, name, head is not None, k, len(folds), fakes, reals,
                           time.perf_counter() - t0)


# --------------------------------------------------------------------------- report
def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def markdown_table(results: Sequence[CandidateResult]) -> str:
    """One row per candidate x head: fake-group AUC mean / worst, validator-style first."""
    lines = ["| candidate | head | K | validator AUC mean | validator AUC worst | clean AUC mean | "
             "clean AUC worst | validator MCC mean | real-group val. AUC worst | fit s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, sr = r.summary(), r.summary("real_groups")
        name = r.candidate if r.loso else f"{r.candidate} (reference, NOT LOSO: trained on all sources)"
        lines.append(f"| {name} | {r.head} | {r.views} | {_f(s['auc_validator_mean'])} | "
                     f"{_f(s['auc_validator_worst'])} | {_f(s['auc_clean_mean'])} | {_f(s['auc_clean_worst'])} | "
                     f"{_f(s['mcc_validator_mean'])} | {_f(sr['auc_validator_worst'])} | {r.seconds:.0f} |")
    return "\n".join(lines)


def group_table(result: CandidateResult) -> str:
    """Per-group AUCs of one candidate (fake groups, then real groups)."""
    lines = [f"Per-group AUC, {result.candidate} / {result.head}",
             "", "| group | label | n | validator AUC | clean AUC | validator MCC |", "|---|---|---|---|---|---|"]
    for g in (*result.fake_groups, *result.real_groups):
        lines.append(f"| {g.group} | {'fake' if g.label else 'real'} | {g.n} | {_f(g.auc_validator)} | "
                     f"{_f(g.auc_clean)} | {_f(g.mcc_validator)} |")
    return "\n".join(lines)


def _write_results(out: Path, results: Sequence[CandidateResult], real_folds: int,
                   protocol: dict[str, list[str]] | None = None) -> None:
    """The report; ``protocol`` names the groups left out or trained on only (``--exclude-group``,
    ``--train-only-group``), so a report of one protocol is never resumed under another."""
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"date": date.today().isoformat(), "real_folds": real_folds,
                               "protocol": protocol or {},
                               "results": [dict(asdict(r), summary=r.summary(),
                                                real_summary=r.summary("real_groups")) for r in results]},
                              indent=2) + "\n")
    tmp.replace(out)


def _read_results(out: Path, real_folds: int, protocol: dict[str, list[str]] | None = None) -> list[CandidateResult]:
    """Rows of an earlier report with the same fold count and protocol (for ``--resume``)."""
    if not out.is_file():
        return []
    report = json.loads(out.read_text())
    if report.get("real_folds") != real_folds:
        logger.warning("%s has real_folds=%s, not %d: not resumed", out, report.get("real_folds"), real_folds)
        return []
    if report.get("protocol", {}) != (protocol or {}):
        logger.warning("%s was run with %s, not %s: not resumed", out, report.get("protocol", {}), protocol or {})
        return []
    rows = []
    for r in report["results"]:
        fields = {k: v for k, v in r.items() if k not in ("summary", "real_summary")}
        fields["fake_groups"] = tuple(GroupScore(**g) for g in fields["fake_groups"])
        fields["real_groups"] = tuple(GroupScore(**g) for g in fields["real_groups"])
        rows.append(CandidateResult(**fields))
    return rows


def main(argv: list[str] | None = None) -> int:
    from vidfake.training.features import CANDIDATES, DEFAULT_CACHE

    p = argparse.ArgumentParser(prog="python -m vidfake.training.loso", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("VIDFAKE_DATA", "../shared/data"),
                   help="folder with manifest.csv (default: %(default)s)")
    def candidate(name: str) -> str:
        if not all(part in CANDIDATES for part in name.split("+")):
            raise argparse.ArgumentTypeError(f"unknown candidate {name!r}; choose from {sorted(CANDIDATES)} "
                                             "or join them with '+'")
        return name

    p.add_argument("--candidate", action="append", type=candidate,
                   help="feature candidate (repeatable; 'a+b' joins two; default: every cached one)")
    p.add_argument("--head", action="append", choices=sorted(HEADS), help="head (repeatable; default: logreg, mlp)")
    p.add_argument("--real-folds", type=int, default=DEFAULT_REAL_FOLDS,
                   help="folds the real groups are dealt into (default: %(default)s)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="feature cache root (default: %(default)s)")
    p.add_argument("--out", default=None, help="JSON report (default: runs/loso_images_<date>.json)")
    p.add_argument("--resume", action="store_true", help="keep rows already in --out, run the others")
    p.add_argument("--aux-sbi", action="store_true",
                   help="also train on self-blends of the training reals that have a face as extra fakes "
                        "(the candidate's blend features, AUX_SBI, must be cached); rows are named "
                        "'<candidate> +sbi'")
    p.add_argument("--exclude-group", action="append", default=[], metavar="GROUP",
                   help="leave this source group out of training and scoring alike (repeatable), e.g. "
                        "'ImageNet samples': reals the frozen ImageNet trunk was trained on")
    p.add_argument("--train-only-group", action="append", default=[], metavar="GROUP",
                   help="always train on this source group and never score it (repeatable), e.g. 'ImageNet "
                        "samples': the frozen ImageNet trunk was trained on them, so they are no unseen source")
    p.add_argument("--per-group", action="append", default=[], metavar="CANDIDATE:HEAD",
                   help="also print per-group AUCs of this candidate and head")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from threadpoolctl import threadpool_limits

    from vidfake.training.data import read_manifest
    from vidfake.training.features import load_features
    from vidfake.training.groups import assign_groups

    items = read_manifest(args.data, kind="image")
    groups = assign_groups(items)
    unknown = (set(args.exclude_group) | set(args.train_only_group)) - set(groups)
    if unknown:
        p.error(f"--exclude-group/--train-only-group: no such group {sorted(unknown)}; groups: "
                f"{sorted(set(groups))}")
    if args.exclude_group:
        keep = [g not in args.exclude_group for g in groups]
        items = [i for i, k in zip(items, keep, strict=True) if k]
        groups = [g for g, k in zip(groups, keep, strict=True) if k]
        logger.info("--exclude-group: %d items left out", keep.count(False))
    labels = np.array([i.label for i in items])
    folds = None
    if args.train_only_group:  # the folds of the other groups; the train-only ones sit in every training part
        scored = ~np.isin(groups, args.train_only_group)
        folds = make_folds(labels[scored], np.asarray(groups)[scored], args.real_folds)
    heads = args.head or ["logreg", "mlp"]
    out = Path(args.out or f"runs/loso_images_{date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    protocol = {k: sorted(v) for k, v in (("exclude_group", args.exclude_group),
                                           ("train_only_group", args.train_only_group)) if v}
    results = _read_results(out, args.real_folds, protocol) if args.resume else []
    done = {(r.candidate, r.head) for r in results}
    with threadpool_limits(1):  # one core stays free for the others on a 2-core machine
        for cand in args.candidate or list(CANDIDATES):
            if cand in AUX_SBI.values():  # blends of some items only: the --aux-sbi rows, not a candidate
                continue
            aux = None
            if args.aux_sbi:
                if cand not in AUX_SBI:
                    logger.warning("skipping %s: --aux-sbi has blends for %s only", cand, sorted(AUX_SBI))
                    continue
                try:
                    blends = load_features(items, AUX_SBI[cand], root=args.cache)
                except KeyError as e:
                    logger.warning("skipping %s: %s", cand, e)
                    continue
                real_face = (labels == 0) & np.isfinite(blends).all(axis=(1, 2))
                aux = (blends[real_face], np.asarray(groups)[real_face])
                logger.info("--aux-sbi: %d self-blended reals as extra fakes", int(real_face.sum()))
            name = f"{cand} +sbi" if aux is not None else cand
            todo = [h for h in ([None] if cand == "shipped_detector" else heads)
                    if (name, h or "reference") not in done]
            if not todo:
                continue
            try:
                x = load_features(items, cand, root=args.cache)
            except KeyError as e:
                logger.warning("skipping %s: %s", cand, e)
                continue
            for head in todo:
                r = evaluate(x, labels, groups, head, candidate=name, real_folds=args.real_folds, aux=aux,
                             folds=folds)
                logger.info("%s / %s: %s (%.0f s)", cand, r.head, r.summary(), r.seconds)
                results.append(r)
                _write_results(out, results, args.real_folds, protocol)  # after each row: a killed run resumes
    _write_results(out, results, args.real_folds, protocol)
    print(markdown_table(results))
    for spec in args.per_group:
        cand, _, head = spec.partition(":")
        for r in results:
            if r.candidate == cand and r.head == (head or r.head):
                print()
                print(group_table(r))
    logger.info("report: %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
