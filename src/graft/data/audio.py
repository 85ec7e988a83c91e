"""Audio files -> log-mel spectrograms or MFCCs (librosa), so speaker-ID and spoken-word networks transfer.

Features are computed on the real signal, normalized per utterance and band over its real frames
(cepstral mean and variance normalization), then padded with zeros (the normalized mean) to a fixed
number of frames; the lengths are kept. Labels come from class folders or from the file name
(``label_pattern``, a regular expression with named groups, e.g. FSDD's ``{digit}_{speaker}_{take}.wav``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from graft.data.arrays import normalize_series
from graft.data.problems import ProblemLog
from graft.errors import DataError
from graft.jsonable import JsonSerializable
from graft.progress import track

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
FSDD_PATTERN = r"(?P<digit>\d+)_(?P<speaker>[a-z]+)_(?P<take>\d+)"


def require_librosa():
    try:
        import librosa
    except ImportError:
        raise DataError("librosa, to read audio", "it is not installed",
                        'pip install "graft-ml[audio]"') from None
    return librosa


@dataclass(frozen=True)
class AudioFeatures(JsonSerializable):
    """How audio becomes an input: ``logmel`` (log-mel spectrogram, dB) or ``mfcc``.

    ``duration`` (seconds) fixes the number of frames (longer clips are cut, shorter ones padded and masked);
    ``None`` pads to the longest clip. ``layout="image"`` gives (1, bands, frames) for 2-D CNNs,
    ``"sequence"`` gives (bands, frames) for 1-D CNNs over time.
    """

    kind: str = "logmel"
    sample_rate: int = 8000
    n_mels: int = 40
    n_mfcc: int = 20
    n_fft: int = 256
    hop_length: int = 80
    duration: float | None = 1.0
    layout: str = "image"

    def __post_init__(self):
        if self.kind not in ("logmel", "mfcc"):
            raise DataError("audio features 'logmel' or 'mfcc'", repr(self.kind), "pick one of them")
        if self.layout not in ("image", "sequence"):
            raise DataError("audio layout 'image' (1, bands, frames) or 'sequence' (bands, frames)",
                            repr(self.layout), "pick one of them")
        for name in ("sample_rate", "n_mels", "n_mfcc", "n_fft", "hop_length"):
            if int(getattr(self, name)) < 1:
                raise DataError(f"{name} >= 1", repr(getattr(self, name)), "use a positive value")

    @property
    def bands(self) -> int:
        return self.n_mels if self.kind == "logmel" else self.n_mfcc

    def describe(self) -> str:
        what = f"log-mel spectrogram, {self.n_mels} bands" if self.kind == "logmel" else f"MFCC, {self.n_mfcc} coefficients"
        hop_ms = 1000 * self.hop_length / self.sample_rate
        return (f"audio -> {what} at {self.sample_rate} Hz (FFT {self.n_fft}, hop {self.hop_length} = {hop_ms:.3g} ms), "
                f"normalized per utterance and band"
                + (f", padded/cut to {self.duration:g} s" if self.duration else ", padded to the longest clip"))

    def compute(self, signal: np.ndarray) -> np.ndarray:
        """(bands, frames) features of one mono signal at ``sample_rate``."""
        librosa = require_librosa()
        if self.duration:
            signal = signal[: int(round(self.duration * self.sample_rate))]
        mel = librosa.feature.melspectrogram(y=signal, sr=self.sample_rate, n_fft=self.n_fft,
                                             hop_length=self.hop_length, n_mels=self.n_mels)
        logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
        if self.kind == "mfcc":
            return librosa.feature.mfcc(S=logmel, n_mfcc=self.n_mfcc).astype(np.float32)
        return logmel.astype(np.float32)

    def frames(self) -> int | None:
        return 1 + int(round(self.duration * self.sample_rate)) // self.hop_length if self.duration else None


def _read(args) -> tuple[str, np.ndarray | None, str]:
    path, features = args
    librosa = require_librosa()
    try:
        signal, _ = librosa.load(path, sr=features.sample_rate, mono=True)
        if signal.size == 0:
            return path, None, "no samples"
        if not np.isfinite(signal).all():
            return path, None, "NaN or inf samples"
        return path, features.compute(signal), ""
    except Exception as exc:  # soundfile/audioread raise many types for unreadable files
        return path, None, _unreadable(path, exc)


# how the audio formats librosa reads begin
AUDIO_MAGIC = {b"RIFF": "WAV", b"fLaC": "FLAC", b"OggS": "Ogg", b"ID3": "MP3", b"\xff\xfb": "MP3", b"\xff\xf3": "MP3",
               b"FORM": "AIFF"}


def _unreadable(path: str, exc: Exception) -> str:
    """Why an audio file cannot be read, never empty: the decoder's message, and what the file holds when its first
    bytes are no audio format's (a text file, an image named .wav; audioread's NoBackendError says nothing)."""
    message = str(exc).strip()[:120]
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as error:
        return f"cannot be opened ({error.strerror or type(error).__name__})"
    if not head:
        return "an empty file (0 bytes)"
    if not any(head.startswith(magic) for magic in AUDIO_MAGIC):
        shown = head[:12].decode("ascii", "replace") if all(32 <= c < 127 or c in (9, 10, 13) for c in head) \
            else head[:8].hex(" ")
        return f"not audio: it starts with {shown!r}, not a WAV, FLAC, Ogg, MP3 or AIFF header"
    return f"{type(exc).__name__}: {message}" if message else f"{type(exc).__name__} (a damaged or unsupported file)"


def audio_features(paths: list[str], features: AudioFeatures, log: ProblemLog
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Features of every readable file: the paths kept, an array (N, [1,] bands, frames), the lengths in frames."""
    require_librosa()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(track(pool.map(_read, [(p, features) for p in paths]), "computing audio features",
                             total=len(paths), min_items=100))
    bad = [f"{p} ({err})" for p, f, err in results if f is None]
    log.skip_or_keep("unreadable_audio", bad, f"{len(bad)} audio files cannot be read", "replace or delete them")
    good = [(p, f) for p, f, _ in results if f is not None]
    if not good:
        empty = np.zeros((0, features.bands, features.frames() or 1), np.float32)
        return [], empty[:, None] if features.layout == "image" else empty, np.zeros(0, int)
    lengths = np.array([f.shape[1] for _, f in good])
    frames = features.frames() or int(lengths.max())
    out = np.zeros((len(good), features.bands, frames), np.float32)
    mask = np.zeros((len(good), frames), bool)
    for i, (_, f) in enumerate(good):
        n = min(f.shape[1], frames)
        out[i, :, :n] = f[:, :n]
        mask[i, :n] = True
    out = normalize_series(out, "zscore", mask)
    out[~np.broadcast_to(mask[:, None], out.shape)] = 0.0
    if features.layout == "image":
        out = out[:, None]
    return [p for p, _ in good], out, np.minimum(lengths, frames)
