"""Implicit-feedback matrix factorization (Hu, Koren & Volinsky 2008) on top of ``implicit``.

A thin scikit-learn style wrapper around ``implicit.cpu.als.AlternatingLeastSquares``
(0.7 API: ``fit(user_items)`` takes the users x items CSR matrix; ``random_state``
seeds the factor initialisation through ``np.random.default_rng``). The CPU class is
used directly so that a machine with CUDA does not silently switch to the GPU solver,
whose results differ.

The BLAS thread pool is limited to one thread around construction and fit, as
``implicit`` asks: its own OpenMP loop already parallelises over users, and a
multi-threaded BLAS underneath it oversubscribes the cores and is much slower.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from proactive_recs.estimators.threads import single_threaded_blas

__all__ = ["ImplicitMF", "MFWarmStart", "warm_start_item_factors"]


def _seed_for_implicit(random_state):
    """Translate a scikit-learn style ``random_state`` into what implicit 0.7 accepts.

    implicit calls ``np.random.default_rng(random_state)``; its RandomState branch is
    broken in 0.7.3 (calls a non-existent ``rand_int``), so a RandomState is turned into
    an int seed here.
    """
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.Generator)):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a numpy RNG, got {random_state!r}")


class ImplicitMF:
    """Weighted alternating least squares for implicit feedback.

    Parameters
    ----------
    factors : int
        Latent dimension.
    regularization : float
        L2 penalty on the factors.
    alpha : float
        Confidence scale: observed pairs get confidence ``alpha * X[u, i]``.
    iterations : int
        Number of ALS sweeps (users then items).
    use_cg : bool
        Conjugate-gradient inner solver (faster; the exact Cholesky solver when False).
    num_threads : int
        OpenMP threads of the solver; 0 = all cores. Each user's (item's) solve only
        reads the other side's factors, so the result does not depend on this.
        Default 1, like scikit-learn's ``n_jobs=None``.
    random_state : None, int, numpy Generator or RandomState
        Seeds the factor initialisation; an int makes ``fit`` reproducible.

    Attributes
    ----------
    user_factors_ : ndarray (n_users, factors) float32
    item_factors_ : ndarray (n_items, factors) float32
    n_users_, n_items_ : int
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 1.0,
        iterations: int = 15,
        use_cg: bool = True,
        num_threads: int = 1,
        random_state=None,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.use_cg = use_cg
        self.num_threads = num_threads
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "use_cg": self.use_cg,
            "num_threads": self.num_threads,
            "random_state": self.random_state,
        }

    def set_params(self, **params) -> ImplicitMF:
        for key, value in params.items():
            if key not in self.get_params():
                raise ValueError(f"unknown parameter {key!r}")
            setattr(self, key, value)
        return self

    def fit(self, X, y=None, *, item_factors_init=None) -> ImplicitMF:
        """Factorise the users x items confidence matrix ``X`` (any scipy sparse / dense).

        ``item_factors_init`` (optional, n_items x ``factors``): start from these item
        factors instead of random ones (a warm start, e.g. from a week-old fit's: see
        :func:`warm_start_item_factors`). The first sweep solves every user against them, so
        a few ``iterations`` land about where a full fit from random factors does."""
        from implicit.cpu.als import AlternatingLeastSquares

        X = sp.csr_matrix(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError("X must be 2-D (users x items)")
        if item_factors_init is not None:
            item_factors_init = np.array(item_factors_init, dtype=np.float32, order="C")
            if item_factors_init.shape != (X.shape[1], int(self.factors)):
                raise ValueError(
                    f"item_factors_init must be {X.shape[1]} items x {int(self.factors)} "
                    f"factors, got {item_factors_init.shape}"
                )
        with single_threaded_blas():  # see proactive_recs.estimators.threads
            engine = AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=float(self.alpha),
                iterations=int(self.iterations),
                use_cg=bool(self.use_cg),
                num_threads=int(self.num_threads),
                random_state=_seed_for_implicit(self.random_state),
                dtype=np.float32,
            )
            # implicit starts from factors already set (the users stay its seeded draw)
            engine.item_factors = item_factors_init
            engine.fit(X, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(engine.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(engine.item_factors, dtype=np.float32)
        self.n_users_, self.n_items_ = X.shape
        return self

    def predict(self, user_idx, item_idx) -> np.ndarray:
        """Dot-product scores of the given (user, item) index pairs."""
        self._check_fitted()
        u = np.asarray(user_idx)
        i = np.asarray(item_idx)
        return np.einsum("ij,ij->i", self.user_factors_[u], self.item_factors_[i])

    def fold_in_items(self, item_users, prior=None, prior_weight=None) -> np.ndarray:
        """Vectors for items the model was not trained on, against the fixed user factors.

        This is the ALS item step (the exact least-squares solve) for new columns, so an
        item with a few interactions gets a vector without a retrain. ``item_users`` is an
        (n_new x n_users) matrix of raw interaction strengths (confidence = ``alpha`` x
        value, as in :meth:`fit`). With ``prior`` (n_new x factors, e.g. predicted from
        attributes by :class:`~proactive_recs.estimators.coldstart.ItemAttributeModel`) the solve
        is pulled towards it with weight ``prior_weight`` (default: the mean diagonal of
        the users' Gram matrix, i.e. as much as one average user's worth of evidence per
        factor), so an item with no interaction keeps most of its prior and each new
        interaction moves it further towards what its buyers say.
        """
        self._check_fitted()
        U = self.user_factors_.astype(np.float64)
        C = sp.csr_matrix(item_users, dtype=np.float64)
        if C.shape[1] != U.shape[0]:
            raise ValueError(f"item_users must have {U.shape[0]} columns (one per user)")
        f = U.shape[1]
        gram = U.T @ U
        base = gram + float(self.regularization) * np.eye(f)
        mu = 0.0
        if prior is not None:
            prior = np.asarray(prior, dtype=np.float64).reshape(C.shape[0], f)
            mu = float(np.trace(gram) / f) if prior_weight is None else float(prior_weight)
            base = base + mu * np.eye(f)
        out = np.empty((C.shape[0], f), dtype=np.float32)
        for row in range(C.shape[0]):
            lo, hi = C.indptr[row], C.indptr[row + 1]
            users, conf = C.indices[lo:hi], float(self.alpha) * C.data[lo:hi]
            Uo = U[users]
            A = base + (Uo.T * (conf - 1.0)) @ Uo
            b = Uo.T @ conf
            if prior is not None:
                b = b + mu * prior[row]
            out[row] = np.linalg.solve(A, b)
        return out

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_factors_"):
            raise RuntimeError("ImplicitMF is not fitted yet: call fit(X) first")


@dataclass(frozen=True)
class MFWarmStart:
    """Item factors of an earlier fit to start MF from: ``item_factors[k]`` is the vector of
    ``item_ids[k]`` (any precision: a starting point needs little), and
    ``iterations`` the ALS sweeps to run from them."""

    item_ids: np.ndarray
    item_factors: np.ndarray
    iterations: int


def warm_start_item_factors(
    item_ids, warm: MFWarmStart, random_state=None
) -> tuple[np.ndarray, int]:
    """Starting item factors for the items ``item_ids`` (float32, one row each): the stored
    vector of an item ``warm`` knows, and for an item new since then a small random one like
    implicit's own start (uniform in [0, 0.01), seeded by ``random_state``); and how many
    items were known."""
    ids = pd.Index(np.asarray(item_ids, dtype=object))
    position = pd.Index(np.asarray(warm.item_ids, dtype=object)).get_indexer(ids)
    known = position >= 0
    factors = np.asarray(warm.item_factors).shape[1]
    out = np.random.default_rng(_seed_for_implicit(random_state)).random(
        (len(ids), factors), dtype=np.float32
    )
    out *= np.float32(0.01)
    out[known] = np.asarray(warm.item_factors)[position[known]].astype(np.float32)
    return out, int(known.sum())
