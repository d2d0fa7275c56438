"""Cross-validation splits as pure functions of (sections, patients, seed).

``section``: leave one section out (the paper's protocol; sections of the held-out
patient stay in training, which leaks patient identity). ``patient``: leave one patient out
(the leak-free protocol). Within the remaining data, each trial draws a random 4:1
train/validation split of spots, seeded by (seed, fold, trial).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hagekit.errors import ConfigError

__all__ = ["Fold", "SPLITS", "make_folds", "train_val_split", "trial_seed"]

SPLITS = ("section", "patient")


@dataclass(frozen=True)
class Fold:
    """One held-out unit: ``name`` (a section or patient), its test and training sections."""

    name: str
    test_sections: tuple[str, ...]
    train_sections: tuple[str, ...]
    #: Training sections from the held-out sections' own patient (a leak under ``section``).
    same_patient_in_train: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "test_sections": list(self.test_sections),
            "train_sections": list(self.train_sections),
            "same_patient_in_train": list(self.same_patient_in_train),
        }


def make_folds(
    patients: Mapping[str, str],
    *,
    split: str = "section",
    folds: Sequence[str] | None = None,
) -> list[Fold]:
    """Build folds from ``{section: patient}``; ``folds`` picks held-out units by name.

    Under ``split="patient"`` a fold may be named by the patient or by one of its sections.
    """
    if split not in SPLITS:
        raise ConfigError(f"--split: unknown split {split!r} (choose from {', '.join(SPLITS)})")
    sections = sorted(patients)
    if len(sections) < 2:
        raise ConfigError(f"need at least 2 sections for cross-validation, got {len(sections)}")
    if split == "section":
        units = {s: (s,) for s in sections}
    else:
        units = {}
        for s in sections:
            units.setdefault(patients[s], ())
            units[patients[s]] += (s,)
        if len(units) < 2:
            raise ConfigError(
                f"--split patient needs at least 2 patients, got {len(units)} ({', '.join(units)}); "
                "use --split section"
            )
    chosen = list(units)
    if folds:
        chosen = []
        for name in folds:
            if name in units:
                chosen.append(name)
            elif split == "patient" and name in patients:
                chosen.append(patients[name])
            else:
                raise ConfigError(
                    f"--folds: {name!r} is not a {split} of this dataset (choose from {', '.join(units)})"
                )
        chosen = list(dict.fromkeys(chosen))
    out = []
    for name in chosen:
        test = units[name]
        train = tuple(s for s in sections if s not in test)
        test_patients = {patients[s] for s in test}
        leak = tuple(s for s in train if patients[s] in test_patients)
        out.append(Fold(name, test, train, leak))
    return out


def trial_seed(seed: int, fold: str, trial: int) -> int:
    """A stable 32-bit seed for (seed, fold, trial), independent of Python's hash salt."""
    digest = hashlib.sha256(f"{seed}|{fold}|{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def train_val_split(
    n: int, *, seed: int, fold: str = "", trial: int = 0, val_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation index split of ``n`` spots (4:1 by default), sorted."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction: must be in (0, 1), got {val_fraction}")
    if n < 2:
        raise ConfigError(f"need at least 2 training spots, got {n}")
    rng = np.random.default_rng(trial_seed(seed, fold, trial))
    perm = rng.permutation(n)
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
