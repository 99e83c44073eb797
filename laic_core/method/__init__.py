"""The paper's math on arrays: temperatures, the noun filter, the relation matrix C, neighbours and
the consistency filter, k-means and the no-train clusterings (`cluster`), the centers' training and
losses, the label-free stop that training shares with the baselines (`convergence`), and cluster
naming.

May import the top-level modules and `text` (the prompt learner); never `data` or `views`.
"""
