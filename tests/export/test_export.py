"""export_model / load_exported: real exports to ONNX and TorchScript, run back and compared; no mocks."""

from __future__ import annotations

import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from graft.errors import GraftError, ShapeError
from graft.export import ExportError, ExportReport, export_model, load_exported
from tests.conftest import TinyPooledCNN, randomize_bn

FORMATS = [("onnx", ".onnx"), ("torchscript", ".pt")]
INSTALL = 'pip install "graft-ml[export]"'


class TinyConv1d(nn.Module):
    """A 1-D conv net for sequences (N, C, L), pooled to a fixed size."""

    def __init__(self, in_chans: int = 2, classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(in_chans, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
                                  nn.Conv1d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.body(x), 1))


class SignBranch(nn.Module):
    """Branches on a tensor's value: tracing records one branch only, so the file differs on the other."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class PositiveBranch(nn.Module):
    """Like SignBranch, on a condition the built-in standard-normal check input always flips."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) if x.min() > 0 else self.fc(x) * 2


class NumpySort(nn.Module):
    """Calls numpy: ONNX has no translation for the sort it becomes; tracing freezes its result."""

    def forward(self, x):
        return torch.from_numpy(np.sort(x.numpy(), axis=1))


class _Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class PythonFunction(nn.Module):
    """A custom autograd Function: TorchScript cannot save a call to Python."""

    def forward(self, x):
        return _Double.apply(x)


class FixedBatch(nn.Module):
    """Only takes batches of 2 (a reshape to a constant)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).reshape(2, 3)


def _net(kind: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "conv2d":
        return randomize_bn(TinyPooledCNN(classes=5)).eval(), torch.randn(2, 3, 16, 16)
    return randomize_bn(TinyConv1d()).eval(), torch.randn(2, 2, 40)


@pytest.mark.parametrize("fmt, suffix", FORMATS)
@pytest.mark.parametrize("kind", ["conv2d", "conv1d"])
def test_export_reload_and_match_on_another_batch_size(tmp_path, kind, fmt, suffix):
    module, example = _net(kind)
    module.train()  # exported in eval mode, and given its flag back
    path = tmp_path / f"net{suffix}"
    report = export_model(module, example, path, fmt)
    assert module.training
    module.eval()
    assert report.path == str(path) and report.format == fmt and report.verified
    assert report.input_shape == tuple(example.shape)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    assert (report.opset is not None and report.opset >= 17) if fmt == "onnx" else report.opset is None
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the file, and no temporary file
    assert ExportReport.from_json(report.to_json()) == report
    assert fmt in report.render()

    loaded = load_exported(path)
    batch = torch.randn(5, *example.shape[1:])
    with torch.no_grad():
        want = module(batch).numpy()
    np.testing.assert_allclose(loaded(batch), want, atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(loaded(batch.numpy().astype(np.float64)), want, atol=1e-4, rtol=1e-3)  # cast
    with pytest.raises(ShapeError, match="shape"):
        loaded(torch.randn(5, example.shape[1] + 1, *example.shape[2:]))


def test_numpy_example_and_check_inputs_are_accepted(tmp_path):
    module, example = _net("conv1d")
    report = export_model(module, example.numpy(), tmp_path / "net.pt", "torchscript",
                          check_inputs=[np.ones((7, 2, 40), dtype=np.float32)])
    assert report.verified


def test_tracing_that_froze_a_branch_is_caught_and_the_file_is_not_kept(tmp_path):
    path = tmp_path / "branch.pt"
    path.write_bytes(b"previous export")  # a file already there stays as it was
    with pytest.raises(ExportError, match=r"(?s)max \|difference\|.*not kept.*Python boolean") as info:
        export_model(SignBranch(), torch.ones(2, 4), path, "torchscript", check_inputs=[-torch.ones(3, 4)])
    assert "on a batch of shape (3, 4)" in str(info.value)
    assert path.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["branch.pt"]


def test_the_built_in_random_input_catches_a_frozen_branch(tmp_path):
    with pytest.raises(ExportError, match="reproduce the network's outputs"):
        export_model(PositiveBranch(), torch.rand(2, 4) + 0.1, tmp_path / "branch.pt", "torchscript")
    assert list(tmp_path.iterdir()) == []


def test_onnx_refuses_a_branch_on_a_tensor_value_and_points_at_the_line(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ExportError, match="branches on a tensor's value") as info:
        export_model(SignBranch(), torch.ones(2, 4), tmp_path / "branch.onnx")
    message = str(info.value)
    assert "x.sum() > 0" in message and "torch.where" in message
    assert "Traceback" not in message and len(message.splitlines()) == 2
    assert list(tmp_path.iterdir()) == []
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize("module, fmt, pattern", [
    (NumpySort(), "onnx", "no ONNX translation.*aten.sort"),
    (NumpySort(), "torchscript", "output to have the network's shape"),
    (PythonFunction(), "torchscript", "Could not export Python function call '_Double'"),
])
def test_unexportable_networks_give_a_one_line_reason(tmp_path, module, fmt, pattern):
    with pytest.raises(ExportError, match=pattern) as info:
        export_model(module, torch.randn(2, 4), tmp_path / f"net.{'onnx' if fmt == 'onnx' else 'pt'}", fmt)
    assert len(str(info.value).splitlines()) == 2  # expected/got, then the fix
    assert list(tmp_path.iterdir()) == []


def test_verify_false_writes_without_running_the_file(tmp_path):
    report = export_model(SignBranch(), torch.ones(2, 4), tmp_path / "branch.pt", "torchscript", verify=False)
    assert not report.verified and report.max_abs_diff is None and (tmp_path / "branch.pt").exists()
    assert any("not verified" in n for n in report.notes) and any("tracer:" in n for n in report.notes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_network_on_the_gpu_is_exported_from_a_cpu_copy(tmp_path):
    module, example = _net("conv2d")
    module = module.cuda()
    report = export_model(module, example.cuda(), tmp_path / "net.pt", "torchscript")
    assert report.verified and any("CPU copy" in n for n in report.notes)
    assert next(module.parameters()).is_cuda


def test_a_network_with_a_fixed_batch_is_checked_at_that_size(tmp_path):
    report = export_model(FixedBatch(), torch.randn(2, 4), tmp_path / "fixed.pt", "torchscript")
    assert report.verified and any("only takes batches of 2" in n for n in report.notes)


def test_missing_onnx_runtime_says_how_to_install(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "relu",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert load_exported(path)(np.array([[-1.0, 0.0, 2.0]], dtype=np.float32)).tolist() == [[0.0, 0.0, 2.0]]

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(GraftError, match="onnxruntime") as info:
        export_model(TinyConv1d().eval(), torch.randn(2, 2, 40), tmp_path / "net.onnx")
    assert INSTALL in str(info.value)
    with pytest.raises(GraftError, match="onnxruntime") as info:
        load_exported(path)
    assert INSTALL in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relu.onnx"]


@pytest.mark.parametrize("kwargs, pattern", [
    ({"format": "tflite"}, "format in"),
    ({"path": "net.onnx", "format": "torchscript"}, "suffix matches"),
    ({"example_input": [1.0, 2.0]}, "torch tensor or numpy array"),
    ({"example_input": torch.tensor(1.0)}, "batch"),
    ({"example_input": torch.randn(2, 3)}, "runs on the example input"),
    ({"atol": -1.0}, "atol >= 0"),
    ({"module": "resnet18"}, "torch.nn.Module"),
])
def test_bad_arguments(tmp_path, kwargs, pattern):
    args = {"module": TinyConv1d().eval(), "example_input": torch.randn(2, 2, 40), "path": "net.pt",
            "format": "torchscript"} | kwargs
    args["path"] = tmp_path / args["path"]
    with pytest.raises(GraftError, match=pattern):
        export_model(**args)
    assert list(tmp_path.iterdir()) == []


def test_export_into_a_folder_path_is_refused(tmp_path):
    with pytest.raises(GraftError, match="a folder"):
        export_model(TinyConv1d().eval(), torch.randn(2, 2, 40), tmp_path, "torchscript")


def test_load_exported_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(GraftError, match="does not exist"):
        load_exported(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(GraftError, match="an ONNX file onnxruntime can load"):
        load_exported(garbage)
    checkpoint = tmp_path / "weights.pt"
    torch.save(TinyConv1d().state_dict(), checkpoint)  # a zip, but not TorchScript
    assert zipfile.is_zipfile(checkpoint)
    with pytest.raises(GraftError, match="a TorchScript file"):
        load_exported(checkpoint)


@pytest.mark.slow  # 6-15 s on 2 CPU cores (the example, a batch of 3 and both again through onnxruntime)
def test_mobilenetv2_exports_to_onnx(tmp_path):
    timm = pytest.importorskip("timm")
    module = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=10).eval()
    report = export_model(module, torch.randn(2, 3, 64, 64), tmp_path / "mobilenetv2.onnx")
    assert report.verified and report.max_abs_diff < 1e-4
    assert load_exported(tmp_path / "mobilenetv2.onnx")(torch.randn(1, 3, 64, 64)).shape == (1, 10)
