"""Tasks for the pNTK suite: ``nox -l`` lists them, ``nox -s NAME`` runs one.

    nox -s tests                 # fast test suite (the README and CI command)
    nox -s tests_newjax          # the tests that need no neural-tangents, on the newest jax, without it
    nox -s verify                # theorem experiments -> reports/latest/ (nox -s verify -- --grid full)
    nox -s lint                  # ruff + mypy
    nox -s bench                 # time the kernels -> reports/bench/<machine>-<stamp>.json, .md, .png
    nox -s bench_peers           # torch.func peers beside the newest bench run (installs CPU torch)
    nox -s bench_compare         # this machine's newest run vs its baseline (baseline-cpu.json on CPU,
                                 # baseline-<machine>.json on an accelerator; recorded if missing);
                                 # fails on a >25% regression
    nox -s gate                  # exit 1 unless reports/latest/summary.json's headline verdicts are consistent
    nox -s figures               # re-render figures from reports/latest/data
    nox -s reproduce             # every experiment's full grid, then the report and figures (reports/latest/)
    nox -s merge -- DIR...       # merge run folders (e.g. reproduce -- --shard I/K runs), then report
    nox -s doctor                # versions, devices, memory budget, neural-tangents: each problem's fix

Runs write to the git-ignored run folder ``reports/latest/``; the committed snapshot in
``reports/`` changes only through ``python -m suite publish`` (see the README).

Arguments after ``--`` go to the session's command (pytest, ``python -m suite verify``,
``python -m suite.bench compare``).

Environments: nox cannot share one virtualenv between sessions, so each session has its own
under ``.nox/``; they are reused on later runs (``reuse_existing_virtualenvs``), and pip's cache
makes the second environment quick to build. ``nox -R`` reuses an environment and also skips
the install step. Each environment gets the package (editable) plus the dependency groups it
needs from ``pyproject.toml``, then neural-tangents with ``--no-deps`` (its declared TensorFlow
requirement is only used by ``nt.experimental``, which ``suite/_nt.py`` stubs out).

GPU runners: set ``SUITE_JAX_EXTRA=cuda12`` and the install step adds ``jax[cuda12]`` at the
version ``pyproject.toml`` pins instead of relying on the cpu extra alone; also set
``JAX_PLATFORMS=cuda``, since ``tests/conftest.py`` defaults JAX to the CPU. ``nox -s bench``
then names its JSON after the accelerator (``cuda12-<GPU model from nvidia-smi>-<stamp>.json``),
and ``nox -s bench_compare`` compares it with ``reports/bench/baseline-cuda12-<GPU model>.json``
(``SUITE_BENCH_MACHINE`` overrides the machine name in both).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
#: Installed after everything else, without its dependencies (see the module docstring).
NEURAL_TANGENTS = "neural-tangents==0.6.5"
#: Where bench runs go; SUITE_BENCH_DIR redirects them (e.g. a trial run into a temp dir).
BENCH_DIR = Path(os.environ.get("SUITE_BENCH_DIR") or "reports/bench")
BASELINE = Path("reports/bench/baseline-cpu.json")
BENCH_TESTS = "tests/test_bench_kernels.py"
PEER_TESTS = "tests/test_bench_peers.py"
#: The CPU build of PyTorch for the peers (a plain `torch` requirement pulls the CUDA build).
TORCH = "torch==2.13.0"
#: Flax and Equinox (pyproject's optional ``frameworks``), so that the approximation card's
#: Flax and Equinox examples are tested too: about 70 MB (mostly tensorstore, which Flax
#: requires), 6 s to install from pip's cache on 2 cores.
FRAMEWORKS = tuple(PYPROJECT["project"]["optional-dependencies"]["frameworks"])


def _jax_requirement(extra: str) -> str:
    """``jax[<extra>]`` at the version pyproject.toml pins for ``jax[cpu]``."""
    for dep in PYPROJECT["project"]["dependencies"]:
        m = re.fullmatch(r"jax\[[^\]]*\]\s*(==.+)", dep.replace(" ", ""))
        if m:
            return f"jax[{extra}]{m.group(1)}"
    raise RuntimeError("pyproject.toml does not pin jax[cpu]; cannot derive the GPU requirement")


def install(session: nox.Session, *groups: str, extra: tuple[str, ...] = ()) -> None:
    """Install the package (editable) with ``groups`` from [dependency-groups] and ``extra``
    packages, then neural-tangents without dependencies."""
    reqs = [*nox.project.dependency_groups(PYPROJECT, *groups), *extra]
    accelerator = os.environ.get("SUITE_JAX_EXTRA")
    if accelerator and accelerator != "cpu":
        reqs.append(_jax_requirement(accelerator))
    session.install("-e", ".", *reqs)
    session.install("--no-deps", NEURAL_TANGENTS)


@nox.session
def tests(session: nox.Session) -> None:
    """Fast test suite (slow cases deselected, benchmarks run once as checks) on 2 workers."""
    install(session, "test", extra=("pytest-xdist", *FRAMEWORKS))
    session.run("pytest", "-m", "not slow", "-n", "2", *session.posargs)


@nox.session(default=False)
def tests_newjax(session: nox.Session) -> None:
    """The tests that need no neural-tangents, on the newest jax for this Python, without neural-tangents.

    pyproject.toml pins ``jax[cpu]==0.5.3`` (the newest jax neural-tangents 0.6.5 imports on), so
    the package goes in with ``--no-deps`` and its other dependencies, plus ``-U jax[cpu]``
    unpinned, are installed beside it: one resolve, the newest jax and jaxlib, and no 0.5.3 wheel
    downloaded only to be replaced. Tests marked ``needs_nt`` are skipped with the reason
    (tests/conftest.py); the kernels, ``prepare``, the blocked pNTK, stats and stores run.
    """
    deps = [d for d in PYPROJECT["project"]["dependencies"] if not re.match(r"jax\b", d)]
    session.install("--no-deps", "-e", ".")
    session.install("-U", "jax[cpu]", *deps, *nox.project.dependency_groups(PYPROJECT, "test"), "pytest-xdist")
    session.run("python", "-c", (
        "import jax, jaxlib, suite._nt as nt; "
        "print(f'jax {jax.__version__}, jaxlib {jaxlib.__version__}; neural-tangents imports: {nt.available()}'); "
        "assert not nt.available(), 'neural-tangents is installed in this session; it must not be'"
    ))
    session.run("pytest", "-m", "not slow", "-n", "2", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff on the code and tests, mypy on the package (configured in pyproject.toml)."""
    install(session, "lint")
    session.run("ruff", "check", "suite", "tests", "noxfile.py")
    session.run("mypy", *session.posargs)


@nox.session
def verify(session: nox.Session) -> None:
    """Run every theorem experiment and write reports/latest/ (``-- --grid full`` for the full grid)."""
    install(session)
    session.run("python", "-m", "suite", "verify", *session.posargs)


def _gpu_name() -> str | None:
    """The GPU model by nvidia-smi (``2xNVIDIA A100-SXM4-80GB`` for two), or None without one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.splitlines() if line.strip()]
    if not names:
        return None
    return names[0] if len(names) == 1 else f"{len(names)}x{names[0]}"


def _machine_name() -> str:
    """Names bench runs and accelerator baselines: ``SUITE_BENCH_MACHINE``, else
    ``<extra>-<GPU model>`` on a CUDA runner, else ``<extra>-<arch>-<cores>cpu``."""
    name = os.environ.get("SUITE_BENCH_MACHINE")
    if not name:
        extra = os.environ.get("SUITE_JAX_EXTRA") or "cpu"
        gpu = _gpu_name() if extra.startswith("cuda") else None
        name = f"{extra}-{gpu}" if gpu else "-".join([extra, platform.machine(), f"{os.cpu_count()}cpu"])
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _baseline() -> Path:
    """This machine's committed baseline: ``baseline-cpu.json`` on the CPU (comparisons are
    calibration-normalized, so one CPU baseline serves CPU machines), ``baseline-<machine>.json``
    on an accelerator (one per accelerator model: GPUs differ too much to share one)."""
    extra = os.environ.get("SUITE_JAX_EXTRA") or "cpu"
    return BASELINE if extra == "cpu" else BASELINE.with_name(f"baseline-{_machine_name()}.json")


def _bench_run(session: nox.Session, tests: str, suffix: str = "") -> Path:
    """Time ``tests`` (slow cases included, no xdist) into BENCH_DIR/<machine>-<stamp><suffix>.json."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = BENCH_DIR / f"{_machine_name()}-{stamp}{suffix}.json"
    session.run(
        "pytest", tests, "-m", "", "-p", "suite.bench",
        "--benchmark-enable", "--benchmark-only", f"--benchmark-json={out}",
        "--benchmark-columns=median,iqr,rounds", *session.posargs,
    )
    return out


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Time all kernel benchmarks (slow ones included) into reports/bench/<machine>-<stamp>.json + .md."""
    install(session, "test")
    out = _bench_run(session, BENCH_TESTS)
    session.run("python", "-m", "suite.bench", "summarize", str(out), "--out", str(BENCH_DIR))


@nox.session(default=False)
def bench_peers(session: nox.Session) -> None:
    """Time torch.func's recipe (CPU torch) beside the newest bench run; re-summarize that run with it."""
    install(session, "test", extra=(TORCH,))
    runs = sorted((p for p in BENCH_DIR.glob("*.json") if not p.stem.endswith("-peers")
                   and not p.name.startswith("baseline-")), key=lambda p: p.stat().st_mtime)
    out = _bench_run(session, PEER_TESTS, "-peers")
    if runs:
        session.run("python", "-m", "suite.bench", "summarize", str(runs[-1]), str(out), "--out", str(BENCH_DIR))
    else:
        session.log(f"no bench run in {BENCH_DIR} to set the peers beside; run `nox -s bench` first")


@nox.session(default=False)
def bench_compare(session: nox.Session) -> None:
    """Compare this machine's newest bench run with its baseline; fail on a >25% normalized slowdown.

    The baseline is ``reports/bench/baseline-cpu.json`` on the CPU and
    ``baseline-<machine>.json`` on an accelerator (see ``_baseline``). When there is none yet,
    the newest run is recorded as the baseline (to be committed) and nothing is compared.
    Arguments after ``--`` replace all of this: ``python -m suite.bench compare ARGS``.
    """
    install(session)
    if session.posargs:
        session.run("python", "-m", "suite.bench", "compare", *session.posargs)
        return
    machine, baseline = _machine_name(), _baseline()
    runs = sorted((p for p in BENCH_DIR.glob(f"{machine}-*.json") if not p.stem.endswith("-peers")),
                  key=lambda p: (p.stat().st_mtime, p.name))
    if not runs:
        session.error(f"no benchmark run of this machine ({machine}-*.json) in {BENCH_DIR}; run nox -s bench first")
    if not baseline.exists():
        shutil.copyfile(runs[-1], baseline)
        session.log(f"NO BASELINE for {machine}: recorded {runs[-1]} as {baseline}; nothing was compared. "
                    f"Commit {baseline} (git add {baseline}) so that later runs on this machine are compared with it.")
        return
    session.run("python", "-m", "suite.bench", "compare", str(baseline), str(runs[-1]), "--threshold", "0.25")


@nox.session(default=False)
def doctor(session: nox.Session) -> None:
    """Check this session's Python: versions, devices, memory budget, neural-tangents (python -m suite doctor)."""
    install(session)
    session.run("python", "-m", "suite", "doctor")


@nox.session(default=False)
def merge(session: nox.Session) -> None:
    """Merge run folders (-- DIR... [--out DIR]), e.g. reproduce's shards, then report them."""
    install(session)
    if not session.posargs:
        session.error("pass the run folders to merge: nox -s merge -- shard-1 shard-2 [--out reports/latest]")
    session.run("python", "-m", "suite", "merge", *session.posargs)


@nox.session
def gate(session: nox.Session) -> None:
    """Fail when a headline verdict in reports/latest/summary.json is not consistent or a contradiction unexplained."""
    install(session)
    session.run("python", "-m", "suite", "gate", *session.posargs)


@nox.session(default=False)
def figures(session: nox.Session) -> None:
    """Re-render every figure from the saved data in reports/latest/data (no kernels computed)."""
    install(session)
    session.run("python", "-m", "suite", "figures", *session.posargs)


@nox.session(default=False)
def reproduce(session: nox.Session) -> None:
    """Run every experiment's full grid (hours on CPU) into reports/latest/, then its report and figures."""
    install(session)
    session.run("python", "-m", "suite", "run", "all", "--grid", "full", *session.posargs)
