"""proactive_recs: who to notify about what, and when.

The library behind the dbt package's Python models. Everything here runs and is
tested without dbt: the dbt Python models in ``python_models/`` only read refs,
call these functions and return frames.
"""

__version__ = "0.1.0"
