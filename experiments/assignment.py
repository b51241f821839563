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
                name: int((self.arms[mask] == i).sum()) for i, name in enumerate(self.arm_names)
            }
        return result


def _stratum_seed(seed: int, stratum: Hashable) -> list[int]:
    # A stable hash (Python's hash() is salted per process) so reruns give the same draw.
    digest = hashlib.sha256(repr(stratum).encode()).digest()
    return [int(seed) & 0xFFFFFFFF, int.from_bytes(digest[:4], "big")]


#: The version of the algorithm :func:`assign` uses for new experiments (stored with each one, so
#: that verifying an older experiment redraws it with the algorithm that drew it):
#: 1 = largest-remainder rounding (:func:`planned_counts`), 2 = randomised rounding
#: (:func:`randomised_counts`).
ASSIGNMENT_VERSION = 2
ASSIGNMENT_VERSIONS = (1, 2)


def _whole_parts(n: int, shares: Sequence[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """Each arm's exact count n·share (shares normalised), its floor, and the units left over."""
    weights = np.asarray(shares, dtype=float)
    exact = n * (weights / weights.sum())
    counts = np.floor(exact).astype(np.int64)
    return exact, counts, n - int(counts.sum())


def randomised_counts(n: int, shares: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Split ``n`` units into arms so that each arm's expected count is exactly n·share (version 2).

    Each arm gets floor(n·s_i) plus one more with probability equal to its fractional part f_i
    (Σf_i = L, the leftover units, an integer): systematic sampling over the f_i laid end to end in
    a random order, from a uniform start u, gives arm i the extra unit when some u + j (j integer)
    falls in its stretch, which happens with probability f_i exactly, and hands out L extras in all.
    The units being shuffled afterwards, each unit's probability of arm i is E[count_i]/n = s_i,
    in tiny strata too; counts stay within one unit of n·s_i.
    """
    exact, counts, leftover = _whole_parts(n, shares)
    if leftover:
        frac = np.clip(exact - counts, 0.0, 1.0)
        order = rng.permutation(len(shares))
        stretch = frac[order] * (leftover / frac.sum())  # Σ exactly L despite rounding
        ends = np.cumsum(stretch)
        starts = ends - stretch
        u = rng.random()
        # arm gets an extra unit when an integer-spaced point u + j lies in [start, end)
        extra = np.floor(ends - u) - np.floor(starts - u) > 0
        counts[order[extra]] += 1
        # guard against floating-point edge cases: exactly ``leftover`` extras
        while counts.sum() > n:
            counts[order[extra][-1]] -= 1
            extra[np.flatnonzero(extra)[-1]] = False
        while counts.sum() < n:
            counts[order[~extra][0]] += 1
            extra[np.flatnonzero(~extra)[0]] = True
    return counts


def planned_counts(n: int, shares: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Split ``n`` units into arms as close to ``shares`` as integers allow (version 1).

    Largest remainder: each arm gets floor(n·share); the leftover units go to the arms with the
    largest fractional parts, ties broken at random so no arm is favoured across strata. Kept to
    verify experiments drawn with it: a unit's probability of an arm is not its share in small
    strata (one unit, shares 0.6/0.4: always the first arm), hence :func:`randomised_counts`.
    """
    exact, counts, leftover = _whole_parts(n, shares)
    if leftover:
        remainders = exact - counts
        order = np.lexsort((rng.random(len(shares)), -remainders))
        counts[order[:leftover]] += 1
    return counts


def assign(
    units: Sequence[int],
    strata: Sequence[Hashable],
    shares: Sequence[float],
    seed: int,
    arm_names: Sequence[str] | None = None,
    version: int = ASSIGNMENT_VERSION,
) -> Assignment:
    """Randomise ``units`` into arms with the planned ``shares``, blocked by ``strata``.

    Within each stratum the units are sorted (so the input order does not matter), shuffled
    with a generator seeded by (seed, stratum), and cut into arms of :func:`randomised_counts`
    (``version`` 2, the default: every unit's probability of each arm is its planned share) or
    :func:`planned_counts` (``version`` 1, largest remainder, for experiments drawn with it):
    every stratum keeps the planned shares to within one unit, and the same seed and version give
    the same assignment. Each unit must appear once.
    """
    if version not in ASSIGNMENT_VERSIONS:
        raise ValueError(f"unknown assignment algorithm version {version!r}")
    split = randomised_counts if version == 2 else planned_counts
    units = np.asarray(units, dtype=np.int64)
    strata_arr = np.asarray(strata)
    if len(units) != len(strata_arr):
        raise ValueError("units and strata must have the same length")
    if len(shares) < 2 or min(shares) <= 0:
        raise ValueError("at least two arms with positive shares are needed")
    names = tuple(arm_names) if arm_names is not None else tuple(str(i) for i in range(len(shares)))
    arms = np.empty(len(units), dtype=np.int16)
    if len(units) == 0:
        return Assignment(units=units, strata=strata_arr, arms=arms, arm_names=names)
    # One sort by (stratum, unit) instead of a scan of every unit per stratum: the same order
    # within each stratum as sorting it alone, so the draw does not depend on the input order.
    labels_of, stratum_codes = np.unique(strata_arr, return_inverse=True)
    stratum_codes = stratum_codes.reshape(-1)
    order = np.lexsort((units, stratum_codes))
    plain = np.sort(units)
    if (plain[1:] == plain[:-1]).any():
        raise ValueError("a unit appears more than once")
    bounds = np.searchsorted(stratum_codes[order], np.arange(len(labels_of) + 1))
    for j, stratum in enumerate(labels_of):
        index = order[bounds[j] : bounds[j + 1]]
        rng = np.random.default_rng(_stratum_seed(seed, stratum.item() if hasattr(stratum, "item") else stratum))
        counts = split(len(index), shares, rng)
        labels = np.repeat(np.arange(len(shares), dtype=np.int16), counts)
        rng.shuffle(labels)
        arms[index] = labels
    return Assignment(units=units, strata=strata_arr, arms=arms, arm_names=names)


def new_code(length: int = CODE_LENGTH) -> str:
    """One unguessable promotion code from the unambiguous alphabet (cryptographic randomness)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def _random_codes(count: int, length: int) -> list[str]:
    """``count`` codes drawn uniformly from the alphabet, from the system's cryptographic source.

    Random bytes are mapped to letters by rejection (bytes at or above the largest multiple of
    the alphabet size are dropped), so every letter is equally likely; vectorised, it makes
    500,000 codes in a fraction of a second where one ``secrets.choice`` per letter takes seconds.
    """
    base = len(CODE_ALPHABET)
    limit = 256 - 256 % base
    alphabet = np.frombuffer(CODE_ALPHABET.encode("ascii"), dtype=np.uint8)
    needed = count * length
    letters = np.empty(0, dtype=np.uint8)
    while letters.size < needed:
        raw = np.frombuffer(secrets.token_bytes(int((needed - letters.size) * 1.15) + 64), dtype=np.uint8)
        letters = np.concatenate([letters, raw[raw < limit] % base])
    chars = alphabet[letters[:needed]].reshape(count, length)
    text = chars.tobytes().decode("ascii")
    return [text[i : i + length] for i in range(0, count * length, length)]


def unique_codes(count: int, taken: set[str] | frozenset[str] = frozenset(), length: int = CODE_LENGTH) -> list[str]:
    """``count`` distinct codes, none of them in ``taken``."""
    codes: set[str] = set()
    ordered: list[str] = []
    while len(ordered) < count:
        for code in _random_codes(count - len(ordered), length):
            if code not in taken and code not in codes:
                codes.add(code)
                ordered.append(code)
    return ordered
