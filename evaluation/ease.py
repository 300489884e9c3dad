"""The ``ease`` baseline (protocol v1.1, Steck 2019 "Embarrassingly Shallow Autoencoders"). Pure.

X[u, i] = log1p(sum of the type weights of u's events on i before d) (browse 1, click 2,
add_to_cart 3, purchase 5, return 0); G = XᵀX + λI, λ = 200; P = G⁻¹; B = −P / diag(P) column-wise,
diag(B) = 0; a user's scores are X[u] B. With more than ``max_items`` items it runs on the
``max_items`` items with the most interacting users before d (ties by item order); the others rank
last. Recomputed for every test day.

Fast and exact to float32 rounding: B is never formed. With L the Cholesky factor of G (float32
LAPACK), X_u P comes from two triangular solves for the day's users only, and diag(P) from the
column norms of L⁻¹, so a day costs one factorisation and one triangular inverse (about 2n³/3
flops against the 2n³ of an explicit inverse):

    score_i = −(X_u P)_i / P_ii + X_ui        (the + X_ui removes the diagonal term)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from evaluation.protocol import Interaction

EASE_WEIGHTS: dict[str, float] = {
    "browse": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "return": 0.0,
}
EASE_LAMBDA = 200.0
EASE_MAX_ITEMS = 8000


class Ease:
    """EASE's state, fed one day at a time (``add``), then ``prepare()`` and ``scores(users)``."""

    def __init__(
        self,
        item_index: Mapping[str, int],
        user_index: Mapping[str, int],
        *,
        lam: float = EASE_LAMBDA,
        max_items: int = EASE_MAX_ITEMS,
        weights: Mapping[str, float] = EASE_WEIGHTS,
    ) -> None:
        self.item_index = item_index
        self.user_index = user_index
        self.n_items = len(item_index)
        self.lam = lam
        self.max_items = max_items
        self.weights = dict(weights)
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._x = sp.csr_matrix((len(user_index), self.n_items), dtype=np.float64)
        self._keep = np.zeros(0, dtype=np.int64)
        self._dinv = np.zeros(0, dtype=np.float32)
        self._chol = np.zeros((0, 0), dtype=np.float32)

    def add(self, events: Iterable[Interaction]) -> None:
        rows, cols, vals = [], [], []
        for e in events:
            rows.append(self.user_index[e.user_id])
            cols.append(self.item_index[e.item_id])
            vals.append(self.weights.get(e.type, 1.0))
        self._rows.append(np.asarray(rows, dtype=np.int64))
        self._cols.append(np.asarray(cols, dtype=np.int64))
        self._vals.append(np.asarray(vals, dtype=np.float64))

    def prepare(self) -> None:
        """Factorise G for everything added so far (all before the day asked next)."""
        shape = (len(self.user_index), self.n_items)
        r = sp.csr_matrix(
            (np.concatenate(self._vals), (np.concatenate(self._rows), np.concatenate(self._cols))),
            shape=shape,
        )
        r.sum_duplicates()
        users_per_item = np.bincount(r.indices, minlength=self.n_items)  # (r > 0) only: weights>=0
        users_per_item -= np.bincount(r.indices[r.data == 0], minlength=self.n_items)
        keep = np.argsort(-users_per_item, kind="stable")[: self.max_items]
        x = r.copy()
        x.data = np.log1p(x.data)
        self._x = x
        self._keep = keep
        xk = x[:, keep]
        g = (xk.T @ xk).toarray().astype(np.float32)
        g[np.diag_indices_from(g)] += self.lam
        chol, info = scipy.linalg.lapack.spotrf(g, lower=1, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: Cholesky failed ({info})")
        inv_l, info = scipy.linalg.lapack.strtri(chol, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: triangular inverse failed ({info})")
        diag_p = np.einsum("ij,ij->j", np.tril(inv_l), np.tril(inv_l))  # P = L⁻ᵀ L⁻¹
        self._chol = chol
        self._dinv = (1.0 / diag_p).astype(np.float32)

    def scores(self, users: Sequence[str]) -> np.ndarray:
        """One row of scores over all items per user; items outside the kept set get -inf."""
        out = np.full((len(users), self.n_items), -np.inf)
        if not len(users) or not len(self._keep):
            return out
        rows = [self.user_index[u] for u in users]
        xu = self._x[rows][:, self._keep].toarray().astype(np.float32)
        # X_u P = (L⁻ᵀ L⁻¹ X_uᵀ)ᵀ: two triangular solves with the day's users as right-hand sides
        y = scipy.linalg.solve_triangular(self._chol, xu.T, lower=True, check_finite=False)
        xp = scipy.linalg.solve_triangular(
            self._chol, y, lower=True, trans="T", check_finite=False
        ).T
        out[:, self._keep] = -xp * self._dinv + xu
        return out
