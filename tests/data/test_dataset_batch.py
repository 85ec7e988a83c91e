"""The batch size of passes without gradients, chosen from the input size."""

import numpy as np
import pytest

from graft.data import load_data
from graft.data.dataset import inference_batch_size


@pytest.mark.parametrize("shape, expected", [
    ((3, 32, 32), 128), ((3, 128, 128), 8), ((3, 224, 224), 8), ((1, 500), 256), ((1, 28, 28), 256), (None, 64),
])
def test_small_batches_for_large_inputs_on_the_cpu(shape, expected):
    assert inference_batch_size("cpu", shape) == expected
    assert inference_batch_size("cuda", shape) == 256


def test_the_data_knows_its_sample_shape():
    x = np.zeros((10, 3, 64, 64), np.float32)
    data = load_data((x, np.arange(10) % 2), layout="NCHW")
    assert data.inference_batch_size("train") == 32
    assert data.inference_batch_size("train", input_size=(224, 224)) == 8
    assert data.inference_batch_size("train", "cuda") == 256
