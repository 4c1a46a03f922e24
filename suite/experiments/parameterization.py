"""The convergence experiment under standard parameterization, beside the NTK baseline (T2).

The theorem assumes NTK parameterization (THEORY.md §3): readout f = (sigma_w/sqrt n) W phi.
Under standard parameterization (W ~ N(0, sigma_w^2/fan_in), no 1/sqrt(fan_in) in the forward
pass) each layer's NTK contribution is multiplied by its fan-in: the readout term phi.phi and
the hidden layers whose fan-in is the width grow like n, the first layer (fan-in = input size)
does not. The readout term is exactly proportional to I_O (THEORY.md §2), so:

* depth 1 (only the first layer below the readout): the only source of off-diagonal mass is a
  width-independent layer whose weight in the kernel falls like 1/n, so the relative error may
  fall much faster than n^-1/2 (about n^-3/2 by this argument; derived, not a theorem);
* deeper networks: hidden-to-hidden layers scale like the readout, so the rate should stay
  about n^-1/2 with a somewhat different constant.

Each case is a convergence case (:func:`suite.experiments.convergence.run`, same metrics; the
infinite-width NTK under standard parameterization uses the declared width). Both
parameterizations are in this experiment's grid; ``parameterization`` is a config field, so the
report fits them as separate series. Under standard parameterization the series carry the
predictions derived above (slope -1.5 at depth 1 for the MLP and CNN, -0.5 otherwise; THEORY.md §7),
marked as outside the theorem's assumptions: a mismatch there questions the derivation, not the
theorem.
"""

from __future__ import annotations

from suite.experiments import Experiment, convergence

VERSION = "1"

PARAMETERIZATIONS = ("ntk", "standard")

#: The convergence quick grid's architectures and depths, with fewer widths and seeds (two
#: parameterizations double the cost).
QUICK_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048), "cnn": (16, 32, 64, 128), "resnet": (16, 32, 64, 128)}
QUICK_DEPTHS = convergence.QUICK_DEPTHS
#: Full: mnist5k14, N = 64, conv nets narrower than convergence's (two parameterizations double
#: the cost; the 3-hour budget of the whole full grid, README "full grid").
FULL_WIDTHS = {"mlp": (64, 128, 256, 512, 1024, 2048, 4096), "cnn": (16, 32, 64, 128, 256), "resnet": (16, 32, 64, 128)}
FULL_DEPTHS = {"mlp": (1, 2), "cnn": (1, 2), "resnet": (1,)}


def _grid(widths, depths, seeds: int, **common_fields) -> list[convergence.Config]:
    """convergence's grid once per parameterization."""
    return [
        cfg
        for param in PARAMETERIZATIONS
        for cfg in convergence.make_grid(widths, depths, seeds, parameterization=param, **common_fields)
    ]


GRIDS = {
    "quick": lambda: _grid(QUICK_WIDTHS, QUICK_DEPTHS, 5, dataset="digits", n_inputs=32),
    "full": lambda: _grid(FULL_WIDTHS, FULL_DEPTHS, 5, dataset="mnist5k14", n_inputs=64),
}


EXPERIMENT = Experiment(
    name="parameterization",
    description="Convergence under standard vs NTK parameterization (the theorem assumes NTK)",
    theorem="T2 (outside its NTK-parameterization assumption)",
    version=VERSION,
    config_type=convergence.Config,
    grids=GRIDS,
    run=convergence.run,
    predict=convergence.predict,
    verify=False,
    order=21,
)
