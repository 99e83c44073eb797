"""Synthetic CLIP-like features with cluster structure, for the scale benchmarks.

Image features: K class centres on the sphere (grouped into super-classes,
as ImageNet's dog breeds are, all inside a common cone as CLIP features are)
plus anisotropic noise whose variance decays as 1/i over an orthonormal
basis (an effective dimension of about 30, so nearest neighbours mean
something: they are not all equidistant, as under isotropic noise in 512-d).
Noun features: a few nouns near every class centre, and unrelated nouns.

The numbers are chosen to look like CLIP ViT-B/32 on ImageNet: a random pair
of images has cosine about 0.4, two images of one class about 0.7, an image
and its class centre about 0.85.
"""

from __future__ import annotations

import numpy as np


def _unit(X: np.ndarray) -> np.ndarray:
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


class SyntheticClip:
    """A seeded generator of image features (N, d) and noun features (M, d), float32 unit rows.

    n_classes: K class centres; n_supers: super-classes (K / n_supers classes each);
    noise: the norm of an image's deviation from its centre relative to the centre's.
    """

    def __init__(self, dim: int = 512, n_classes: int = 1000, n_supers: int = 100, noise: float = 0.7,
                 spread: float = 0.35, cone: float = 1.0, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim, self.n_classes, self.noise, self.seed = dim, n_classes, noise, seed
        shared = _unit(rng.standard_normal((1, dim)))
        supers = _unit(rng.standard_normal((n_supers, dim)))
        own = _unit(rng.standard_normal((n_classes, dim)))
        classes = _unit(supers[np.arange(n_classes) % n_supers] + spread * own)
        self.centres = _unit(cone * shared + classes)  # (K, d): the common cone of CLIP features
        basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        scales = 1.0 / np.sqrt(np.arange(1, dim + 1))
        scales *= noise / np.sqrt((scales ** 2).sum())  # E ||deviation||^2 = noise^2
        self.noise_map = (scales[:, None] * basis.T).astype(np.float32)  # (d, d): z -> deviation

    def labels(self, n: int, seed: int) -> np.ndarray:
        """(n,) int64 classes, balanced up to one image (ImageNet's train split is nearly balanced)."""
        rng = np.random.default_rng([self.seed, seed, 1])
        return rng.permutation(np.arange(n) % self.n_classes).astype(np.int64)

    def images(self, labels: np.ndarray, seed: int, block: int = 65536) -> np.ndarray:
        """(n, d) float32 unit image features of the given classes, generated in row blocks."""
        out = np.empty((len(labels), self.dim), dtype=np.float32)
        rng = np.random.default_rng([self.seed, seed, 2])
        for start in range(0, len(labels), block):
            stop = min(start + block, len(labels))
            z = rng.standard_normal((stop - start, self.dim), dtype=np.float32)
            rows = self.centres[labels[start:stop]] + z @ self.noise_map
            out[start:stop] = _unit(rows)
        return out

    def nouns(self, per_class: int, extra: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(T (per_class * K + extra, d) float32 unit rows, class (M,) int64; -1 for unrelated nouns).

        A class's nouns lie near its centre (cosine about 0.8, text and images
        are not the same modality); unrelated nouns lie anywhere in the cone.
        """
        rng = np.random.default_rng([self.seed, seed, 3])
        owner = np.repeat(np.arange(self.n_classes), per_class)
        near = _unit(self.centres[owner] + 0.75 * _unit(rng.standard_normal((len(owner), self.dim))))
        far = _unit(self.centres.mean(axis=0) + 1.2 * _unit(rng.standard_normal((extra, self.dim))))
        return np.vstack([near, far]), np.concatenate([owner, np.full(extra, -1)]).astype(np.int64)
