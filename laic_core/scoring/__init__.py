"""Judging clusterings: ACC/NMI/ARI (`metrics`), a run's scores, label-free scores and diagnostics
(`evaluation`), choosing K without labels (`choose_k`), and a person's corrections (clusters.yaml:
rename, merge, junk) applied to label arrays (`corrections`).

May import the top-level modules and `method`; never `data` or `views`.
"""
