"""The evaluation gate: the promotion rule of a fine-tuned candidate.

The current version and the candidate are scored by the same next-item retrieval on the same
held-out examples and catalogue (`encoder.retrieval`); `paired_bootstrap` resamples users to put a
confidence interval on the gain, and `gate` promotes only when the interval's lower bound is above
the margin (default 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from encoder.retrieval import RetrievalMetrics


@dataclass(frozen=True)
class GainInterval:
    """A paired bootstrap of the NDCG@k gain (candidate - current) over users."""

    gain: float
    lower: float
    upper: float
    confidence: float
    resamples: int
    users: int
    queries: int
    seed: int
    metric: str = "ndcg_at_10"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> GainInterval:
        return cls(
            gain=float(d["gain"]),
            lower=float(d["lower"]),
            upper=float(d["upper"]),
            confidence=float(d["confidence"]),
            resamples=int(d["resamples"]),
            users=int(d["users"]),
            queries=int(d["queries"]),
            seed=int(d["seed"]),
            metric=str(d.get("metric", "ndcg_at_10")),
        )

    def describe(self) -> str:
        return (
            f"{self.metric} gain {self.gain:+.4f}, {self.confidence:.0%} CI "
            f"[{self.lower:+.4f}, {self.upper:+.4f}] over {self.users} users "
            f"({self.queries} queries)"
        )


def paired_bootstrap(
    users: Sequence[str],
    before: np.ndarray,
    after: np.ndarray,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> GainInterval:
    """Percentile bootstrap of the mean per-query gain ``after - before``, resampling users.

    ``before[q]``/``after[q]`` are query ``q``'s figures under the two encoders and ``users[q]`` its
    user. Each resample draws as many users as there are, with replacement, and takes the mean gain
    over all their queries (a user drawn twice counts twice), so the interval reflects how much the
    gain depends on which customers happened to be held out, not only on which baskets. Seeded:
    the same inputs give the same interval.
    """
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if b.shape != a.shape or len(users) != len(b):
        raise ValueError("before, after and users must have one entry per query")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if len(b) == 0:
        return GainInterval(0.0, 0.0, 0.0, confidence, resamples, 0, 0, seed)
    codes: dict[str, int] = {}
    owner = np.array([codes.setdefault(u, len(codes)) for u in users])
    n_users = len(codes)
    gain_sum = np.bincount(owner, weights=a - b, minlength=n_users)
    count = np.bincount(owner, minlength=n_users).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples, dtype=np.float64)
    step = max(1, 4_000_000 // max(1, n_users))  # bound the index matrix's memory
    for start in range(0, resamples, step):
        m = min(step, resamples - start)
        pick = rng.integers(0, n_users, size=(m, n_users))
        draws[start : start + m] = gain_sum[pick].sum(axis=1) / count[pick].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(draws, [alpha, 1.0 - alpha])
    return GainInterval(
        gain=float((a - b).mean()),
        lower=float(lower),
        upper=float(upper),
        confidence=confidence,
        resamples=resamples,
        users=n_users,
        queries=len(b),
        seed=seed,
    )


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def gate(
    before: RetrievalMetrics,
    after: RetrievalMetrics,
    margin: float = 0.0,
    *,
    min_examples: int = 1,
    interval: GainInterval | None = None,
) -> GateDecision:
    """The promotion rule; both figures must be measured on the same, non-empty held-out set.

    With ``interval`` (the paired bootstrap of the gain): promote only when its lower bound is
    above ``margin``. Without it (a run record of an older version): the NDCG@10 gain must be at
    least ``margin`` and HR@10 must not fall.
    """
    if before.examples != after.examples or before.catalog != after.catalog:
        return GateDecision(False, "metrics measured on different held-out sets")
    if after.examples < min_examples:
        return GateDecision(False, f"too few held-out examples ({after.examples} < {min_examples})")
    if interval is not None:
        if interval.lower > margin:
            return GateDecision(True, f"{interval.describe()}: lower bound > {margin:.4f}")
        return GateDecision(False, f"{interval.describe()}: lower bound not above {margin:.4f}")
    gain = after.ndcg_at_10 - before.ndcg_at_10
    if gain < margin:
        return GateDecision(False, f"ndcg@10 gain {gain:+.4f} below margin {margin:.4f}")
    if after.hr_at_10 < before.hr_at_10:
        return GateDecision(False, f"hr@10 fell {before.hr_at_10:.4f} -> {after.hr_at_10:.4f}")
    return GateDecision(True, f"ndcg@10 gain {gain:+.4f} >= margin {margin:.4f}")
