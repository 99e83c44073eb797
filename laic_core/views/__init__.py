"""What people read and look at: the Markdown report (`report`), figures (`figures`), the cluster
gallery (`gallery`), the static cluster browser (`browser`, its pages in `browser_assets/`) and the
many-dataset table from `dvc exp show` records (`experiments`).

May import every other part of laic_core; nothing outside `views` imports it.
"""
