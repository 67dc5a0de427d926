"""The small CIFAR ResNets of He et al. 2016, section 4.2 (ResNet-20/56 and friends).

depth = 6n + 2: a 3x3 conv with 16 channels, three stages of n BasicBlocks with 16/32/64
channels (strides 1/2/2), global average pooling, one linear layer. ResNet-20 has 0.27M
parameters, ResNet-56 0.85M, which makes CPU-scale runs possible.

Shortcut: option A of the paper (the one its CIFAR results use): identity, and where the
shape changes, the input subsampled by 2 and zero-padded to the new channel count, so
shortcuts add no parameters. Kaiming-normal initialisation of convolutions as in the paper.
"""
import torch.nn as nn
import torch.nn.functional as F


class ZeroPadShortcut(nn.Module):
    """Option A: x[:, :, ::2, ::2] with zero channels added on both sides."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.extra = out_channels - in_channels

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        changes_shape = stride != 1 or in_channels != channels
        self.shortcut = ZeroPadShortcut(in_channels, channels) if changes_shape else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth, num_classes=10):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_channels = [], 16
        for channels, stride in ((16, 1), (32, 2), (64, 2)):
            layers = []
            for i in range(blocks):
                layers.append(BasicBlock(in_channels, channels, stride if i == 0 else 1))
                in_channels = channels
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
