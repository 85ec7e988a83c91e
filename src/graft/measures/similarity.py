"""How similar is the target data to the source data, layer by layer?

Which measure applies depends on what is at hand:

- Only the source model (no source data): BatchNorm layers store the per-channel mean and variance of
  their input on the source data. :func:`batchnorm_shift` compares them with the same statistics of the
  target data at the same place. Check :func:`batchnorm_statistics_usable` first.
- A sample of source data and a sample of target data, through the same layer (different inputs, NOT
  paired): :func:`frechet_distance` compares the two clouds of features as Gaussians.
- The same inputs through two networks or two layers (paired rows): :func:`linear_cka` compares the two
  representations. CKA is meaningless for unpaired samples (source images vs target images): its
  value then depends on the arbitrary row order.
"""

from __future__ import annotations

import numpy as np

from graft.errors import DataError, ShapeError
from graft.measures._inputs import as_features


def _channel_vector(values: object, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name} as numbers, one per channel", f"{values!r}"[:200],
                        "pass e.g. bn.running_mean.numpy()") from None
    if array.ndim != 1 or array.size == 0:
        raise ShapeError(f"{name} as a non-empty 1-D array, one value per channel", f"shape {array.shape}",
                         "pass the per-channel statistics of one BatchNorm layer (shape (C,))")
    return array


def _gaussian_statistics(source_mean: object, source_var: object, target_mean: object, target_var: object,
                         eps: float) -> tuple[np.ndarray, ...]:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not np.isfinite(eps) or eps < 0:
        raise DataError("eps as a number >= 0", repr(eps), "use eps=1e-5, as torch's BatchNorm")
    names = ("source_mean", "source_var", "target_mean", "target_var")
    arrays = [_channel_vector(v, n) for v, n in zip((source_mean, source_var, target_mean, target_var), names)]
    if len({a.size for a in arrays}) != 1:
        sizes = ", ".join(f"{n} {a.size}" for n, a in zip(names, arrays))
        raise ShapeError("the same number of channels in the four statistics", sizes,
                         "take the target statistics at the input of the same BatchNorm layer")
    for array, name in zip(arrays, names):
        if not np.isfinite(array).all():
            raise DataError(f"finite {name}", f"{int((~np.isfinite(array)).sum())} NaN or inf channels",
                            "check batchnorm_statistics_usable() first; non-finite statistics cannot be compared")
    for array, name in zip(arrays[1::2], names[1::2]):
        if (array < 0).any():
            raise DataError(f"{name} >= 0 (variances)", f"{int((array < 0).sum())} negative values",
                            "pass variances, not log-variances or standard deviations")
    source_mean, source_var, target_mean, target_var = arrays
    source_var, target_var = source_var + eps, target_var + eps
    if (source_var == 0).any() or (target_var == 0).any():
        raise DataError("positive variances (or eps > 0)", "a zero variance with eps=0",
                        "use eps=1e-5, as torch's BatchNorm")
    return source_mean, source_var, target_mean, target_var


def batchnorm_shift_per_channel(source_mean: object, source_var: object, target_mean: object, target_var: object,
                                eps: float = 1e-5) -> np.ndarray:
    """Symmetric KL divergence (Jeffreys) between the source's and the target's Gaussian of each channel.

    J = KL(p || q) + KL(q || p) = (m_s - m_t)^2 (1/v_s + 1/v_t) / 2 + (v_s/v_t + v_t/v_s) / 2 - 1, with
    v = var + eps. See :func:`batchnorm_shift` for the meaning and the choice.

    Shape:
        - source_mean, source_var, target_mean, target_var: (C,) each
        - returns: (C,) float64, >= 0
    """
    source_mean, source_var, target_mean, target_var = _gaussian_statistics(source_mean, source_var, target_mean,
                                                                            target_var, eps)
    mean_term = 0.5 * (source_mean - target_mean) ** 2 * (1.0 / source_var + 1.0 / target_var)
    variance_term = 0.5 * (source_var / target_var + target_var / source_var) - 1.0
    return mean_term + variance_term


def batchnorm_shift(source_mean: object, source_var: object, target_mean: object, target_var: object,
                    eps: float = 1e-5) -> float:
    """How far the target data's statistics at a BatchNorm's input are from the source's, in one number.

    A BatchNorm layer stores ``running_mean`` and ``running_var``: the per-channel mean and variance of
    its INPUT on the source data (Ioffe and Szegedy, ICML 2015). Run the target data through the network
    up to that layer, take the same per-channel statistics there (over the batch and spatial positions;
    BatchNorm's running_var is the unbiased variance), and compare channel by channel, each channel as a
    1-D Gaussian: the score is the mean over channels of the symmetric KL divergence (Jeffreys divergence)
    between N(source_mean, source_var) and N(target_mean, target_var). The use of BN statistics as a
    domain signature follows Li, Wang, Shi, Liu and Hou, "Revisiting Batch Normalization For Practical
    Domain Adaptation" (AdaBN), ICLR 2017 workshop.

    Why this divergence: it is invariant to a rescaling of a channel (mean times a, variance times a^2),
    so channels and layers of different scales compare, and a mean over channels makes layers of
    different widths compare; it is symmetric; and it reads simply: equal variances and means ``k``
    source standard deviations apart give ``k ** 2``; equal means and variances in a ratio r give
    (r + 1/r) / 2 - 1 (0.25 for r = 2). 0 means identical statistics. ``eps`` (as in BatchNorm) is added
    to both variances, which makes the scale invariance approximate for channels with a variance near eps.
    For the value of each channel see :func:`batchnorm_shift_per_channel`.

    Shape:
        - source_mean, source_var: (C,) the layer's running_mean and running_var
        - target_mean, target_var: (C,) the target data's statistics at the layer's input
        - returns: float >= 0
    """
    return float(batchnorm_shift_per_channel(source_mean, source_var, target_mean, target_var, eps).mean())


def batchnorm_statistics_usable(mean: object, var: object) -> bool:
    """Whether a BatchNorm layer's stored statistics describe source data at all.

    False when they are the initial values of a layer that never saw data (running_mean all 0 and
    running_var all 1: a freshly built network, or a checkpoint saved without buffers), when any value is
    NaN or inf, when a variance is negative, or when the arrays are empty or of different lengths. In
    those cases :func:`batchnorm_shift` would compare the target against nothing. Ioffe and Szegedy,
    "Batch Normalization", ICML 2015 (running estimates used at inference).

    Shape:
        - mean, var: (C,) running_mean and running_var of one layer
        - returns: bool
    """
    try:
        mean_array = np.asarray(mean, dtype=np.float64).reshape(-1)
        var_array = np.asarray(var, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return False
    if mean_array.size == 0 or mean_array.size != var_array.size:
        return False
    if not (np.isfinite(mean_array).all() and np.isfinite(var_array).all()) or (var_array < 0).any():
        return False
    return not ((mean_array == 0).all() and (var_array == 1).all())


def _two_feature_sets(features_a: object, features_b: object, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    first = as_features(features_a, "features_a")
    second = as_features(features_b, "features_b")
    if paired:
        if len(first) != len(second):
            raise ShapeError("paired rows: the same inputs in the same order through both networks or layers",
                             f"{len(first)} rows in features_a and {len(second)} in features_b",
                             "pass the activations of the same samples; to compare two different samples "
                             "(source data vs target data) use frechet_distance")
        if len(first) < 2:
            raise DataError("at least 2 paired samples", f"{len(first)}", "pass more samples (hundreds or more)")
    else:
        if first.shape[1] != second.shape[1]:
            raise ShapeError("features_a and features_b from the same layer (same number of features)",
                             f"{first.shape[1]} and {second.shape[1]} features",
                             "take both from the same layer of the same network")
        for array, name in ((first, "features_a"), (second, "features_b")):
            if len(array) < 2:
                raise DataError(f"at least 2 samples in {name} (a covariance is estimated)", f"{len(array)}",
                                "pass more samples (more than the number of features for a stable estimate)")
    return first, second


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a: object, features_b: object) -> float:
    """Fréchet distance between Gaussians fitted to two samples of features (the distance behind FID).

    Dowson and Landau, "The Fréchet distance between multivariate normal distributions", J. Multivariate
    Anal. 1982; Heusel, Ramsauer, Unterthiner, Nessler and Hochreiter, "GANs Trained by a Two Time-Scale
    Update Rule Converge to a Local Nash Equilibrium" (FID), NeurIPS 2017:
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), covariances with ``np.cov`` (N - 1), as pytorch-fid.
    The trace of the matrix square root is computed in a stable symmetric form,
    Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), with eigendecompositions (no complex parts to discard).

    The samples are NOT paired: use it to compare a sample of source data with a sample of target data
    through the same layer. Its value grows with the scale and the width of the features: compare values at
    the same layer, not across layers; and it is biased upwards for small samples (use the same N).

    Shape:
        - features_a: (N_a, D), features_b: (N_b, D), N_a, N_b >= 2
        - returns: float >= 0; 0 for identical samples
    """
    first, second = _two_feature_sets(features_a, features_b, paired=False)
    mean_term = float(np.sum((first.mean(axis=0) - second.mean(axis=0)) ** 2))
    covariance_a = np.atleast_2d(np.cov(first, rowvar=False))
    covariance_b = np.atleast_2d(np.cov(second, rowvar=False))
    root_a = _symmetric_sqrt(covariance_a)
    middle = root_a @ covariance_b @ root_a
    cross_trace = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum())
    distance = mean_term + float(np.trace(covariance_a) + np.trace(covariance_b)) - 2.0 * cross_trace
    return max(distance, 0.0)


def linear_cka(features_a: object, features_b: object) -> float:
    """Linear centered kernel alignment between two representations of the SAME inputs.

    Kornblith, Norouzi, Lee and Hinton, "Similarity of Neural Network Representations Revisited", ICML
    2019: with column-centered X and Y, CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), computed on the
    smaller of the feature-space and sample-space Gram matrices.

    Rows must be paired: row i of both arrays comes from the same input (the same images through two
    networks, or through two layers of one network; the widths may differ). It does NOT apply to a source
    sample against a target sample (different inputs): use :func:`frechet_distance` or
    :func:`batchnorm_shift` for that. Invariant to orthogonal transforms and isotropic scaling of either
    side, not to arbitrary invertible linear maps.

    Shape:
        - features_a: (N, D_a), features_b: (N, D_b), N >= 2
        - returns: float in [0, 1]; 1 for identical representations (up to rotation and scale)
    """
    first, second = _two_feature_sets(features_a, features_b, paired=True)
    first = first - first.mean(axis=0)
    second = second - second.mean(axis=0)
    num_samples = len(first)
    if num_samples < max(first.shape[1], second.shape[1]):
        gram_a, gram_b = first @ first.T, second @ second.T
        cross, norm_a, norm_b = np.sum(gram_a * gram_b), np.linalg.norm(gram_a), np.linalg.norm(gram_b)
    else:
        cross = np.linalg.norm(second.T @ first) ** 2
        norm_a, norm_b = np.linalg.norm(first.T @ first), np.linalg.norm(second.T @ second)
    for norm, name in ((norm_a, "features_a"), (norm_b, "features_b")):
        if norm == 0:
            raise DataError(f"{name} that vary across samples", "the same row for every sample",
                            "check the layer: a constant representation (dead units, a zero output) has no CKA")
    return float(np.clip(cross / (norm_a * norm_b), 0.0, 1.0))
