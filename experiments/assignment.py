"""Randomised assignment to arms, blocked by stratum (the sending organisation), and promotion codes.

Pure module: numpy and the standard library only.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

# No 0/O, 1/I/L, 5/S or 2/Z pairs: codes are read aloud at box offices and typed from e-mails.
CODE_ALPHABET = "ABCDEFGHJKMNPQRTUVWXY3456789"
CODE_LENGTH = 10  # 28**10 ≈ 3e14 codes: guessing one is hopeless


@dataclass(frozen=True)
class Assignment:
    """Arm of each unit, in the order of the ``units`` given."""

    units: np.ndarray
    strata: np.ndarray
    arms: np.ndarray  # arm index per unit
    arm_names: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        return {name: int((self.arms == i).sum()) for i, name in enumerate(self.arm_names)}

    def counts_by_stratum(self) -> dict[Hashable, dict[str, int]]:
        result: dict[Hashable, dict[str, int]] = {}
        for stratum in np.unique(self.strata):
            mask = self.strata == stratum
            result[stratum.item() if hasattr(stratum, "item") else stratum] = {
                name: int((self.arms[mask] == i).sum()) for i, name in enumerate(self.arm_names)}
        return result


def _stratum_seed(seed: int, stratum: Hashable) -> list[int]:
    # A stable hash (Python's hash() is salted per process) so reruns give the same draw.
    digest = hashlib.sha256(repr(stratum).encode()).digest()
    return [int(seed) & 0xFFFFFFFF, int.from_bytes(digest[:4], "big")]


def planned_counts(n: int, shares: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Split ``n`` units into arms as close to ``shares`` as integers allow.

    Largest remainder: each arm gets floor(n·share); the leftover units go to the arms with the
    largest fractional parts, ties broken at random so no arm is favoured across strata.
    """
    shares = np.asarray(shares, dtype=float)
    shares = shares / shares.sum()
    exact = n * shares
    counts = np.floor(exact).astype(np.int64)
    leftover = n - int(counts.sum())
    if leftover:
        remainders = exact - counts
        order = np.lexsort((rng.random(len(shares)), -remainders))
        counts[order[:leftover]] += 1
    return counts


def assign(units: Sequence[int], strata: Sequence[Hashable], shares: Sequence[float], seed: int,
           arm_names: Sequence[str] | None = None) -> Assignment:
    """Randomise ``units`` into arms with the planned ``shares``, blocked by ``strata``.

    Within each stratum the units are sorted (so the input order does not matter), shuffled
    with a generator seeded by (seed, stratum), and cut into arms of ``planned_counts``: every
    stratum keeps the planned shares to within one unit, and the same seed gives the same
    assignment. Each unit must appear once.
    """
    units = np.asarray(units, dtype=np.int64)
    strata_arr = np.asarray(strata)
    if len(units) != len(strata_arr):
        raise ValueError("units and strata must have the same length")
    if len(np.unique(units)) != len(units):
        raise ValueError("a unit appears more than once")
    if len(shares) < 2 or min(shares) <= 0:
        raise ValueError("at least two arms with positive shares are needed")
    names = tuple(arm_names) if arm_names is not None else tuple(str(i) for i in range(len(shares)))
    arms = np.empty(len(units), dtype=np.int16)
    for stratum in np.unique(strata_arr):
        index = np.flatnonzero(strata_arr == stratum)
        index = index[np.argsort(units[index], kind="stable")]
        rng = np.random.default_rng(_stratum_seed(seed, stratum.item() if hasattr(stratum, "item") else stratum))
        counts = planned_counts(len(index), shares, rng)
        labels = np.repeat(np.arange(len(shares), dtype=np.int16), counts)
        rng.shuffle(labels)
        arms[index] = labels
    return Assignment(units=units, strata=strata_arr, arms=arms, arm_names=names)


def new_code(length: int = CODE_LENGTH) -> str:
    """One unguessable promotion code from the unambiguous alphabet (cryptographic randomness)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def unique_codes(count: int, taken: set[str] | frozenset[str] = frozenset(), length: int = CODE_LENGTH) -> list[str]:
    """``count`` distinct codes, none of them in ``taken``."""
    codes: set[str] = set()
    while len(codes) < count:
        for _ in range(count - len(codes)):
            code = new_code(length)
            if code not in taken:
                codes.add(code)
    return list(codes)
