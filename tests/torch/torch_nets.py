"""Small torch modules for the torch adapter tests."""

import torch

nn = torch.nn


class Block(nn.Module):
    """Calls its ReLU twice (as torchvision's BasicBlock does)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.relu(self.conv(x)) + x)


class Net(nn.Module):
    """Conv + BN + in-place ReLU, a block, an LSTM (tuple output) and a dict-returning head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.act = nn.ReLU(inplace=True)
        self.block = Block()
        self.lstm = nn.LSTM(8, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.5)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        x = self.act(self.bn(self.stem(x)))
        x = self.block(x)
        seq, _ = self.lstm(x.mean(1))
        return self.drop(self.fc(seq[:, -1]))


class DictHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        y = self.lin(x)
        return {"logits": y, "probs": y.softmax(-1), "aux": None}


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(5, 2)

    def forward(self, left, right):
        return self.a(left) + self.b(right)
