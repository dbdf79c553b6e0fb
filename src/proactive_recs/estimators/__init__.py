"""The estimators (scikit-learn conventions: parameters in ``__init__``, ``fit`` returns self,
learned state ends in ``_``): implicit-feedback matrix factorization, the propensity
ranker, the cold-start scorers and the compiled two-way top-K kernels they share.
"""
