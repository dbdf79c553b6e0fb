"""From scores to sends: campaigns and their triggers, candidate selection, targeting
expressions, the frequency rules, the allocation across campaigns and the backtest that
replays them on the past.
"""
