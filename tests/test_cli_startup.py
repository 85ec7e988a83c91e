"""``graft --help`` and ``graft --version`` answer without importing torch: the parser is built from torch-free
modules, and each subcommand imports its verb only when it runs. Each case is a fresh process (this one has
torch loaded already). How long it takes is printed (``pytest -s``), never asserted: timings belong in benchmarks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}

# argv for graft.cli.main -> modules that must not be imported by parsing it
NOT_IMPORTED = {
    ("--version",): ("torch", "numpy"),
    ("--help",): ("torch", "numpy"),
    ("fit", "--help"): ("torch",),  # the strategy list comes from graft.strategy, which is torch-free
}

PROBE = """
import sys
from graft.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exit:
    code = exit.code
assert code == 0, f"exit {code}"
loaded = [m for m in MODULES if m in sys.modules]
assert not loaded, f"imported {loaded}"
"""


@pytest.mark.parametrize("argv", list(NOT_IMPORTED), ids=" ".join)
def test_parsing_imports_no_torch(argv):
    code = PROBE.replace("MODULES", repr(NOT_IMPORTED[argv]))
    proc = subprocess.run([sys.executable, "-c", code, *argv], env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: graft" in proc.stdout or proc.stdout.startswith("graft ")


def test_fit_help_lists_every_registered_strategy():
    from graft.strategy import strategy_names

    proc = subprocess.run([sys.executable, "-m", "graft", "fit", "--help"], env={**ENV, "COLUMNS": "4000"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in [*strategy_names(), "auto"]:
        assert re.search(rf"(?<![\w-]){re.escape(name)} \(", proc.stdout), name


def _imported(stderr: str) -> set[str]:
    """Top-level module names in ``python -X importtime`` output."""
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_python_m_graft_answers_without_torch(flag):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "graft", flag], env=ENV, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    print(f"python -m graft {flag}: {seconds:.2f} s")
    assert proc.returncode == 0, proc.stderr
    traced = subprocess.run([sys.executable, "-X", "importtime", "-m", "graft", flag], env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert traced.returncode == 0, traced.stderr
    imported = _imported(traced.stderr)
    assert "graft" in imported, "the import trace was read"
    assert "torch" not in imported
