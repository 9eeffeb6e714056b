"""Activation clustering: a poisoned class splits in two in the model's activations."""

from __future__ import annotations

import numpy as np

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.defences.data.base import DataDefence, activations

__all__ = ["ActivationClustering"]


@register_defence(
    "activation-clustering",
    family="poisoning",
    defence_kind="sanitizer",
    access=Access.WHITE_BOX,
    techniques=("AML.T0020", "AML.T0018.000"),
    mitigations=("AML.M0007",),
    data_kinds=("image", "tabular"),
)
class ActivationClustering(DataDefence):
    """Cluster each class's activations in two; a small, well-separated cluster is poison.

    Paper: Chen, Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy, Srivastava, "Detecting
    Backdoor Attacks on Deep Neural Networks by Activation Clustering", 2018,
    arXiv:1811.03728.

    Per class, the penultimate activations are reduced to ``components`` dimensions (PCA)
    and split by 2-means. A class whose smaller cluster holds less than ``max_size`` of it
    and whose split has a silhouette above ``min_silhouette`` is a candidate. With
    ``reclassify`` (the default), a candidate is judged poisoned only when its smaller
    cluster fails the paper's exclusionary reclassification, done cheaply: a k-nearest-
    neighbour classifier on the *inputs*, fitted on every sample outside that cluster, gives
    the cluster's members their own label less than ``max_agreement`` of the time. Dirty-label
    poison is made of other classes' images, so its neighbours outvote its label (about 2%
    agreement on the MNIST subset); a clean class that merely splits in two styles keeps its
    label (30% or more). The smaller cluster of a poisoned class is flagged, and so is any
    other sample of that class whose input-space neighbours (itself left out) vote more for
    another class than for its own: poison that clustered with the clean samples. The score
    of a sample is the class's silhouette times how much closer the sample lies to the
    smaller cluster's centre than to the larger one's (in [-1, 1]), plus 2 for a flagged
    cluster and 1.5 for the outvoted samples, so it ranks the flagged samples first.

    Threat: dirty-label backdoors; needs the model trained on the suspect data (white-box).
    Clean-label poison looks like its label in input space, so reclassification clears it:
    screen for it with ``reclassify=False``.

    Args:
        components: PCA dimensions before clustering (10).
        max_size: the largest share of a class the poison cluster may hold (0.35).
        min_silhouette: the least silhouette of a poisoned class's split (0.15).
        reclassify: confirm a candidate by exclusionary reclassification (True).
        max_agreement: the largest share of a poisoned cluster that its input-space
            neighbours give its own label (0.3).
        neighbours: the k of that classifier (10).
        seed: seed of the clustering (0).

    Example::

        defence = ActivationClustering().fit(poisoned.x, poisoned.y, model=model)
    """

    needs_model = True

    def __init__(
        self,
        *,
        components: int = 10,
        max_size: float = 0.35,
        min_silhouette: float = 0.15,
        reclassify: bool = True,
        max_agreement: float = 0.3,
        neighbours: int = 10,
        seed: int = 0,
    ) -> None:
        self.components = components
        self.max_size = max_size
        self.min_silhouette = min_silhouette
        self.reclassify = reclassify
        self.max_agreement = max_agreement
        self.neighbours = neighbours
        self.seed = seed

    def _check_params(self) -> None:
        if self.components < 1:
            raise ConfigError(f"components must be at least 1, got {self.components}")
        if not 0 < self.max_size <= 0.5:
            raise ConfigError(f"max_size must be in (0, 0.5], got {self.max_size}")
        if not 0 < self.max_agreement < 1:
            raise ConfigError(f"max_agreement must be in (0, 1), got {self.max_agreement}")
        if self.neighbours < 1:
            raise ConfigError(f"neighbours must be at least 1, got {self.neighbours}")

    def _score(
        self, x: np.ndarray, y: np.ndarray, model: Target | None
    ) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from sklearn.metrics import silhouette_score

        if model is None:
            raise ConfigError("activation clustering needs the model trained on the data")
        feats = activations(model, x)
        scores = np.zeros(len(y))
        flagged = np.zeros(len(y), dtype=bool)
        self.classes_: dict[int, dict[str, float]] = {}
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            if len(idx) < 4:
                continue
            k = min(self.components, len(idx) - 1, feats.shape[1])
            reduced = PCA(n_components=k, random_state=self.seed).fit_transform(feats[idx])
            km = KMeans(n_clusters=2, n_init=5, random_state=self.seed).fit(reduced)
            sizes = np.bincount(km.labels_, minlength=2)
            if sizes.min() == 0:
                continue
            small = int(np.argmin(sizes))
            silhouette = float(silhouette_score(reduced, km.labels_))
            share = float(sizes[small] / len(idx))
            d = np.linalg.norm(reduced[:, None, :] - km.cluster_centers_[None], axis=2)
            closer = (d[:, 1 - small] - d[:, small]) / np.maximum(d.sum(axis=1), 1e-12)
            scores[idx] = silhouette * closer
            members = idx[km.labels_ == small]
            poisoned = share < self.max_size and silhouette > self.min_silhouette
            agreement = float("nan")
            stray = np.zeros(0, dtype=np.int64)
            if poisoned and self.reclassify:
                agreement, stray = self._reclassify(x, y, members, idx, int(c))
                poisoned = agreement < self.max_agreement
            if poisoned:
                flagged[members] = True
                # the flagged cluster of a poisoned class ranks above every unflagged sample
                scores[members] += 2.0
                # poison that clustered with the clean samples, caught by the same vote
                flagged[stray] = True
                scores[stray] += 1.5
            self.classes_[int(c)] = {
                "silhouette": silhouette,
                "small_share": share,
                "poisoned": float(poisoned),
                "agreement": agreement,
            }
        return scores, flagged

    def _reclassify(
        self, x: np.ndarray, y: np.ndarray, members: np.ndarray, idx: np.ndarray, label: int
    ) -> tuple[float, np.ndarray]:
        """Exclusionary reclassification without retraining the model: a k-NN on the inputs
        of every sample outside the small cluster ``members`` of class ``label``. Returns the
        share of ``members`` it labels ``label``, and the rest of the class (``idx``) whose
        neighbours, the sample itself left out, outvote ``label``."""
        from sklearn.neighbors import KNeighborsClassifier

        flat = x.reshape(len(x), -1)
        rest = np.ones(len(y), dtype=bool)
        rest[members] = False
        k = min(self.neighbours, int(rest.sum()) - 1)
        if k < 1:
            return float("nan"), np.zeros(0, dtype=np.int64)
        knn = KNeighborsClassifier(n_neighbors=k).fit(flat[rest], y[rest])
        agreement = float((knn.predict(flat[members]) == label).mean())
        others = idx[rest[idx]]
        if len(others) == 0:
            return agreement, others
        _, near = knn.kneighbors(flat[others], n_neighbors=k + 1)
        votes = y[rest][near[:, 1:]]
        own = (votes == label).sum(axis=1)
        best_other = np.array([np.bincount(v[v != label], minlength=1).max() for v in votes])
        return agreement, others[best_other > own]
