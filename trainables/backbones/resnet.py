"""ResNet with basic blocks (10, 18 or 34 layers), single-channel, for 16- to 150-pixel images."""

from __future__ import annotations

from torch import nn

from trainables.backbones import register_backbone

LAYERS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}  # basic blocks per stage


@register_backbone("resnet")
def build_resnet(config: dict, side: int, num_outputs: int, drops: dict) -> nn.Module:
    """A timm ResNet of ``resnet_depth`` layers, stages ``resnet_width`` x (1, 2, 4, 8) wide.

    ``resnet_stem`` ``imagenet`` is ResNet's own 7x7 stride-2 convolution and max-pool; ``small``
    replaces both by a 3x3 stride-1 convolution, as the CIFAR ResNets do for small images.
    """
    from timm.models.resnet import BasicBlock, ResNet

    width = int(config["resnet_width"])
    model = ResNet(block=BasicBlock, layers=LAYERS[int(config["resnet_depth"])], in_chans=1,
                   num_classes=num_outputs, channels=tuple(width * 2**i for i in range(4)), **drops)
    if config["resnet_stem"] == "small":  # as many channels as timm's own stem gives its norm layer
        model.conv1 = nn.Conv2d(1, model.bn1.num_features, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model
