"""The recommender's settings: one typed, validated config with one default per key.

:class:`RecommenderConfig` is to the recommender what
:class:`~proactive_recs.notifications.frequency.FrequencyRules` is to the frequency rules.
In dbt it is built from the var
``proactive_recs_recommender_params`` (with ``horizon_days`` from ``proactive_recs_horizon_days``,
:func:`proactive_recs.warehouse.dbt_io.recommender_params`); the library reads it as a plain dict
(:data:`~proactive_recs.recommender.two_stage.DEFAULT_PARAMS`,
:func:`~proactive_recs.recommender.two_stage.resolve_params`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

__all__ = ["RecommenderConfig"]

CALIBRATIONS = ("auto", "logistic", "none")


def _default_tune_grid() -> list[dict]:
    return [{"factors": 32}, {"factors": 64}, {"factors": 128}, {"factors": 64, "alpha": 4.0}]


@dataclass(frozen=True)
class RecommenderConfig:
    """Every setting of the served recommender, with its default.

    Build it with :meth:`from_dict`: unknown keys raise naming them and the known keys,
    values given as text (dbt vars sometimes arrive so) are coerced to the field's type, and
    every value is checked.
    """

    # output
    k_items: int = 20
    k_users: int = 100
    allow_repeats: bool = False
    # confidence matrix and matrix factorisation
    half_life_days: float | None = None  # recency half-life; None = no decay
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 1.0
    iterations: int = 15
    # A daily fit on stored stages starts MF from the weekly fit's item factors and runs this
    # many sweeps instead of `iterations` from random factors (0 = from random factors). At M
    # 3 sweeps took 0.6 s against 2.9 s; the MF lists' recall@50 on the next 30 days was
    # 0.2258-0.2286 at 1-3 sweeps against 0.2292 for a full fit (0.2301 with another seed),
    # and they shared 90-94 % of each user's top 50 with it, where two full fits with other
    # seeds share 83 % (docs/benchmark.md, "Session 37").
    mf_warm_start_iterations: int = 3
    random_state: int = 0
    # OpenMP threads for implicit and the booster; 0 = all cores (BLAS stays at one thread:
    # proactive_recs.estimators.threads). The served lists do not depend on it (implicit
    # solves each user on one thread; the booster splits its histograms by feature):
    # test_the_served_lists_do_not_depend_on_the_thread_count. All cores by default: with one,
    # the weekly fit at M used one core of two for 27 minutes (docs/benchmark.md).
    num_threads: int = 0
    # MF hyper-parameters picked on the last horizon before the run date (serving.tune_mf)
    tune: bool = True
    tune_grid: list = field(default_factory=_default_tune_grid)
    # second stage
    second_stage: bool = True
    horizon_days: float = 30
    training_windows: int = 3
    # MF items proposed per user. 100 rather than 200 (session 20): the served lists are
    # ~99 % the same (user->item top 10: 99.2 % of pairs at M), the validation and test
    # figures are within noise on Online Retail and at M, and the daily run at M scores 26 %
    # fewer candidate pairs (docs/benchmark.md, "Session 20").
    candidates_per_user: int = 100
    candidates_per_item: int = 300
    # Most active users proposed per item. Warm items (with history) and new items get a
    # setting each: for warm items MF and the other sources already find the buyers, and 100
    # did as well as 300 or better on the validation windows (Online Retail ndcg@10 0.116
    # against 0.108) with a third of these pairs to score; a new item has no MF users, so
    # activity is a main source of its audience and 300 did better there (docs/benchmark.md,
    # "Which candidates the served lists come from").
    active_candidates_per_item: int = 100
    cold_active_candidates_per_item: int = 300
    popular_candidates_per_user: int = 100
    negative_rate: float = 0.1
    # About this many warm training rows at most (None = no cap): past it the negatives are
    # sampled at a lower rate, fixed on the most recent window, and weighted up to match
    # (ranker.capped_negative_rate). Online Retail and the demo hold 0.6M and 0.15M rows and
    # are untouched; at 100k users x 20k items the ~9.5M rows cost ~110 s a booster fit,
    # and a weekly run fits the booster about a dozen times (docs/benchmark.md, session 17).
    # 1.5M rather than 3M there: the same served figures on the validation window (ndcg@10
    # 0.1105 against 0.1103) and on the test window, each booster fit half as long
    # (docs/benchmark.md, session 19).
    max_training_rows: int | None = 1_500_000
    # Half the step and twice the trees of scikit-learn's default: on the validation window
    # (the last horizon before the cutoff) Online Retail's user -> item ndcg@10 0.1078 ->
    # 0.1125 and the demo's 0.2549 -> 0.2605, item -> user recall@100 up on both
    # (docs/recommender.md, "Learning rate"); the cost is a longer booster fit and, where a
    # direction serves more trees, a longer walk of them.
    ranker_max_iter: int = 200
    ranker_learning_rate: float = 0.05
    # the ranker's tree count (at most ranker_max_iter) chosen on the last training window
    # (PropensityRanker's tree_selection)
    ranker_tree_selection: bool = True
    # per direction, the tree count (among the ranker's tree_counts_) whose lists did best on
    # the last horizon before the run date, in stage selection's replay (selection.py);
    # False: both directions use the default count
    ranker_trees_per_direction: bool = True
    min_positives: int = 50
    # probability calibration on the last window before the run date: auto (chosen by
    # replaying one window back), logistic or none (None = none; see PropensityRanker)
    calibration: str | None = "auto"
    # per direction, serve the second stage or plain MF, whichever did better on the last
    # horizon before the run date (a fit as of its start, scored on it: selection.py)
    stage_selection: bool = True
    # brand-new items: attribute model + day-0 ranker (see coldstart.py)
    cold_items: bool = True
    prelaunch_days: float = 14
    # fallback: fewer interactions than this serve popularity
    min_interactions: int = 20
    # memory: users per block of the top-K pass (None = about 64 MB of scores)
    block_size: int | None = None

    def __post_init__(self):
        for name in (
            "k_items",
            "k_users",
            "iterations",
            "mf_warm_start_iterations",
            "candidates_per_user",
            "candidates_per_item",
            "active_candidates_per_item",
            "cold_active_candidates_per_item",
            "popular_candidates_per_user",
            "ranker_max_iter",
            "min_positives",
            "min_interactions",
            "training_windows",
            "num_threads",
        ):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"recommender parameter {name!r} must be >= 0")
        if int(self.factors) < 1:
            raise ValueError("recommender parameter 'factors' must be >= 1")
        for name in ("regularization", "alpha", "horizon_days", "ranker_learning_rate"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"recommender parameter {name!r} must be > 0")
        if self.max_training_rows is not None and int(self.max_training_rows) < 1:
            raise ValueError("recommender parameter 'max_training_rows' must be >= 1 or None")
        if not 0 < float(self.negative_rate) <= 1:
            raise ValueError("recommender parameter 'negative_rate' must be in (0, 1]")
        if self.prelaunch_days is not None and float(self.prelaunch_days) < 0:
            raise ValueError("recommender parameter 'prelaunch_days' must be >= 0")
        if self.calibration is not None and self.calibration not in CALIBRATIONS:
            raise ValueError(
                f"recommender parameter 'calibration' must be one of {CALIBRATIONS}, "
                f"got {self.calibration!r}"
            )
        if not isinstance(self.tune_grid, list) or not all(
            isinstance(entry, Mapping) for entry in self.tune_grid
        ):
            raise ValueError("recommender parameter 'tune_grid' must be a list of maps")

    @classmethod
    def from_dict(cls, values: Mapping | None) -> RecommenderConfig:
        """Defaults overlaid with ``values``; unknown keys raise, naming them and the
        known keys (a misspelt setting that is silently ignored leaves the user believing
        it took effect)."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"recommender parameter(s) {unknown} unknown "
                f"(var proactive_recs_recommender_params); known: {sorted(known)}"
            )
        defaults = cls()
        return cls(
            **{
                key: _coerce(key, copy.deepcopy(value), getattr(defaults, key))
                for key, value in values.items()
            }
        )

    def as_dict(self) -> dict:
        """The settings as a plain dict (a deep copy), the form the library reads."""
        return asdict(self)


def _coerce(key: str, value, default):
    """dbt vars sometimes arrive as text: turn "64" / "0.5" / "true" / "none" into the type
    of the default."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in ("none", "null", ""):
        return None
    if isinstance(default, bool):
        if text not in ("true", "false", "1", "0"):
            raise ValueError(f"parameter {key!r}: expected a boolean, got {value!r}")
        return text in ("true", "1")
    if isinstance(default, int) or key in ("half_life_days", "block_size"):
        number = float(text)
        return int(number) if number.is_integer() and not isinstance(default, float) else number
    if isinstance(default, float):
        return float(text)
    return value
