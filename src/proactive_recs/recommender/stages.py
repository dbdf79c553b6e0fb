"""What a weekly fit hands to the daily runs, and how fitted objects are stored.

Tuning MF and training the second stage on past windows cost most of a fit and change
little from one day to the next; the MF factors and the candidates change with every new
interaction. So the weekly run stores the trained stages (:class:`TrainedStages`: the tuned
MF hyper-parameters, the propensity ranker, the day-0 ranker, what calibration decided and
the MF item factors), and each daily run refits MF on today's interactions with those
hyper-parameters, starting from the stored item factors (a few sweeps instead of a fit from
random factors: :func:`warm_start`), and scores with the stored rankers
(``Recommender(...).fit(..., stages=stored)``).

Stored stages are used only when they were trained with the same settings (those that
shape training; list lengths and thread counts may differ) and as of an instant no later
than the run (a backfill never scores with a model trained on its future). Otherwise the
daily run trains what it needs and says why (:func:`usable_stages`).

Objects are stored as bytes: a small JSON header (format and library version) and a pickle.
Bytes written by another library version stop with a message naming both; as with any
pickle, load only bytes you wrote.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from proactive_recs import __version__
from proactive_recs.estimators.mf import MFWarmStart

__all__ = [
    "MAX_WARM_START_BYTES",
    "SERVING_ONLY_SETTINGS",
    "TrainedStages",
    "dump",
    "load",
    "settings_key",
    "training_settings",
    "usable_stages",
    "warm_start",
    "warm_start_payload",
]

FORMAT = 3  # the layout of dump(); raise it when the header or the pickled classes change

# Settings that change what is served but not what is trained: stages trained under other
# values of these are still the same stages.
SERVING_ONLY_SETTINGS = frozenset(
    {
        "k_items",
        "k_users",
        "num_threads",
        "block_size",
        "prelaunch_days",
        "allow_repeats",
        "mf_warm_start_iterations",
    }
)

# The stored item factors (int8 codes and a float32 scale per item) at most: the stages are
# one base64 text cell (4/3 of the bytes), and a Snowflake VARCHAR column holds 16 MB unless
# declared longer. 8 MiB is 123k items at 64 factors (the L benchmark's 100k: 6.8 MB); a
# bigger catalogue stores none and its daily runs fit MF from random factors
# (model_parameters says so).
MAX_WARM_START_BYTES = 8 * 1024 * 1024


def dump(obj) -> bytes:
    """``obj`` as bytes: a length-prefixed JSON header, then a pickle."""
    header = json.dumps(
        {"format": FORMAT, "version": __version__, "kind": type(obj).__name__}
    ).encode()
    return len(header).to_bytes(4, "big") + header + pickle.dumps(obj, protocol=5)


def load(data: bytes, kind: type):
    """The object :func:`dump` wrote, checked to be a ``kind`` written by this version."""
    size = int.from_bytes(data[:4], "big")
    try:
        header = json.loads(data[4 : 4 + size])
    except ValueError as error:
        raise ValueError(f"not a stored proactive_recs {kind.__name__}") from error
    if header.get("format") != FORMAT or header.get("version") != __version__:
        raise ValueError(
            f"stored {kind.__name__} was written by proactive_recs {header.get('version')} "
            f"(format {header.get('format')}); this is {__version__} (format {FORMAT}): "
            "fit it again"
        )
    obj = pickle.loads(data[4 + size :])
    if not isinstance(obj, kind):
        raise ValueError(f"stored object is a {type(obj).__name__}, not a {kind.__name__}")
    return obj


def training_settings(settings: dict) -> dict:
    """The resolved settings that shape training (all but :data:`SERVING_ONLY_SETTINGS`)."""
    return {key: value for key, value in settings.items() if key not in SERVING_ONLY_SETTINGS}


def settings_key(settings: dict) -> str:
    """A short fingerprint of the training settings (equal settings, equal key)."""
    text = json.dumps(training_settings(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TrainedStages:
    """The trained parts of a fit that a later fit may reuse.

    as_of : the instant they were trained as of (naive UTC)
    settings : the resolved settings they were trained with
    mf_params : the MF hyper-parameters tuning chose
    ranker, cold_ranker : the second stage and the day-0 ranker (None when not trained)
    decisions : what the validation window decided (calibration), for model_parameters
    selection : what serves each direction (selection.StageSelection), or None
    category_choice : how user -> category scores weigh MF against history
        (categories.CategoryChoice), or None
    mf_item_ids, mf_item_factors, mf_item_scale : the as-of MF's item factors, a daily
        fit's starting point: item mf_item_ids[k]'s vector is mf_item_factors[k] (int8) x
        mf_item_scale[k]; None when over :data:`MAX_WARM_START_BYTES`
    """

    as_of: pd.Timestamp
    settings: dict
    mf_params: dict
    ranker: object | None = None
    cold_ranker: object | None = None
    decisions: dict = field(default_factory=dict)
    # None in stages stored before stage selection existed: they serve the second stage.
    selection: object | None = None
    category_choice: object | None = None
    mf_item_ids: np.ndarray | None = None
    mf_item_factors: np.ndarray | None = None
    mf_item_scale: np.ndarray | None = None

    @property
    def key(self) -> str:
        return settings_key(self.settings)

    def to_bytes(self) -> bytes:
        return dump(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedStages:
        return load(data, cls)


def usable_stages(
    stages: TrainedStages | None, settings: dict, as_of: pd.Timestamp
) -> tuple[TrainedStages | None, str]:
    """``stages`` if a fit with ``settings`` as of ``as_of`` may reuse them, and why (not)."""
    if stages is None:
        return None, "no stored stages"
    if stages.as_of > as_of:
        return None, f"stored stages were trained as of {stages.as_of}, after the run ({as_of})"
    if training_settings(stages.settings) != training_settings(settings):
        changed = sorted(
            key
            for key in training_settings(settings).keys() | training_settings(stages.settings)
            if stages.settings.get(key) != settings.get(key)
        )
        return None, f"stored stages were trained with other settings: {', '.join(changed)}"
    return stages, f"stages trained as of {stages.as_of:%Y-%m-%d %H:%M} reused"


def warm_start_payload(item_ids, item_factors) -> dict:
    """What :class:`TrainedStages` keeps of a fit's MF item factors (its ``mf_item_*``
    fields): the ids, and each item's vector as int8 codes times one float32 scale (its
    largest absolute value / 127). A starting point needs no more: at M warm starts from
    these and from float16 factors scored the same (docs/recommender.md §3). Nothing when
    they would pass :data:`MAX_WARM_START_BYTES`."""
    factors = np.asarray(item_factors, dtype=np.float32)
    if factors.size + 4 * len(factors) > MAX_WARM_START_BYTES:
        return {}
    scale = np.abs(factors).max(axis=1, initial=0.0) / np.float32(127)
    codes = np.rint(factors / np.where(scale > 0, scale, 1)[:, None]).astype(np.int8)
    return {
        "mf_item_ids": np.asarray(item_ids, dtype=object),
        "mf_item_factors": codes,
        "mf_item_scale": scale.astype(np.float32),
    }


def warm_start(stages: TrainedStages | None, mf_params: dict, iterations: int) -> tuple:
    """How a fit reusing ``stages`` starts MF, and why: (MFWarmStart | None, note). None
    (a fit from random factors, ``mf_params``' iterations) without stages, with
    ``iterations`` 0, or when the stages hold no item factors of the right width."""
    if stages is None:
        return None, "off: no stored stages"
    if int(iterations) == 0:
        return None, "off: mf_warm_start_iterations is 0"
    factors = stages.mf_item_factors
    if factors is None:
        return None, (
            f"off: the stored stages hold no item factors (over {MAX_WARM_START_BYTES} bytes)"
        )
    if factors.shape[1] != int(mf_params["factors"]):
        return None, (
            f"off: the stored item factors have {factors.shape[1]} factors, MF fits "
            f"{int(mf_params['factors'])}"
        )
    vectors = factors.astype(np.float32) * stages.mf_item_scale[:, None]
    warm = MFWarmStart(stages.mf_item_ids, vectors, int(iterations))
    return warm, (
        f"{int(iterations)} sweeps from the item factors of the stages as of "
        f"{stages.as_of:%Y-%m-%d %H:%M} ({len(stages.mf_item_ids)} items)"
    )
