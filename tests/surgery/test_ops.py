"""The tensor rules of surgery, checked on real convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from graft.surgery.ops import adapt_input_channels, add_zero_channels, match_rows, remap_rows


def test_gray_input_gives_the_response_of_the_equal_channel_color_image():
    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3)
    gray = torch.randn(2, 1, 10, 10)
    w1, how = adapt_input_channels(w, 1)
    assert torch.allclose(F.conv2d(gray, w1), F.conv2d(gray.expand(-1, 3, -1, -1), w), atol=1e-5)
    assert "summed" in how


@settings(max_examples=30, deadline=None)
@given(src=st.integers(1, 6), dst=st.integers(2, 12), dims=st.sampled_from([1, 2]))
def test_repeated_channels_keep_the_response_to_a_constant_input(src, dst, dims):
    """Any channel count: on an input whose channels all equal v, the adapted conv responds as the original."""
    g = torch.Generator().manual_seed(src * 100 + dst)
    w = torch.randn(4, src, *([3] * dims), generator=g)
    w2, _ = adapt_input_channels(w, dst)
    assert w2.shape == (4, dst, *([3] * dims))
    conv = F.conv1d if dims == 1 else F.conv2d
    v = torch.randn(1, 1, *([7] * dims), generator=g)
    if dst % src == 0 or src == dst:  # whole repetitions: exact
        assert torch.allclose(conv(v.expand(-1, dst, *([-1] * dims)), w2),
                              conv(v.expand(-1, src, *([-1] * dims)), w), atol=1e-4)
    assert torch.isfinite(w2).all()


def test_zero_channels_are_ignored():
    w = torch.randn(4, 2, 3, 3)
    x = torch.randn(1, 2, 6, 6)
    w3 = add_zero_channels(w, 1)
    x3 = torch.cat([x, torch.randn(1, 1, 6, 6)], 1)
    assert torch.allclose(F.conv2d(x3, w3), F.conv2d(x, w), atol=1e-6)


def test_rows_match_by_normalized_name_and_explicit_map():
    src = ("Speaker_A", "speaker b", "carol")
    assert match_rows(src, ("speaker-a", "dave", "carol")) == [0, None, 2]
    assert match_rows(src, ("robert",), {"robert": "speaker b"}) == [1]
    assert match_rows(None, ("x", "y")) == [None, None]


def test_remapped_rows_are_copies_and_new_rows_follow_the_learned_statistics():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 64, generator=g) * 0.05
    b = torch.randn(40, generator=g) * 0.1 + 1.0
    rows = list(range(40)) + [None] * 5
    w2, b2, how = remap_rows(w, b, rows, torch.Generator().manual_seed(1))
    assert torch.equal(w2[:40], w) and torch.equal(b2[:40], b)
    assert 0.5 < float(w2[40:].std() / w.std()) < 2.0, "new rows at the scale of the learned ones, not zero"
    assert torch.allclose(b2[40:], b.mean().expand(5))
    assert "kept 40" in how and "5 new" in how
