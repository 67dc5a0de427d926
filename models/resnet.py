"""The CIFAR ResNets of the authors' experiments (ResNet-18/34/50 in the pytorch-cifar style).

ImageNet ResNets (He et al. 2016) adapted to 32x32 inputs: a 3x3 stride-1 stem with 64
channels and no max-pool, four stages of 64/128/256/512 (x4 for bottlenecks) channels at
strides 1/2/2/2, 4x4 average pooling, one linear layer. Shortcuts are identities, or a
1x1 convolution + BatchNorm when the shape changes. PyTorch's default initialisation.
"""
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = projection(in_channels, channels * self.expansion, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.shortcut = projection(in_channels, channels * self.expansion, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def projection(in_channels, out_channels, stride):
    """Identity when shapes match, else a strided 1x1 convolution + BatchNorm."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class ResNet(nn.Module):
    """width: channels of the stem and the first stage (64 here; 20 in the reduced ResNet-18)."""

    def __init__(self, block, blocks_per_stage, num_classes=10, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, in_channels = [], width
        for channels, blocks, stride in zip((width, 2 * width, 4 * width, 8 * width), blocks_per_stage, (1, 2, 2, 2)):
            layers = []
            for i in range(blocks):
                layers.append(block(in_channels, channels, stride if i == 0 else 1))
                in_channels = channels * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(8 * width * block.expansion, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # = avg_pool2d(4) on 32x32 inputs
        return self.linear(out)


def resnet18(num_classes=10):
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet34(num_classes=10):
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes)


def resnet50(num_classes=10):
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


def reduced_resnet18(num_classes=10, width=20):
    """The reduced ResNet-18 of continual learning (Lopez-Paz & Ranzato's GEM, Chaudhry et al.'s
    A-GEM, Mirzadeh et al. 2020): ResNet-18 with 20 instead of 64 base filters (~1.1M parameters)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width)
