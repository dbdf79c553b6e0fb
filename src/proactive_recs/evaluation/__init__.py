"""Offline evaluation: ranking metrics and the time-split protocol behind ``model_evaluation``
(docs/evaluation.md).
"""
