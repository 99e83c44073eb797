"""Softmax temperatures relative to the model's own logit scale.

A contrastive image-text model learns how sharp its image-to-text softmax
is: `logit_scale` (CLIP ViT-B/32: exp(4.605) = 100; the MiniVLM-64 stand-in:
29.3; SigLIP others again). Cosines between its image and text embeddings
are spread to match, so a temperature tuned for one model is too sharp or too
soft for another. Every temperature of the method is therefore given as a
multiple of the model's own, ``tau = relative / logit_scale``:

| temperature | relative | CLIP ViT-B/32 (scale 100) |
|---|---|---|
| TAC's noun retrieval (relation.tau) | 0.5 | 0.005 |
| the centers' assignment (centers.tau) | 1.0 | 0.01 |
| the noun filter (nouns.tau) | 100 | 1.0 |

A number given instead of ``auto`` is used as it is (an absolute temperature).
"""

from __future__ import annotations

import math
import numbers

from laic_core.errors import LaicError

AUTO = "auto"
CLIP_LOGIT_SCALE = 100.0  # CLIP ViT-B/32's learned scale, the reference the defaults were set for
# The smallest temperature computed with: cosines / tau must stay finite in float32
# (up to 3.4e38; at 1e-40, 1 / tau overflows and softmax rows become NaN). Far below any
# useful one: from about 1e-4 on, every softmax row is one-hot already.
MIN_TEMPERATURE = 1e-30


def model_logit_scale(model, pretrained: str | None = None) -> float:
    """exp(model.logit_scale): the factor the model multiplies image-text cosines by.

    open_clip stores the log of the scale as a parameter; models without one
    (a bare text or image tower) are an error, since their temperature is unknown.
    With random weights (``pretrained`` "none") the scale is open_clip's
    initial value (1 / 0.07), not a learned one: such smoke-test models get
    CLIP's reference scale, so they run at the defaults' temperatures.
    """
    if pretrained in ("none", ""):
        return CLIP_LOGIT_SCALE
    raw = getattr(model, "logit_scale", None)
    if raw is None:
        raise LaicError(f"{type(model).__name__} has no logit_scale: its temperature is unknown, so "
                        "give every temperature as a number (relation.tau, centers.tau, nouns.tau)")
    value = float(raw.detach().float().exp().item()) if hasattr(raw, "detach") else math.exp(float(raw))
    if not math.isfinite(value) or value <= 0:
        raise LaicError(f"the model's logit scale is {value}; give every temperature as a number")
    return value


def resolve_temperature(value, relative: float, logit_scale: float | None, name: str) -> float:
    """The temperature to use: ``relative / logit_scale`` for "auto", else `value` itself.

    value: "auto" or a positive number; relative: the multiple of 1 / logit_scale;
    logit_scale: the model's (None when unknown); name: the params key, for errors.
    """
    if value == AUTO:
        if logit_scale is None:
            raise LaicError(f"{name}: 'auto' needs the model's logit scale, which the features do not "
                            f"record (made by an older laic); run `dvc repro` or give {name} as a number")
        if not (isinstance(relative, numbers.Real) and relative > 0):
            raise LaicError(f"{name}_relative: {relative!r} must be a number > 0")
        tau = float(relative) / float(logit_scale)
        if tau < MIN_TEMPERATURE:
            raise LaicError(f"{name}: 'auto' gives {name}_relative / logit scale = {tau:g}, below "
                            f"{MIN_TEMPERATURE:g}, where cosines / tau overflow float32; raise {name}_relative")
        return tau
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < MIN_TEMPERATURE:
        raise LaicError(f"{name}: {value!r} must be 'auto' or a number >= {MIN_TEMPERATURE:g} "
                        "(below it cosines / tau overflow float32)")
    return float(value)
