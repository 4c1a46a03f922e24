"""An Equinox MLP: the module is a pytree of arrays and static fields, split with
``eqx.partition`` into trainable arrays (the card's params) and the rest, recombined with
``eqx.combine`` inside ``apply_fn``. Equinox modules take one example, hence ``jax.vmap``.

``python -m suite card suite.examples.equinox_mlp:build`` (needs ``pip install -e '.[frameworks]'``)
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from suite.examples import digits


def build(seed: int = 0):
    """(apply_fn, params, x, y): a 64-256-256-10 ReLU MLP at initialization on all 1797 digits."""
    x, y = digits(flatten=True)
    model = eqx.nn.MLP(x.shape[1], 10, 256, 2, key=jax.random.PRNGKey(seed), dtype=jnp.float32)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def apply_fn(params, x: jax.Array) -> jax.Array:
        return jax.vmap(eqx.combine(params, static))(x)

    return apply_fn, params, x, y
