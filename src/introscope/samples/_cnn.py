"""The tiny CNN for the digits data and its deterministic CPU training loop (needs torch)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import numpy as np

from introscope.exceptions import require

if TYPE_CHECKING:
    import torch
    from torch import nn
else:
    torch = require("torch", "torch", "the bundled digits CNN")
    nn = torch.nn

__all__ = ["DigitsCNN", "train", "accuracy"]


class DigitsCNN(nn.Module):
    """Two 3x3 conv layers, a max-pool and two linear layers for 8x8 digit images.

    Takes ``(N, 8, 8)`` or ``(N, 1, 8, 8)`` float inputs in [0, 1]; returns 10 logits.
    Each ReLU is its own module so every activation is a separate response.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return cast("torch.Tensor", self.fc2(self.relu3(self.fc1(self.flatten(x)))))


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    # One thread: reproducible sums, and polite on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(
    x: np.ndarray,
    y: np.ndarray,
    *,
    lr: float,
    epochs: int,
    seed: int,
    batch_size: int = 32,
) -> DigitsCNN:
    """Train a :class:`DigitsCNN` with Adam and cross-entropy, deterministically for a seed."""
    with _threads(1):
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(xt), generator=gen)
            for start in range(0, len(xt), batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
                loss.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
                opt.step()
        model.eval()
    return model


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    with _threads(1), torch.inference_mode():
        was = model.training
        model.eval()
        pred = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).argmax(1)
        model.train(was)
    return float((pred.numpy() == np.asarray(y)).mean())


def state_to_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The state dict as numpy arrays (for an ``.npz`` file)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def arrays_to_model(arrays: dict[str, np.ndarray]) -> DigitsCNN:
    """A :class:`DigitsCNN` with the weights in ``arrays`` (strict: every key must fit)."""
    model = DigitsCNN()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    model.eval()
    return model
