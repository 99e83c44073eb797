"""The language side: noun lists and templates (`vocab`, with the shipped WordNet nouns and the
words left out of every vocabulary), what WordNet says of a noun (`wordnet`: may it name a cluster,
its gloss), finished vocabulary encodings kept across projects (`encoding_cache`), the text
tower with exact truncation (`tower`), the template prefix key/value cache (`prefix_cache`), noun
encoding (`encode`) and the category-wise learnable prompts (`prompts`).

May import the top-level modules and `data.models` (the model bundle); never `method`, `scoring`,
`baselines` or `views`.
"""
