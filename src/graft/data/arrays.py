"""Arrays of any layout -> channels first; variable lengths -> padded with a mask; windows; normalization."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graft.errors import DataError

LAYOUTS = ("auto", "NCHW", "NHWC", "NHW", "NCL", "NLC", "NL", "NF")


def channels_first(x: np.ndarray, layout: str = "auto", what: str = "x") -> np.ndarray:
    """Put channels on axis 1. ``auto``: (N, L) -> (N, 1, L); (N, H, W) -> (N, 1, H, W); (N, H, W, C)
    with C <= 4 < H -> (N, C, H, W); (N, C, H, W) as it is. Name the layout when it is ambiguous."""
    if layout not in LAYOUTS:
        raise DataError(f"a layout among {LAYOUTS}", repr(layout), "NHWC for (N, H, W, C) images, NLC for "
                        "(N, length, channels) series, NF for tables")
    if layout == "auto":
        if x.ndim == 2:
            return x[:, None, :]
        if x.ndim == 3:
            return x[:, None]
        if x.ndim == 4:
            return np.moveaxis(x, -1, 1) if x.shape[-1] <= 4 < x.shape[1] else x
        raise DataError(f"{what} with 2 to 4 axes: (N, L), (N, H, W), (N, H, W, C) or (N, C, H, W)",
                        f"shape {x.shape}", "reshape the array to one of these layouts, or name it with layout=")
    want = len(layout)
    if x.ndim != want:
        raise DataError(f"{what} with {want} axes for layout {layout}", f"shape {x.shape}", "name the right layout")
    if layout in ("NHWC", "NLC"):
        return np.moveaxis(x, -1, 1)
    if layout in ("NHW", "NL"):
        return x[:, None]
    return x  # NCHW, NCL, NF


def pad_sequences(series: Sequence[np.ndarray], value: float = 0.0, length: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, L_i) arrays of different lengths -> (N, C, L) padded at the end with ``value``, a mask (N, L)
    that is True on real steps, and the lengths. ``length`` crops or pads every series to that length."""
    if not len(series):
        raise DataError("at least one series", "none", "check the file")
    channels = {s.shape[0] for s in series}
    if len(channels) != 1:
        raise DataError("series with the same number of channels", f"channels {sorted(channels)}",
                        "drop the odd series or select common channels")
    lengths = np.array([s.shape[-1] for s in series])
    L = int(length or lengths.max())
    out = np.full((len(series), channels.pop(), L), value, dtype=np.float32)
    mask = np.zeros((len(series), L), dtype=bool)
    for i, s in enumerate(series):
        n = min(s.shape[-1], L)
        out[i, :, :n] = s[:, :n]
        mask[i, :n] = True
    return out, mask, lengths


def trailing_nan_lengths(x: np.ndarray) -> np.ndarray | None:
    """Lengths of series padded at the end with NaN (the UCR convention for unequal lengths), or None."""
    finite = np.isfinite(x).all(1)  # (N, L)
    if finite.all():
        return None
    last = finite.shape[1] - np.argmax(finite[:, ::-1], axis=1)
    last[~finite.any(1)] = 0
    # only trailing NaN counts as padding: a series with NaN before its last finite step has missing values,
    # and is kept whole so that they are reported (the other series are still unpadded)
    inside = np.arange(finite.shape[1])[None] < last[:, None]
    last[(inside & ~finite).any(1)] = finite.shape[1]
    return last


NORMALIZATIONS = ("none", "zscore", "minmax")


def normalize_series(x: np.ndarray, how: str, mask: np.ndarray | None = None) -> np.ndarray:
    """Per series and channel, over the real steps: ``zscore`` (mean 0, std 1), ``minmax`` (0..1), ``none``."""
    if how not in NORMALIZATIONS:
        raise DataError(f"a normalization among {NORMALIZATIONS}", repr(how), "zscore is the usual choice for UCR")
    if how == "none":
        return x
    from graft.memory import in_memory_limit, is_mapped, spill_array

    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf samples: reported by the checks, not here
        if not is_mapped(x) and 4 * x.size <= in_memory_limit():
            return _normalize(x, how, mask)
        # a memory-mapped or very large source: normalized in pieces into a spill file, never whole in memory
        out = spill_array(x.shape, np.float32)
        step = max(1, (32 * 2**20) // max(1, 4 * int(np.prod(x.shape[1:]))))
        for i in range(0, len(x), step):
            out[i:i + step] = _normalize(np.asarray(x[i:i + step], np.float32), how,
                                         None if mask is None else mask[i:i + step])
        return out


def _normalize(x: np.ndarray, how: str, mask: np.ndarray | None) -> np.ndarray:
    m = np.ones(x.shape[:1] + x.shape[2:], bool) if mask is None else mask
    w = m[:, None, :].astype(np.float64)
    n = np.maximum(w.sum(-1, keepdims=True), 1)
    xv = np.where(w > 0, x, 0.0)
    if how == "zscore":
        mean = xv.sum(-1, keepdims=True) / n
        std = np.sqrt((((xv - mean) * w) ** 2).sum(-1, keepdims=True) / n)
        out = (x - mean) / np.where(std > 1e-8, std, 1.0)
    else:
        lo = np.where(w > 0, x, np.inf).min(-1, keepdims=True)
        hi = np.where(w > 0, x, -np.inf).max(-1, keepdims=True)
        out = (x - lo) / np.where(hi - lo > 1e-8, hi - lo, 1.0)
    return np.where(w > 0, out, x).astype(np.float32)


WINDOW_LAYOUTS = ("series", "time_by_feature", "trajectory")


def windows(x: np.ndarray, length: int, step: int | None = None, layout: str = "series", rows: int | None = None,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Cut series (N, C, L) into windows; returns the windows and the series each came from.

    layouts, per window of ``length`` steps:
      - ``series``: (C, length), for 1-D convolutions;
      - ``time_by_feature``: (1, length, C), one grey "image" of time x features, as in a Keras CNN fed
        (length, C, 1) windows: (28, 9, 1) is 28 steps of 9 features;
      - ``trajectory``: (C, rows, length - rows + 1), the delay embedding (Hankel matrix) of each channel,
        a 2-D view of a 1-D signal (as in singular spectrum analysis).
    """
    if x.ndim != 3:
        raise DataError("series of shape (N, C, L) to cut windows from", f"shape {x.shape}", "add the channel axis")
    if layout not in WINDOW_LAYOUTS:
        raise DataError(f"a window layout among {WINDOW_LAYOUTS}", repr(layout), "pick one of them")
    step = step or length
    if length < 1 or step < 1 or length > x.shape[-1]:
        raise DataError(f"a window length between 1 and the series length {x.shape[-1]}, and step >= 1",
                        f"length {length}, step {step}", "pick a shorter window")
    starts = np.arange(0, x.shape[-1] - length + 1, step)
    view = np.lib.stride_tricks.sliding_window_view(x, length, axis=-1)[:, :, starts]  # (N, C, W, length)
    w = np.moveaxis(view, 2, 1).reshape(-1, x.shape[1], length)  # (N*W, C, length)
    source = np.repeat(np.arange(len(x)), len(starts))
    if layout == "time_by_feature":
        w = np.moveaxis(w, 1, 2)[:, None]  # (N*W, 1, length, C)
    elif layout == "trajectory":
        rows = rows or length // 2
        if not 1 <= rows < length:
            raise DataError(f"rows between 1 and {length - 1}", repr(rows), "rows sets the delay-embedding depth")
        w = np.lib.stride_tricks.sliding_window_view(w, length - rows + 1, axis=-1)  # (N*W, C, rows, cols)
    return np.ascontiguousarray(w, dtype=np.float32), source
