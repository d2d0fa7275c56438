"""``resnet50-trunc``: CLAM's ImageNet ResNet-50 cut after layer 3, average-pooled (1024-d).

Weights: ``--weights`` (torchvision's ``resnet50-*.pth`` or timm's ``resnet50.tv_in1k``;
``layer4``/``fc`` keys in the file are ignored, every other key must match) or timm's hub copy
of the torchvision weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hagekit.encoders.registry import EncoderBundle, register_encoder
from hagekit.encoders.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform
from hagekit.encoders.weights import RANDOM_WEIGHTS_SHA, hub_download, load_weights

__all__ = ["TruncatedResNet50", "build_resnet50_trunc"]


class TruncatedResNet50(nn.Module):
    """ResNet-50 stem + layers 1-3 + global average pooling: (B, 3, H, W) -> (B, 1024)."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        net = timm.create_model("resnet50", pretrained=False, num_classes=0)
        self.conv1, self.bn1, self.act1, self.maxpool = net.conv1, net.bn1, net.act1, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.pool(x).flatten(1)


@register_encoder(
    "resnet50-trunc",
    dim=1024,
    input_size=224,
    weights="--weights resnet50 .pth/.safetensors | hf-hub:timm/resnet50.tv_in1k",
    description="CLAM's ImageNet ResNet-50 truncated after layer 3, 1024-d",
    test_params={"random_weights": True},
)
def build_resnet50_trunc(
    arg: str | None, *, weights: Path | None, random_weights: bool, device: str
) -> EncoderBundle:
    """CLAM's truncated ImageNet ResNet-50 (1024-d)."""
    if random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = TruncatedResNet50()
        sha, source = RANDOM_WEIGHTS_SHA, "random"
    else:
        if weights is None:
            weights = hub_download(
                "timm/resnet50.tv_in1k", ("model.safetensors", "pytorch_model.bin"), what="--encoder resnet50-trunc"
            )
            source = "hf-hub:timm/resnet50.tv_in1k"
        else:
            source = str(weights)
        model = TruncatedResNet50()
        sha = load_weights(model, weights, ignore_unexpected=("layer4.", "fc."))
    return EncoderBundle(
        name="resnet50-trunc",
        model=model.to(device).eval(),
        transform=ImageTransform(224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        dim=1024,
        input_size=224,
        weights_sha256=sha,
        random_weights=random_weights,
        precision="bf16",
        config={"architecture": "resnet50 layers 1-3 + avgpool", "weights_source": source},
    )
