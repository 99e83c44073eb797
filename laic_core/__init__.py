"""laic_core: the math of language-assisted image clustering.

Functions take and return arrays/tensors and know nothing of files, DVC or
argv; the DVC stages in `stages/` are thin commands around them.
"""

__version__ = "0.1.0"
