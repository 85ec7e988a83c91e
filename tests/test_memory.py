"""Datasets larger than memory: memory-mapped archives, spill files, bounded checks and a bounded prefix cache.

The slow test at the end runs a real probe and fit in a child process whose data segment is capped
(``RLIMIT_DATA``) below the size of its dataset: it passes only if nothing ever holds the dataset in memory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from graft.cli import main
from graft.data import load_data
from graft.data.readers import MAP_BYTES
from graft.memory import available_memory, in_memory_limit, is_mapped, parse_bytes, spill_array

pytestmark = pytest.mark.reliability
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of four classes (a different mean brightness each), uint8 (n, 3, 64, 64): 12 KiB a sample."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = np.clip(rng.normal(40 + 50 * y[:, None, None, None], 30, (n, 3, 64, 64)), 0, 255).astype(np.uint8)
    return x, y


@pytest.fixture
def stored(tmp_path):
    x, y = _images(2 * MAP_BYTES // (3 * 64 * 64) + 1)
    np.savez(tmp_path / "big.npz", x=x, y=y)
    return tmp_path / "big.npz", x, y


def test_a_large_stored_archive_member_is_memory_mapped_and_reads_like_np_load(stored):
    path, x, y = stored
    data = load_data(path, val_fraction=0.2)
    train, val = data["train"], data["val"]
    assert is_mapped(train.source) and is_mapped(val.source)  # the splits index the archive: no copies
    assert train.source is val.source and len(train) + len(val) == len(x)
    assert any("memory-mapped from big.npz" in n for n in data.spec.notes), data.spec.notes
    same = load_data((x, y), val_fraction=0.2)  # the same arrays, in memory
    assert not is_mapped(same["train"].source)
    for split in ("train", "val"):  # the same samples, the same cache keys
        assert data.fingerprint(split) == same.fingerprint(split)
        for i in (0, 7, len(data[split]) - 1):
            assert torch.equal(data[split][i][0], same[split][i][0])
    sub = data.subsample(50)
    assert is_mapped(sub["train"].source) and len(sub["train"]) == 50
    assert torch.equal(sub["train"][3][0], torch.from_numpy(x[sub["train"].rows[3]] / np.float32(255)))


def test_a_small_member_is_read_into_memory(tmp_path):
    x, y = _images(40)
    np.savez(tmp_path / "small.npz", x=x, y=y)
    data = load_data(tmp_path / "small.npz")
    assert not is_mapped(data["train"].source) and not any("memory-mapped" in n for n in data.spec.notes)


def test_a_truncated_mapped_member_is_one_message(stored, tmp_path):
    from graft.errors import DataError

    path, _, _ = stored
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated"):
        load_data(cut)


def test_a_compressed_member_larger_than_memory_allows_is_decompressed_to_a_spill_file(tmp_path, monkeypatch):
    x, y = _images(2 * MAP_BYTES // (3 * 64 * 64) + 1, seed=1)
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=y)
    monkeypatch.setenv("GRAFT_SPILL_DIR", str(tmp_path / "spill"))
    (tmp_path / "spill").mkdir()
    monkeypatch.setenv("GRAFT_MEMORY", "64M")  # a quarter of it (16 MiB) is less than x's 24 MiB
    assert in_memory_limit() == 256 * 2**20  # the floor: below it nothing is spilled...
    monkeypatch.setattr("graft.memory.in_memory_limit", lambda: MAP_BYTES)  # ...so this test lowers the floor
    data = load_data(tmp_path / "packed.npz")
    assert is_mapped(data["train"].source)
    assert any("spill file" in n for n in data.spec.notes), data.spec.notes
    assert np.array_equal(data["train"].x, x)
    assert list((tmp_path / "spill").iterdir()) == []  # unlinked once open: nothing left on disk, even if killed


def test_a_spill_array_is_a_file_backed_array_that_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_SPILL_DIR", str(tmp_path))
    a = spill_array((100, 3, 8), np.float32)
    a[:] = np.arange(2400, dtype=np.float32).reshape(100, 3, 8)
    assert is_mapped(a) and a[99, 2, 7] == 2399 and list(tmp_path.iterdir()) == []


def test_a_spill_folder_that_cannot_be_written_is_one_message(tmp_path, monkeypatch):
    from graft.errors import GraftError

    monkeypatch.setenv("GRAFT_SPILL_DIR", str(tmp_path / "absent"))
    with pytest.raises(GraftError, match="GRAFT_SPILL_DIR"):
        spill_array((10, 10))


def test_a_torch_dataset_larger_than_the_limit_is_read_into_a_spill_file(tmp_path, monkeypatch):
    x, y = _images(300, seed=2)

    class Lazy(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return torch.from_numpy(x[i]), int(y[i])

    monkeypatch.setenv("GRAFT_SPILL_DIR", str(tmp_path))
    monkeypatch.setattr("graft.memory.in_memory_limit", lambda: x.nbytes // 2)
    data = load_data(Lazy())
    assert is_mapped(data["train"].source) and np.array_equal(data["train"].x, x)
    assert any("spill file" in n for n in data.spec.notes)
    monkeypatch.setattr("graft.memory.in_memory_limit", lambda: x.nbytes * 2)
    assert not is_mapped(load_data(Lazy())["train"].source)


def test_mapped_series_are_normalized_in_pieces_and_equal_the_in_memory_result(tmp_path):
    from graft.data.arrays import normalize_series

    rng = np.random.default_rng(4)
    series = (rng.normal(3, 2, (400, 2, 20000)) * np.arange(1, 401)[:, None, None]).astype(np.float32)  # 64 MB
    np.savez(tmp_path / "series.npz", x=series, y=np.arange(400) % 2)
    data = load_data(tmp_path / "series.npz", normalize="zscore", layout="NCL")
    assert is_mapped(data["train"].source)  # a spill file: the normalized series are not in memory either
    expected = normalize_series(series, "zscore")
    assert not is_mapped(expected)
    np.testing.assert_allclose(data["train"].x, expected, rtol=1e-5, atol=1e-5)


def test_non_finite_values_are_found_in_every_piece_of_a_mapped_array(tmp_path):
    x = np.zeros((3000, 1, 4000), np.float32)  # 48 MB: three pieces of 16 MiB
    x[5, 0, 9] = np.nan
    x[2990, 0, 3] = np.inf
    np.savez(tmp_path / "holes.npz", x=x, y=np.arange(3000) % 2)
    from graft.data import describe_data

    spec = describe_data(tmp_path / "holes.npz")
    problem = next(p for p in spec.problems if p.kind == "non_finite")
    assert "2 samples hold NaN or inf (2 values)" in problem.message
    assert set(problem.items) == {"train[5]", "train[2990]"}


def test_the_memory_cap_is_read_from_the_environment(monkeypatch):
    from graft.errors import GraftError

    assert parse_bytes("512M") == 512 * 2**20 and parse_bytes("1.5GiB") == int(1.5 * 2**30)
    assert parse_bytes("1000") == 1000
    monkeypatch.setenv("GRAFT_MEMORY", "300M")
    assert available_memory() == 300 * 2**20
    monkeypatch.setenv("GRAFT_MEMORY", "lots")
    with pytest.raises(GraftError, match="GRAFT_MEMORY"):
        available_memory()


def test_the_prefix_cache_stops_at_the_first_batch_when_it_would_pass_its_limit():
    from torch import nn

    from graft.training.prefix import PrefixCache

    class Prep:
        def batch(self, x):
            return x

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Flatten())
    seen = []

    def batches():
        for i in range(10):
            seen.append(i)
            yield torch.randn(4, 3, 16, 16), torch.zeros(4)

    per_sample = 8 * 16 * 16 * 4
    cache = PrefixCache(net, ["0"], batches(), 4, Prep(), "cpu", total=40, limit=per_sample * 39)
    assert seen == [0] and cache.projected == per_sample * 40 and cache.nbytes() == 0
    seen.clear()
    cache = PrefixCache(net, ["0"], batches(), 4, Prep(), "cpu", total=40, limit=per_sample * 40)
    assert len(seen) == 10 and cache.nbytes() == per_sample * 40


CAPPED = r"""
import os, re, resource, sys
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot  # imported before the cap: what the job allocates is measured, not import-time data
import sklearn.linear_model, sklearn.model_selection
import graft
from graft.cli import main

graft.load_model("cifar_resnet20", pretrained=False)
def vmdata():
    return int(re.search(r"VmData:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
path, out, headroom, what = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cap = vmdata() + headroom
resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
if what == "whole":
    try:
        np.load(path)["x"].copy()
    except MemoryError:
        print("MemoryError")
    sys.exit(0)
common = ["cifar_resnet20", "--random", "--data", path, "--input-size", "32"]
rc = main(["probe", *common, "--out", out + "/probe", "--no-multilayer"])
if rc == 0:
    rc = main(["fit", *common, "--strategy", "partial:1", "--epochs", "1", "--out", out + "/fit", "--quiet"])
print(f"heap grew by {(vmdata() - cap + headroom) >> 20} MiB")
sys.exit(rc)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux (/proc and RLIMIT_DATA)")
def test_a_probe_and_a_fit_run_with_less_memory_than_their_dataset(tmp_path):
    """4000 images of 224 px (602 MB, an uncompressed .npz) probed and fine-tuned at 32 px by a process whose heap
    may grow by 480 MB only: the dataset is memory-mapped, split and subsampled by index, checked in pieces, and
    batched by the size it is loaded at. The same cap stops a plain ``np.load`` of it."""
    rng = np.random.default_rng(5)
    y = np.arange(4000) % 4
    x = np.empty((4000, 3, 224, 224), np.uint8)
    for i in range(0, 4000, 500):
        x[i:i + 500] = rng.integers(0, 100, (500, 3, 224, 224), dtype=np.uint8) + \
            (40 * y[i:i + 500, None, None, None]).astype(np.uint8)
    path = tmp_path / "large.npz"
    np.savez(path, x=x, y=y)
    del x
    headroom = 480 * 2**20
    env = {**ENV, "GRAFT_MEMORY": "1200M"}  # what graft believes it has: its own caches stay within it
    whole = subprocess.run([sys.executable, "-c", CAPPED, str(path), str(tmp_path), str(headroom), "whole"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert whole.stdout.strip() == "MemoryError", whole.stderr[-2000:]  # the cap is below the dataset
    proc = subprocess.run([sys.executable, "-c", CAPPED, str(path), str(tmp_path), str(headroom), "job"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert (tmp_path / "fit" / "model.safetensors").is_file() and (tmp_path / "probe" / "measures.json").is_file()
    grew = int(re.search(r"heap grew by (\d+) MiB", proc.stdout).group(1))  # at the end; the peak stayed under the cap
    print(f"the heap held {grew} MiB more at the end, of {headroom >> 20} allowed; the dataset: "
          f"{path.stat().st_size >> 20} MiB")


def test_one_input_size_value_for_images_is_a_square(tmp_path, capsys):
    from graft.errors import GraftError
    from graft.surgery.plan import Target
    from tests.conftest import write_shades

    assert Target(input_size=(32, 32), run_size=(16,)).run_size == (16, 16)
    path = write_shades(tmp_path / "shades.npz")
    assert main(["probe", "cifar_resnet20", "--random", "--data", str(path), "--input-size", "16", "--out",
                 str(tmp_path / "p"), "--no-multilayer"]) == 0
    import graft

    net, data = graft.load_model("cifar_resnet20", pretrained=False), load_data(path)
    with pytest.raises(GraftError, match="input_size with 2 values"):
        graft.extract_features(net, data, input_size=(16, 16, 16), cache=False, progress=False)


SHORT_OF_MEMORY = r"""
import re, resource, sys
import graft.data
def vmdata():
    return int(re.search(r"VmData:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
cap = vmdata() + 8 * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
graft.data.load_data(sys.argv[1])
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux (/proc and RLIMIT_DATA)")
def test_an_archive_too_large_for_memory_says_so_and_how_to_avoid_it(tmp_path):
    x, y = _images(700, seed=6)  # 8.6 MB compressed poorly: random images
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=y)
    proc = subprocess.run([sys.executable, "-c", SHORT_OF_MEMORY, str(tmp_path / "packed.npz")], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "memory to read packed.npz" in proc.stderr, proc.stderr[-2000:]
    assert "np.savez" in proc.stderr and "truncated" not in proc.stderr
