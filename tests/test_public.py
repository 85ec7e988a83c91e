"""The public surface: every name graft exports resolves from ``import graft``, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import graft


@pytest.mark.parametrize("name", graft.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(graft, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'fine_tunee'"):
        graft.fine_tunee  # noqa: B018


def test_import_graft_loads_no_torch():
    code = "import sys, graft; print(graft.__version__); assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == graft.__version__

