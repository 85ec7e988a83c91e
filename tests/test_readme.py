"""Every ```python block of README.md runs as written.

Each block runs alone, in a fresh interpreter (``sys.executable -c``), in an empty folder, offline
(``HF_HUB_OFFLINE=1``), with nothing defined beforehand: a block that uses a name from an earlier block, or a
module it does not import, fails here as it would for a reader who pastes it. The only help a block gets is
its files: the setup table below puts the files it names into the folder first (links to the real weights and
data of ../shared under the names the README uses, or the small user files it names, such as ``digits.npz``).
When ../shared is absent the blocks that need it skip with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED

README = Path(__file__).resolve().parents[1] / "README.md"
TIMEOUT_S = 300

def python_blocks(text: str) -> list[tuple[str, int, int, str]]:
    """(heading above, index among the python blocks, first line number of the code, code) of every block."""
    blocks, heading, fence, start, lines = [], "(top)", None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            if line.startswith("```"):
                fence, start, lines = line[3:].strip(), number + 1, []
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
        elif line.startswith("```"):
            if fence == "python":
                blocks.append((heading, len(blocks), start, "\n".join(lines) + "\n"))
            fence = None
        else:
            lines.append(line)
    return blocks


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


# --- the files each block names ----------------------------------------------------------------------------


def _link(cwd: Path, name: str, *shared: str) -> None:
    source = SHARED.joinpath(*shared)
    target = cwd / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source, target_is_directory=source.is_dir())


def _mnist_subset(path: Path, train: int, test: int, offset: int = 0, *, split: bool = True) -> None:
    """A user's small digits archive cut from the real MNIST (the same number of each digit)."""
    with np.load(SHARED / "data" / "mnist" / "mnist.npz") as z:
        def take(images, labels, n):
            index = np.concatenate([np.flatnonzero(labels == d)[offset: offset + n // 10] for d in range(10)])
            return images[np.sort(index)], labels[np.sort(index)].astype(np.int64)
        x_train, y_train = take(z["train_images"], z["train_labels"], train)
        x_test, y_test = take(z["test_images"], z["test_labels"], test)
    if split:
        np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    else:
        np.savez(path, x=x_test, y=y_test)


def _digits(cwd: Path) -> None:
    _mnist_subset(cwd / "digits.npz", train=300, test=100)  # small: the blocks train on it within the slow step


def _more_digits(cwd: Path) -> None:
    _mnist_subset(cwd / "more_digits.npz", train=0, test=100, offset=50, split=False)


def _pets_and_list(cwd: Path) -> None:
    """pets/ (one sub-folder per class, real CIFAR-10 cats and dogs as PNG) and list.csv naming the same files."""
    from PIL import Image

    rows = ["path,label"]
    with np.load(SHARED / "data" / "cifar10" / "cifar10_jpg_subset.npz") as z:
        for label, index in (("cat", 3), ("dog", 5)):
            folder = cwd / "pets" / label
            folder.mkdir(parents=True)
            for i, k in enumerate(np.flatnonzero(z["y_train"] == index)[:20]):
                Image.fromarray(z["x_train"][k]).save(folder / f"{label}_{i:02d}.png")
                rows.append(f"pets/{label}/{label}_{i:02d}.png,{label}")
    (cwd / "list.csv").write_text("\n".join(rows) + "\n")


def _weights(name: str):
    return lambda cwd: _link(cwd, name, "weights", name)


SETUP = {  # heading -> what to put in the folder before the block runs (every entry reads ../shared)
    # resnet56 is named; the mobilenet and resnet20 files are what a version without a hub download and without
    # undefined names would load (the timm weights of mobilenetv2_100, and "another" state dict to load_weights)
    "The questions it answers so far": [_weights("resnet56-4bfd9763.th"), _weights("resnet20-12fca82f.th"),
                                        _weights("mobilenetv2_100_imagenet.timm.safetensors")],
    "Data of every shape": [
        _weights("resnet20-12fca82f.th"),
        _pets_and_list,
        lambda cwd: _link(cwd, "mnist.npz", "data", "mnist", "mnist.npz"),
        lambda cwd: _link(cwd, "ucr/GunPoint", "data", "ucr", "GunPoint"),
        lambda cwd: _link(cwd, "fsdd/recordings", "data", "fsdd", "recordings"),
    ],
    # these two blocks name no file; a self-contained version loads the same files as the training block
    'Features and measures: "is my data like the source?", "which layer?"': [_weights("resnet20-12fca82f.th"), _digits],
    "Every layer at once: the multilayer probe and strategy": [_weights("resnet20-12fca82f.th"), _digits],
    "Training: every strategy, runs that survive interruption": [
        _weights("resnet20-12fca82f.th"), _digits, _more_digits],
    "The advisor and the evidence: `advise`, `compare`, `--strategy auto`, `report.html`": [
        _weights("resnet20-12fca82f.th"), _digits],
    "One workflow, strategies as plug-ins": [_weights("resnet20-12fca82f.th"), _digits],
}

BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks_and_the_table_names_real_headings():
    assert len(BLOCKS) >= 5
    headings = {heading for heading, *_ in BLOCKS}
    assert set(SETUP) <= headings, f"SETUP names headings the README no longer has: {set(SETUP) - headings}"


@pytest.mark.slow
@pytest.mark.parametrize(("heading", "index", "line", "code"), BLOCKS,
                         ids=[f"{_slug(h)}-{i}" for h, i, *_ in BLOCKS])
def test_readme_block_runs_as_written(heading, index, line, code, tmp_path):
    setup = SETUP.get(heading, [])
    if setup and not SHARED.exists():
        pytest.skip(f"needs {SHARED} (the README block under '{heading}' names the project's shared weights/data)")
    for step in setup:
        step(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    where = f"README.md:{line} (block {index}, under '{heading}')"
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as timeout:
        tail = timeout.stderr or b""
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        pytest.fail(f"{where} ran past {TIMEOUT_S} s\n--- stderr (tail) ---\n{tail[-2000:]}", pytrace=False)
    if done.returncode:
        pytest.fail(f"{where} fails as written (exit {done.returncode}); line N of the block is README.md:{line}+N-1"
                    f"\n--- stderr (tail) ---\n{done.stderr[-4000:]}\n--- stdout (tail) ---\n{done.stdout[-1500:]}",
                    pytrace=False)


def test_the_block_parser(tmp_path):
    text = "# A\n```python\nx = 1\n```\n## B\n```bash\nls\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == [("A", 0, 3, "x = 1\n"), ("B", 1, 10, "y = 2\n")]
