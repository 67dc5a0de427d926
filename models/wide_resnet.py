"""Wide ResNets WRN-d-k (Zagoruyko & Komodakis 2016), as used in the paper and the SAM literature.

Pre-activation blocks (BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3), a 3x3 stem with 16
channels, three groups of (d-4)/6 blocks with 16k/32k/64k channels at strides 1/2/2, and a
final BN-ReLU, global average pooling and linear layer. Where a block changes the channel
count or resolution, the shortcut is a 1x1 convolution of the block's pre-activated input.
Dropout 0 by default (the paper's setting). Kaiming-normal conv init, zero linear bias.
"""
import torch.nn as nn
import torch.nn.functional as F


class WideBlock(nn.Module):
    def __init__(self, in_channels, channels, stride, dropout):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.dropout = dropout
        self.projection = None
        if stride != 1 or in_channels != channels:
            self.projection = nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False)

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(activated)
        out = self.conv1(activated)
        out = F.relu(self.bn2(out))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth, widen_factor, num_classes=10, dropout=0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        blocks = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        groups, in_channels = [], 16
        for channels, stride in zip(widths, (1, 2, 2)):
            layers = []
            for i in range(blocks):
                layers.append(WideBlock(in_channels, channels, stride if i == 0 else 1, dropout))
                in_channels = channels
            groups.append(nn.Sequential(*layers))
        self.group1, self.group2, self.group3 = groups
        self.bn = nn.BatchNorm2d(in_channels)
        self.linear = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x):
        out = self.group3(self.group2(self.group1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
