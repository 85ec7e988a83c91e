"""torch's threads on a busy machine (graft.threads, issue 16): fewer threads when other processes hold the cores,
an explicit setting kept, the caller's count restored."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from graft.errors import GraftError
from graft.threads import busy_cores, cores, fit_threads

BURN = "import time\nend = time.time() + 20\nwhile time.time() < end:\n    pass\n"
linux = pytest.mark.skipif(not Path("/proc/loadavg").is_file(), reason="needs /proc/loadavg (Linux)")


@pytest.fixture
def burners():
    """One CPU-burning process per core, running before the test reads anything."""
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(cores())]
    time.sleep(0.5)
    yield procs
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("GRAFT_THREADS", raising=False)
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


@linux
def test_other_processes_on_every_core_leave_torch_one_thread(burners, threads):
    assert busy_cores() >= len(burners)
    said = []
    torch.set_num_threads(max(2, threads))
    had = torch.get_num_threads()
    assert fit_threads(log=said.append) == had, "the count before is returned, to restore it"
    assert torch.get_num_threads() == 1 and "the machine is busy" in said[0] and "GRAFT_THREADS" in said[0]


@linux
def test_an_explicit_thread_count_is_kept(burners, threads, monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert fit_threads() is None and torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("GRAFT_THREADS", "3")
    assert fit_threads() == 2 and torch.get_num_threads() == 3


def test_a_thread_count_that_is_not_a_number_says_what_to_set(threads, monkeypatch):
    monkeypatch.setenv("GRAFT_THREADS", "many")
    with pytest.raises(GraftError, match="GRAFT_THREADS=2"):
        fit_threads()


@linux
def test_the_cli_gives_the_caller_its_threads_back(burners, threads, tmp_path):
    """graft's main() called in a process that goes on (a notebook, a test): the threads it lowered are restored."""
    from graft.cli import main

    torch.set_num_threads(max(2, threads))
    had = torch.get_num_threads()
    command = ["plan", "cifar_resnet20", "--random", "--input-size", "28", "28", "--in-chans", "1", "--num-classes", "3"]
    assert main(command) == 0
    assert torch.get_num_threads() == had
