"""Judging clusterings: ACC/NMI/ARI (`metrics`), a run's scores, label-free scores and diagnostics
(`evaluation`), and choosing K without labels (`choose_k`).

May import the top-level modules and `method`; never `data` or `views`.
"""
