"""``python -m suite doctor``: is this Python ready for the suite, and if not, the exact fix.

Prints the suite, jax, jaxlib and neural-tangents versions, the backend and its devices, the
memory budget, whether neural-tangents imports, whether the suite's own kernels run and whether
structured derivatives (neural-tangents' implementation 3, which needs the jax 0.5.3 shim of
:mod:`suite._nt`) gives the right eNTK on a tiny network. Each problem is printed with the
command that fixes it; the exit status is 0 when there is none, 1 otherwise.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Relative agreement required between structured derivatives and the jax path (float32).
SD_RTOL = 1e-4
GPU_FIX = ("pip install 'jax[cuda12]==0.5.3' (nox: SUITE_JAX_EXTRA=cuda12), or run on the CPU with "
           "JAX_PLATFORMS=cpu")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _tiny() -> tuple[Any, Any, Any]:
    """A 2-layer tanh network in plain jax (no neural-tangents), its parameters and 4 inputs."""
    import jax
    import jax.numpy as jnp

    k = jax.random.split(jax.random.PRNGKey(0), 5)
    params = {"w1": jax.random.normal(k[0], (6, 8)), "b1": jax.random.normal(k[1], (8,)),
              "w2": jax.random.normal(k[2], (8, 3)), "b2": jax.random.normal(k[3], (3,))}

    def apply_fn(p: Any, x: Any) -> Any:
        return jnp.tanh(x @ p["w1"] / jnp.sqrt(6.0) + p["b1"]) @ p["w2"] / jnp.sqrt(8.0) + p["b2"]

    return apply_fn, params, jax.random.normal(k[4], (4, 6))


def run() -> int:
    """Print the report; return 0 when everything works, 1 otherwise."""
    import suite

    problems: list[tuple[str, str]] = []

    def show(name: str, value: str) -> None:
        print(f"{name:24s} {value}")

    show("suite", f"pntk-suite {_version('pntk-suite') or suite.__version__ + ' (not installed)'} "
                  f"({Path(suite.__file__).parent})")
    show("python", f"{platform.python_version()} ({sys.executable})")
    try:
        import jax
        import jaxlib
    except Exception as exc:  # an unimportable jax stops everything else
        show("jax", f"does not import: {type(exc).__name__}: {exc}")
        problems.append(("jax does not import", "pip install 'jax[cpu]==0.5.3'"))
        return _verdict(problems)
    from suite import _nt, kernels
    from suite.errors import SuiteError
    from suite.kernels.memory import BUDGET_ENV

    show("jax, jaxlib", f"{jax.__version__}, {jaxlib.__version__} (the suite pins 0.5.3, the newest "
                        "jax neural-tangents 0.6.5 imports on)")
    show("neural-tangents", f"{_version('neural-tangents') or 'not installed'}; imports: "
                            f"{'yes' if _nt.available() else 'no (' + str(_nt.IMPORT_ERROR) + ')'}")
    if not _nt.available():
        problems.append((
            f"neural-tangents does not import ({_nt.IMPORT_ERROR}); the suite's own kernels work "
            "without it, models.build, the infinite-width kernels and the experiments do not",
            _nt.install_hint(),
        ))

    try:
        devices = jax.devices()
        show("backend, devices", f"{jax.default_backend()}: {len(devices)} x "
                                 f"{getattr(devices[0], 'device_kind', devices[0])} ({', '.join(map(str, devices))})")
        if os.environ.get("JAX_PLATFORMS"):
            show("JAX_PLATFORMS", os.environ["JAX_PLATFORMS"])
    except Exception as exc:
        show("backend, devices", f"none: {type(exc).__name__}: {_first_line(exc)}")
        problems.append((f"jax finds no device for JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS')!r}", GPU_FIX))
        return _verdict(problems)

    try:
        budget = kernels.memory_budget()
        source = (f"{BUDGET_ENV}={os.environ[BUDGET_ENV]}" if os.environ.get(BUDGET_ENV)
                  else f"half the free memory; {BUDGET_ENV} overrides it")
        show("memory budget", f"{kernels.format_bytes(budget)} ({source})")
    except SuiteError as exc:
        show("memory budget", f"unusable: {exc}")
        problems.append((f"{BUDGET_ENV} is not a size",
                         f"export {BUDGET_ENV}=16GB (bytes, or a number with kB/MB/GB/MiB/GiB), or unset it"))

    apply_fn, params, x = _tiny()
    own = None
    if problems and problems[-1][0].startswith(BUDGET_ENV):
        show("suite's own kernels", f"not checked (they read {BUDGET_ENV})")
        return _verdict(problems)
    try:
        own = kernels.entk(apply_fn, params, x, implementation="jax")
        show("suite's own kernels", f"OK (eNTK of a tiny network with implementation='jax', {own.shape})")
    except Exception as exc:
        show("suite's own kernels", f"FAILED: {type(exc).__name__}: {exc}")
        problems.append(("the suite's own kernels fail on this jax",
                         "pip install 'jax[cpu]==0.5.3' (the tested version) and report the error above"))

    if not _nt.available():
        show("structured derivatives", "not checked (neural-tangents does not import)")
    elif own is not None:
        import numpy as np

        try:
            sd = np.asarray(kernels.entk(apply_fn, params, x, implementation="structured_derivatives"))
            err = float(np.linalg.norm(sd - np.asarray(own)) / np.linalg.norm(np.asarray(own)))
            if err < SD_RTOL:
                show("structured derivatives", f"OK (implementation 3 agrees with the jax path to {err:.1e})")
            else:
                show("structured derivatives", f"WRONG: relative error {err:.1e} against the jax path")
                problems.append((f"structured derivatives is off by {err:.1e} on this jax",
                                 "pip install 'jax[cpu]==0.5.3' (the suite's shim targets 0.4.26-0.5.3), "
                                 "or use implementation='jax'"))
        except Exception as exc:
            show("structured derivatives", f"FAILED: {type(exc).__name__}: {_first_line(exc)}")
            problems.append(("structured derivatives fails on this jax",
                             "pip install 'jax[cpu]==0.5.3' (the suite's shim targets 0.4.26-0.5.3), "
                             "or use implementation='jax'"))
    return _verdict(problems)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or ["(no message)"])[0]


def _verdict(problems: list[tuple[str, str]]) -> int:
    if not problems:
        print("\nOK: everything the suite needs works here")
        return 0
    print(f"\n{len(problems)} problem(s):")
    for problem, fix in problems:
        print(f"- {problem}\n  fix: {fix}")
    return 1
