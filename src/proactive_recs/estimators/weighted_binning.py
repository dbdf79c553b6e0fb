"""Weighted feature binning for scikit-learn's histogram gradient boosting, one sort per feature.

With sample weights, scikit-learn (1.8, 1.9) places a feature's bin edges by calling its
weighted percentile once per edge: 254 calls per feature, each sorting the whole column again.
The rankers are fitted with weights (the sampled negatives weigh more), and on the demo this
binning was two thirds of the weekly fit (63 s of 94 s in cProfile). Inside
:func:`batched_weighted_binning` the binner's per-edge calls are answered from
:func:`weighted_edges`, which computes every edge of a column from one sort, step for step as
scikit-learn's weighted percentile ("averaged_inverted_cdf") computes each: the same sort, the
same cumulative weights, the same searches, hence the same edges. ``test_weighted_binning.py``
checks the edges, and the fitted boosters, against scikit-learn's own per-edge path.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np

_install_lock = threading.Lock()
_installed: dict = {"depth": 0, "original": None}
# per thread (the binner may run features in threads): the last column answered
_last = threading.local()


def _binning_module():
    from sklearn.ensemble._hist_gradient_boosting import binning

    return binning


def weighted_edges(values: np.ndarray, weights: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The weighted percentiles of ``values`` at ``ranks`` (in percent) with the
    "averaged_inverted_cdf" rule, for a 1-D float column without NaN: the cumulative weight
    is searched for ``rank / 100 x total``; where it lands exactly on a value, the mean of
    that value and the next one (the next with a weight), else the value it lands on."""
    order = np.argsort(values)  # the unstable sort scikit-learn uses: the same tie order
    cumulative = np.cumsum(weights[order])
    targets = ranks / 100 * cumulative[-1]
    targets = np.where(targets == 0, np.nextafter(targets, targets + 1), targets)
    last = order.size - 1
    at = np.clip(np.searchsorted(cumulative, targets), 0, last)
    above = (cumulative[at] - targets) > np.finfo(np.float64).eps
    following = np.clip(at + 1, 0, last)
    # a weightless next value is skipped: the first value after the landing one's weight
    weightless = weights[order[following]] == 0
    if weightless.any():
        skipped = np.searchsorted(cumulative, cumulative[at], side="right")
        following = np.where(weightless, np.where(skipped > last, at, skipped), following)
    landed, after = values[order[at]], values[order[following]]
    return np.where(above, landed, (landed + after) / 2)


def _batched(original, max_bins: int):
    """``original`` (scikit-learn's weighted percentile), answering the binner's per-edge
    calls from :func:`weighted_edges` over every edge of ``max_bins`` bins."""
    edges = np.linspace(0, 100, num=max_bins + 1)[1:-1]  # the binner's own edges
    position = {float(edge): i for i, edge in enumerate(edges)}

    def weighted_percentile(array, sample_weight, percentile_rank=50, average=False, xp=None):
        i = position.get(float(percentile_rank)) if np.ndim(percentile_rank) == 0 else None
        plain = (
            i is not None
            and average
            and xp is None
            and isinstance(array, np.ndarray)
            and isinstance(sample_weight, np.ndarray)
            and array.ndim == 1
            and array.dtype == np.float64
            and sample_weight.shape == array.shape
        )
        if not plain:
            return original(array, sample_weight, percentile_rank, average=average, xp=xp)
        entry = getattr(_last, "entry", None)
        if entry is None or not (entry[0] is array and entry[1] is sample_weight):
            weights = sample_weight.astype(np.float64, copy=False)
            if np.isnan(array).any() or not (weights > 0).any():  # not the binner's column
                return original(array, sample_weight, percentile_rank, average=average)
            entry = (array, sample_weight, weighted_edges(array, weights, edges))
            _last.entry = entry
        return entry[2][i]

    return weighted_percentile


@contextlib.contextmanager
def batched_weighted_binning(max_bins: int) -> Iterator[None]:
    """Within this block, scikit-learn's weighted binning sorts each feature once.

    ``max_bins``: the booster's ``max_bins``. Nothing changes where scikit-learn has no
    weighted percentile in its binner (older versions bin without the weights)."""
    module = _binning_module()
    with _install_lock:
        if _installed["depth"] == 0:
            original = getattr(module, "_weighted_percentile", None)
            if original is not None:
                _installed["original"] = original
                module._weighted_percentile = _batched(original, int(max_bins))
        _installed["depth"] += 1
    try:
        yield
    finally:
        _last.entry = None  # do not keep the last column alive
        with _install_lock:
            _installed["depth"] -= 1
            if _installed["depth"] == 0 and _installed["original"] is not None:
                module._weighted_percentile = _installed["original"]
                _installed["original"] = None
