"""The shipped SMGCN prescriptions: vocabularies, multi-hot matrices and a seeded split.

Everything is read from the package (``data/``), never from outside it, so a fresh
clone and an installed wheel behave the same.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

DATA_DIR = Path(__file__).resolve().parent / "data"  # shipped in the wheel with the code
PRESCRIPTIONS_FILE = "smgcn_prescriptions.txt.gz"
SYMPTOMS_FILE = "sym_mapping.txt"
HERBS_FILE = "herb_mapping.txt"

SPLIT_SEED = 20201  # ICDE 2020, first split
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.1

Matrix = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Names indexed by id (the SMGCN ids are 0..n-1, dense)."""

    names: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


@dataclass(frozen=True, slots=True)
class Prescriptions:
    """Symptom-id sets and herb-id sets, one pair per prescription, in file order."""

    symptoms: tuple[tuple[int, ...], ...]
    herbs: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.symptoms)


@dataclass(frozen=True, slots=True)
class Split:
    """Row indices of each part; disjoint and together every prescription."""

    seed: int
    train: NDArray[np.int64]
    validation: NDArray[np.int64]
    test: NDArray[np.int64]

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def _read(name: str) -> bytes:
    return (DATA_DIR / name).read_bytes()


def _vocabulary(name: str) -> Vocabulary:
    pairs = [line.split() for line in _read(name).decode("utf-8").splitlines() if line.strip()]
    by_id = {int(i): n for n, i in pairs}
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"{name}: ids are not 0..{len(by_id) - 1}")
    return Vocabulary(tuple(by_id[i] for i in range(len(by_id))))


@cache
def symptom_vocabulary() -> Vocabulary:
    return _vocabulary(SYMPTOMS_FILE)


@cache
def herb_vocabulary() -> Vocabulary:
    return _vocabulary(HERBS_FILE)


def prescriptions_text() -> bytes:
    return gzip.decompress(_read(PRESCRIPTIONS_FILE))


def data_sha256() -> str:
    """Hash of the uncompressed prescriptions (matches PROVENANCE.md)."""
    return hashlib.sha256(prescriptions_text()).hexdigest()


@cache
def load_prescriptions() -> Prescriptions:
    symptoms: list[tuple[int, ...]] = []
    herbs: list[tuple[int, ...]] = []
    for line in prescriptions_text().decode("utf-8").splitlines():
        if not line.strip():
            continue
        left, right = line.split("\t")
        symptoms.append(tuple(int(s) for s in left.split()))
        herbs.append(tuple(int(h) for h in right.split()))
    return Prescriptions(tuple(symptoms), tuple(herbs))


def split(n: int, seed: int = SPLIT_SEED) -> Split:
    """A seeded random permutation cut into test, validation and train (10/10/80 %)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(n * TEST_FRACTION)
    n_validation = int(n * VALIDATION_FRACTION)
    return Split(
        seed=seed,
        test=np.sort(order[:n_test]),
        validation=np.sort(order[n_test : n_test + n_validation]),
        train=np.sort(order[n_test + n_validation :]),
    )


def multi_hot(sets: tuple[tuple[int, ...], ...], rows: NDArray[np.int64], width: int) -> Matrix:
    """One row per selected set with 1.0 at its members."""
    matrix = np.zeros((len(rows), width), dtype=np.float32)
    for r, i in enumerate(rows):
        matrix[r, list(sets[i])] = 1.0
    return matrix
