"""Data in: the interaction matrix and the as-of snapshot every estimator trains on.

The only code that turns interaction rows into the sparse user x item matrix and its id
indexes; estimators, the recommender and the evaluation read what it builds.
"""
