"""A neural-tangents ``stax`` CNN (NTK parameterization): the kind of network the suite's
experiments study, built by hand with ``stax.serial``.

``python -m suite card suite.examples.stax_cnn:build``
"""

from __future__ import annotations

import jax

from suite import _nt
from suite.examples import digits

WIDTH = 64


def build(seed: int = 0):
    """(apply_fn, params, x, y): Conv(64)-ReLU-Conv(64)-ReLU-GAP-Dense(10) on all 1797 digits."""
    stax = _nt.require().stax
    init_fn, apply_fn, _ = stax.serial(
        stax.Conv(WIDTH, (3, 3), padding="SAME", W_std=1.5, b_std=0.05), stax.Relu(),
        stax.Conv(WIDTH, (3, 3), padding="SAME", W_std=1.5, b_std=0.05), stax.Relu(),
        stax.GlobalAvgPool(), stax.Dense(10, W_std=1.5, b_std=0.05),
    )
    x, y = digits()
    _, params = init_fn(jax.random.PRNGKey(seed), (-1, *x.shape[1:]))
    return apply_fn, params, x, y
