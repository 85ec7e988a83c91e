"""graft's model zoo: architectures that timm does not register, described by config data.

Each entry says how to build the network and what its pretrained weights expect (input size,
normalization, label names, where the original weights live). The backbone contract reads these
fields exactly as it reads timm's ``pretrained_cfg``; there is no per-model adaptation code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from graft.models.zoo.cifar_resnet import CifarResNet
from graft.models.zoo.sequence import FCN1d, AudioCNN, ResNet1d, SensorCNN

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"


@dataclass(frozen=True)
class ZooEntry:
    """How to build one zoo architecture and what its pretrained weights expect."""

    name: str
    build: Callable[..., nn.Module]
    input_size: tuple[int, ...]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    num_classes: int
    label_names: tuple[str, ...] | None = None
    url: str | None = None  # original weights, fetched with torch.hub when pretrained=True
    first_conv: str | None = None
    classifier: str | None = None
    blocks: Callable[[nn.Module], list[str]] | None = None
    license: str = ""
    notes: str = ""
    in_chans: int = 3
    extra: dict = field(default_factory=dict)


def _cifar(depth: int, file: str) -> ZooEntry:
    return ZooEntry(
        name=f"cifar_resnet{depth}",
        build=lambda num_classes=10, in_chans=3: CifarResNet(depth, num_classes=num_classes, in_chans=in_chans),
        input_size=(32, 32),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        num_classes=10,
        label_names=CIFAR10_CLASSES,
        url=_AKAMASTER + file,
        first_conv="conv1",
        classifier="linear",
        blocks=lambda m: m.block_names(),
        license="BSD-2-Clause (akamaster/pytorch_resnet_cifar10)",
        notes=f"He et al. 2016 sec. 4.2, option-A shortcuts; original weights {file}",
    )


def _mobilenet_v1(multiplier: float, size: int) -> ZooEntry:
    def build(num_classes: int = 1000, in_chans: int = 3, **kw) -> nn.Module:
        from timm.models.efficientnet import _gen_mobilenet_v1

        return _gen_mobilenet_v1("mobilenetv1_100", channel_multiplier=multiplier, num_classes=num_classes,
                                 in_chans=in_chans, **kw)

    return ZooEntry(
        name=f"mobilenetv1_{int(multiplier * 100):03d}",
        build=build,
        input_size=(size, size),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        num_classes=1000,
        first_conv="conv_stem",
        classifier="classifier",
        license="Apache-2.0 (TensorFlow / Coral MobileNet weights)",
        notes=f"timm MobileNetV1 with channel multiplier {multiplier}; no hub weights, pass weights=FILE",
    )


def _sequence(name: str, cls: type[nn.Module], input_size: tuple[int, ...], num_classes: int, notes: str) -> ZooEntry:
    def build(num_classes: int = num_classes, in_chans: int = 1, **kw) -> nn.Module:
        if cls is SensorCNN:
            kw["input_size"] = tuple(kw.get("input_size") or input_size)
        return cls(num_classes=num_classes, in_chans=in_chans, **kw)

    return ZooEntry(name=name, build=build, input_size=input_size, mean=None, std=None, num_classes=num_classes,
                    first_conv="conv1.0" if cls is SensorCNN else "block1.0" if cls is not ResNet1d else "block1.conv1.0",
                    classifier="fc", blocks=lambda m: m.block_names(), license="Apache-2.0 (graft)",
                    notes=notes, in_chans=1, extra={"sized": cls is SensorCNN})


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        _cifar(20, "resnet20-12fca82f.th"),
        _cifar(32, "resnet32-d509ac18.th"),
        _cifar(44, "resnet44-014dd654.th"),
        _cifar(56, "resnet56-4bfd9763.th"),
        _mobilenet_v1(0.5, 160),
        _mobilenet_v1(0.25, 128),
        _sequence("ts_fcn", FCN1d, (128,), 2, "Wang et al. 2017 FCN for time series (C, L), any length; "
                  "inputs z-normalized per series; no pretrained weights: graft pretrain"),
        _sequence("ts_resnet", ResNet1d, (128,), 2, "Wang et al. 2017 ResNet for time series (C, L), any length; "
                  "inputs z-normalized per series; no pretrained weights: graft pretrain"),
        _sequence("audio_cnn", AudioCNN, (40, 101), 10, "4-block CNN over log-mel/MFCC images (1, bands, frames); "
                  "features normalized per utterance; no pretrained weights: graft pretrain"),
        _sequence("sensor_cnn", SensorCNN, (28, 9), 6, "Keras-style CNN on (H, W) sensor windows with a flatten + "
                  "dense head (fixed input size); no pretrained weights: graft pretrain"),
    )
}


def detect_architecture(keys: set[str], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Recognize a zoo architecture from a state dict's key layout (None when it is not one)."""
    if {"conv1.weight", "linear.weight"} <= keys and shapes.get("conv1.weight", (0,))[0] == 16:
        blocks = {k.split(".")[0] + "." + k.split(".")[1] for k in keys if k.startswith("layer") and ".conv1." in k}
        n = len(blocks) // 3
        if n and len(blocks) == 3 * n and f"cifar_resnet{6 * n + 2}" in ZOO:
            return f"cifar_resnet{6 * n + 2}"
    return None
