"""Networks to card, one module each: ``python -m suite card suite.examples.NAME:build``.

Each module's ``build()`` returns ``(apply_fn, params, x, y)`` for a small network on the
``digits`` data (scikit-learn's 8x8 digits, nothing downloaded), written the way that
framework's users write it:

* ``plain_jax``: a jax function with nested-dict parameters;
* ``stax_cnn``: a neural-tangents ``stax`` CNN;
* ``flax_linen``: a Flax linen module, ``model.apply`` with its variables;
* ``flax_nnx``: a Flax NNX module through ``nnx.split`` / ``nnx.merge``;
* ``equinox_mlp``: an Equinox module through ``eqx.partition`` / ``eqx.combine``;
* ``trained_cnn``: the training experiment's mnist5k CNN, ``build`` after SGD and
  ``build_init`` at initialization (the checkpoint cards in ``reports/cards/``).

Flax and Equinox are optional (``pip install -e '.[frameworks]'``); their modules import them
at the top, so a missing framework is reported when the module is imported.
"""

from __future__ import annotations

#: Example modules, each with ``build()`` (``trained_cnn`` also ``build_init()``).
EXAMPLES = ("plain_jax", "stax_cnn", "flax_linen", "flax_nnx", "equinox_mlp", "trained_cnn")
#: Examples that need the optional ``frameworks`` dependencies, with the package they need.
NEEDS = {"flax_linen": "flax", "flax_nnx": "flax", "equinox_mlp": "equinox"}


def digits(n: int | None = None, flatten: bool = False):
    """The examples' data: ``digits`` (all 1797 by default), standardized, float32, and labels."""
    from suite import data

    ds = data.load("digits", n=n, flatten=flatten)
    return ds.x, ds.y
