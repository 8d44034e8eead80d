"""The trained recommender as NumPy arrays: load, score, save.

Score of herb h for a symptom set S (see ``training.py`` for how it is fitted)::

    a · mean over the ensemble of sigmoid(MLP_m(multi-hot S))[h]
    + (1 − a) · mean over s ∈ S of P(h | s)
    + ε · P(h)                      (ties and symptoms unseen in training)

The first term is an ensemble of one-hidden-layer multi-label networks, the second the
symptom-conditional frequency baseline; both estimate P(h ∈ prescription | S), so
blending them is meaningful. Inference gathers the rows of the query's symptoms instead
of multiplying a multi-hot vector, so one query costs three small matrix-vector products.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medalliance.domains.recommender.dataset import DATA_DIR

MODEL_FILE = "model.npz"
METADATA_FILE = "model.json"
TIE_BREAK = 1e-6

Array = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class HerbModel:
    conditional: Array  # (symptoms, herbs): P(h | s) on the training part
    popularity: Array  # (herbs,): P(h) on the training part
    w1: Array  # (members, symptoms, hidden)
    b1: Array  # (members, hidden)
    w2: Array  # (members, hidden, herbs)
    b2: Array  # (members, herbs)
    blend: float  # a, the weight of the networks

    @property
    def n_symptoms(self) -> int:
        return int(self.conditional.shape[0])

    @property
    def n_herbs(self) -> int:
        return int(self.conditional.shape[1])

    def network_scores(self, x: Array) -> Array:
        """Mean sigmoid output of the ensemble for multi-hot rows ``x``."""
        total = np.zeros((x.shape[0], self.n_herbs), dtype=np.float32)
        for m in range(self.w1.shape[0]):
            hidden = np.maximum(x @ self.w1[m] + self.b1[m], 0.0)
            total += _sigmoid(hidden @ self.w2[m] + self.b2[m])
        mean: Array = total / self.w1.shape[0]
        return mean

    def conditional_scores(self, x: Array) -> Array:
        counts = np.maximum(x.sum(axis=1, keepdims=True), 1.0)
        mean: Array = (x @ self.conditional) / counts
        return mean

    def scores(self, x: Array) -> Array:
        """Scores for a batch of multi-hot symptom rows (evaluation, batch mode)."""
        blended = self.blend * self.network_scores(x)
        blended += (1.0 - self.blend) * self.conditional_scores(x)
        return blended + TIE_BREAK * self.popularity

    def score_one(self, symptom_ids: list[int]) -> Array:
        """Scores for one symptom set; gathers rows instead of multiplying zeros."""
        if not symptom_ids:
            raise ValueError("an empty symptom set has no recommendation")
        ids = np.asarray(symptom_ids, dtype=np.int64)
        networks = np.zeros(self.n_herbs, dtype=np.float32)
        for m in range(self.w1.shape[0]):
            hidden = np.maximum(self.w1[m][ids].sum(axis=0) + self.b1[m], 0.0)
            networks += _sigmoid(hidden @ self.w2[m] + self.b2[m])
        networks /= self.w1.shape[0]
        conditional = self.conditional[ids].mean(axis=0)
        result: Array = self.blend * networks + (1.0 - self.blend) * conditional
        return result + TIE_BREAK * self.popularity

    def save(self, directory: Path, metadata: dict[str, Any]) -> None:
        """Write ``model.npz`` (float16 weights, compressed) and ``model.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            directory / MODEL_FILE,
            conditional=self.conditional.astype(np.float16),
            popularity=self.popularity.astype(np.float32),
            w1=self.w1.astype(np.float16),
            b1=self.b1.astype(np.float16),
            w2=self.w2.astype(np.float16),
            b2=self.b2.astype(np.float16),
            blend=np.float32(self.blend),
        )
        text = json.dumps(metadata, ensure_ascii=False, indent=2, sort_keys=True)
        (directory / METADATA_FILE).write_text(text + "\n", encoding="utf-8")

    def rounded(self) -> HerbModel:
        """The model as it is after a save/load round trip (float16 weights)."""
        return HerbModel(
            conditional=_f16(self.conditional),
            popularity=self.popularity.astype(np.float32),
            w1=_f16(self.w1),
            b1=_f16(self.b1),
            w2=_f16(self.w2),
            b2=_f16(self.b2),
            blend=float(np.float32(self.blend)),
        )


def _f16(a: Array) -> Array:
    return a.astype(np.float16).astype(np.float32)


def _sigmoid(z: Array) -> Array:
    result: Array = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic
    return result


def load(path: Path) -> HerbModel:
    with np.load(path) as arrays:
        return HerbModel(
            conditional=arrays["conditional"].astype(np.float32),
            popularity=arrays["popularity"].astype(np.float32),
            w1=arrays["w1"].astype(np.float32),
            b1=arrays["b1"].astype(np.float32),
            w2=arrays["w2"].astype(np.float32),
            b2=arrays["b2"].astype(np.float32),
            blend=float(arrays["blend"]),
        )


def shipped_directory() -> Path:
    """The package's ``data/`` folder (a real directory: the package is not zipped)."""
    return DATA_DIR


def load_shipped() -> HerbModel:
    return load(shipped_directory() / MODEL_FILE)


def shipped_metadata() -> dict[str, Any]:
    text = (shipped_directory() / METADATA_FILE).read_text(encoding="utf-8")
    metadata: dict[str, Any] = json.loads(text)
    return metadata
