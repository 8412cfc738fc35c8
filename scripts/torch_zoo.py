"""PyTorch definitions of Bulwark's model zoo, with state-dict keys and shapes identical to the
safetensors files `bulwark export` writes (see docs/models.md).

    from safetensors.torch import load_file
    from torch_zoo import build
    model = build("small-cnn")
    model.load_state_dict(load_file("runs/<name>/model.safetensors"))   # strict
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


def seed_mlp():
    # No activation between the layers, exactly as in the seed's example.
    return nn.Sequential(nn.Linear(10, 50), nn.Linear(50, 10))


class SeedNet(nn.Module):
    """The seed's CNN (the PyTorch CIFAR-10 tutorial net)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )


def small_cnn():
    # Wong, Rice & Kolter (2020), MNIST.
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10),
    )


def madry_cnn():
    # Madry et al. (2018), MNIST.
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, 10),
    )


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct-ResNet-18 as in Wong et al. (2020) / Rice et al. (2020), with the CIFAR-10
    normalization inside the model (inputs in [0, 1]); mean/std are not in the state dict."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1), persistent=False)
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, 1)
        self.layer2 = self._make_layer(128, 2)
        self.layer3 = self._make_layer(256, 2)
        self.layer4 = self._make_layer(512, 2)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes, stride):
        layers = [PreActBlock(self.in_planes, planes, stride), PreActBlock(planes, planes, 1)]
        self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1((x - self.mean) / self.std)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


BUILDERS = {
    "seed-mlp": seed_mlp,
    "seed-net": SeedNet,
    "mlp": mlp,
    "small-cnn": small_cnn,
    "madry-cnn": madry_cnn,
    "preact-resnet18": PreActResNet18,
}

INPUT_SHAPES = {
    "seed-mlp": (10,),
    "seed-net": (3, 32, 32),
    "mlp": (1, 28, 28),
    "small-cnn": (1, 28, 28),
    "madry-cnn": (1, 28, 28),
    "preact-resnet18": (3, 32, 32),
}


def build(name):
    return BUILDERS[name]()
