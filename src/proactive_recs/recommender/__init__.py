"""The recommender: its typed configuration and the two-stage model that fits once as of a
date and serves item -> users, user -> items and user -> categories from that fit.
"""
