"""The trained baselines the paper compares with, on the same features: TAC (`tac`) and SCAN (`scan`).

May import the top-level modules and `method` (shared losses); never `data` or `views`.
"""
