"""The training experiment's mnist5k CNN, after SGD (``build``) and at initialization
(``build_init``): the checkpoint cards in ``reports/cards/``.

    python -m suite card suite.examples.trained_cnn:build_init --out reports/cards/init
    python -m suite card suite.examples.trained_cnn:build --out reports/cards/trained

The network, data and optimizer are the training experiment's (``suite.experiments.training``):
a one-layer CNN with a flatten readout under NTK parameterization, width 64 (the middle width of
its quick grid), trained with plain SGD (lr 4, batch 100, cross-entropy) for 4 epochs on 1000
class-balanced mnist5k images, with its ``split``, ``trainer`` and divergence check. The card's
inputs are the other 4000 mnist5k images (the experiment's test set, enlarged to the rest of
mnist5k) and their labels, so its kernel regression tests on images the network never saw.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from suite.experiments import common, training

#: The training experiment's CNN case: its quick-grid depth, readout, lr, batch, epochs and
#: training-set size; n_test takes the rest of mnist5k (5000 = 1000 train + 3968 test + 32 probe).
CONFIG = training.Config(
    "cnn", training.DEPTHS["cnn"], 64, 0, dataset="mnist5k", n_inputs=32, n_train=1000, n_test=3968,
    batch_size=100, epochs=4, lr=4.0,  # the CNN's learning rate in the training experiment's quick grid
)


@lru_cache(maxsize=4)
def train(config: training.Config = CONFIG, epochs: int | None = None) -> tuple[Any, Any, training.Split]:
    """(apply_fn, params after ``epochs`` epochs (default: config.epochs), the data split).

    The same steps as :func:`suite.experiments.training.run`: ``common.network`` for the
    initialization, ``training.trainer``'s jitted SGD step, ``training.sgd_epoch`` (one
    permutation of the training set per epoch from ``numpy.random.default_rng(config.seed)``),
    and ``_require_finite``.
    """
    epochs = config.epochs if epochs is None else epochs
    common.ensure_dtype(config.dtype)
    d = training.split(config.dataset, config.n_train, config.n_test, config.n_inputs, config.data_seed,
                       config.dtype, config.loss)
    model, params = common.network(config.model_config(), config.seed, tuple(d.x_train.shape[1:]), config.dtype)
    step, _ = training.trainer(model.apply, config.loss, float(config.lr), float(config.momentum))
    velocity = jax.tree_util.tree_map(jnp.zeros_like, params)
    order = np.random.default_rng(config.seed)
    for _ in range(epochs):
        params, velocity = training.sgd_epoch(step, params, velocity, d.x_train, d.t_train, order, config.batch_size)
    training._require_finite(params, config, epochs)
    return model.apply, params, d


def build(**overrides: Any):
    """(apply_fn, trained params, the 3968 held-out images, their labels); ``overrides`` replace
    fields of :data:`CONFIG` (the tests use a smaller network)."""
    apply_fn, params, d = train(replace(CONFIG, **overrides))
    return apply_fn, params, np.asarray(d.x_test), np.asarray(d.y_test)


def build_init(**overrides: Any):
    """The same network at initialization (epoch 0), on the same inputs."""
    config = replace(CONFIG, **overrides)
    apply_fn, params, d = train(config, 0)
    return apply_fn, params, np.asarray(d.x_test), np.asarray(d.y_test)
