"""PFA pruning vs Torch-Pruning's magnitude (L1) pruning at the same size, on two CNN shapes.

A ResNet-style CNN (residual blocks with BatchNorm, a strided projection block) and a
depthwise-separable CNN are trained on scikit-learn's digits, upsampled to 16x16. For each seed:
accuracy, parameters and MACs before pruning; PFA's KL recipe (L1Max unit selection) on every
convolution's output, applied with ``PFA.prune``; Torch-Pruning's ``MagnitudePruner`` (L1
norm of the filters) removing the same number of channels from the same layers, so both pruned
models have the same parameters and MACs; then the same short fine-tune for both.

    .venv/bin/python benchmarks/bench_prune.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _data(seed: int):  # noqa: ANN202
    import torch
    from introscope.samples import load_digits_split

    (xtr, ytr), (xte, yte) = load_digits_split(seed=seed)

    def up(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x[:, None])
        return torch.nn.functional.interpolate(t, size=(16, 16), mode="bilinear")

    return up(xtr), torch.from_numpy(ytr), up(xte), torch.from_numpy(yte)


def _resnet(width: int = 16):  # noqa: ANN202
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.proj = None
            if stride != 1 or cin != cout:
                self.proj = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.proj is None else self.proj(x)))

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
            )
            self.layer1 = nn.Sequential(Block(width, width, 1), Block(width, width, 1))
            self.layer2 = nn.Sequential(Block(width, 2 * width, 2), Block(2 * width, 2 * width, 1))
            self.fc = nn.Linear(2 * width, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.layer2(self.layer1(torch.relu(self.stem(x))))
            return self.fc(x.mean(dim=(2, 3)))

    return ResNet()


def _separable():  # noqa: ANN202
    from torch import nn

    def dw_pw(cin: int, cout: int, stride: int) -> list:
        return [
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        ]

    return nn.Sequential(
        nn.Conv2d(1, 24, 3, 1, 1, bias=False),
        nn.BatchNorm2d(24),
        nn.ReLU(),
        *dw_pw(24, 48, 1),
        *dw_pw(48, 64, 2),
        *dw_pw(64, 64, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def _train(model, x, y, *, epochs: int, lr: float, seed: int) -> None:  # noqa: ANN001
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def _accuracy(model, x, y) -> float:  # noqa: ANN001
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _convs(model) -> list[str]:  # noqa: ANN001
    from torch import nn

    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and not (m.groups > 1 and m.groups == m.out_channels)
    ]


def _pfa_prune(model, x, layers):  # noqa: ANN001, ANN202
    import torch
    from introscope.introspectors import PFA

    with PFA.monitor(model, layers) as monitor, torch.no_grad():
        for start in range(0, len(x), 256):
            model(x[start : start + 256])
    recipes = monitor.result.get_recipe(
        strategy=PFA.Strategy.KL(), unit_strategy=PFA.UnitSelectionStrategy.L1Max()
    )
    return PFA.prune(model, recipes, example_input=x[:2])


def _magnitude_prune(model, x, pfa_result):  # noqa: ANN001, ANN202
    """Torch-Pruning's L1 magnitude pruner, removing PFA's channel counts from the same groups."""
    import copy

    import torch_pruning as tp

    import torch
    from introscope.introspectors.pfa import count_params_and_macs

    new = copy.deepcopy(model).eval()
    modules = dict(new.named_modules())
    ratios = {}
    for group in pfa_result.plan.groups:
        total = len(group.keep) + len(group.remove)
        if group.remove:
            ratios[modules[group.layers[0]]] = len(group.remove) / total
    pruner = tp.pruner.MagnitudePruner(
        new,
        x[:2],
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=[m for m in new.modules() if isinstance(m, torch.nn.Linear)],
    )
    with torch.enable_grad():
        pruner.step()
    params, macs = count_params_and_macs(new, x[:2])
    return new, params, macs


def _one(arch: str, seed: int, epochs: int, finetune: int) -> dict:
    import torch
    from introscope.introspectors.pfa import count_params_and_macs

    torch.manual_seed(seed)
    xtr, ytr, xte, yte = _data(seed)
    model = _resnet() if arch == "resnet" else _separable()
    start = time.perf_counter()
    _train(model, xtr, ytr, epochs=epochs, lr=3e-3, seed=seed)
    out: dict = {"train_s": round(time.perf_counter() - start, 2)}
    params, macs = count_params_and_macs(model, xte[:2])
    out["base"] = {"acc": _accuracy(model, xte, yte), "params": params, "macs": macs}
    pfa = _pfa_prune(model, xtr, _convs(model))
    mag, mag_params, mag_macs = _magnitude_prune(model, xtr, pfa)
    for name, pruned, p, m in (
        ("pfa", pfa.module, pfa.params_after, pfa.macs_after),
        ("l1", mag, mag_params, mag_macs),
    ):
        row = {"params": p, "macs": m, "acc_pruned": _accuracy(pruned, xte, yte)}
        _train(pruned, xtr, ytr, epochs=finetune, lr=1e-3, seed=seed + 100)
        row["acc_finetuned"] = _accuracy(pruned, xte, yte)
        out[name] = row
    out["groups"] = len(pfa.plan.groups)
    return out


def run(quick: bool = False) -> dict:
    """Both architectures over 3 seeds (1 seed, fewer epochs with ``quick``)."""
    import torch

    torch.set_num_threads(1)
    seeds = [0] if quick else [0, 1, 2]
    epochs, finetune = (4, 1) if quick else (15, 3)
    out: dict = {"seeds": seeds, "epochs": epochs, "finetune_epochs": finetune}
    for arch in ("resnet", "separable"):
        out[arch] = [_one(arch, s, epochs, finetune) for s in seeds]
    out["summary"] = summary(out)
    return out


def summary(out: dict) -> list[str]:
    lines = [
        f"digits 16x16, {out['epochs']} training epochs, KL recipe, fine-tune "
        f"{out['finetune_epochs']} epochs, seeds {out['seeds']}"
    ]
    for arch in ("resnet", "separable"):
        runs = out[arch]

        def mean(path: tuple[str, str], runs: list = runs) -> float:
            return statistics.mean(r[path[0]][path[1]] for r in runs)

        base = runs[0]["base"]
        lines.append(
            f"{arch}: base acc {mean(('base', 'acc')):.3f}, {base['params']:,} params, "
            f"{base['macs']:,} MACs"
        )
        for name in ("pfa", "l1"):
            r = runs[0][name]
            lines.append(
                f"  {name:>3}: {r['params']:,} params ({r['params'] / base['params']:.0%}), "
                f"{r['macs']:,} MACs ({r['macs'] / base['macs']:.0%}); acc after pruning "
                f"{mean((name, 'acc_pruned')):.3f}, after fine-tune "
                f"{mean((name, 'acc_finetuned')):.3f} "
                f"(per seed {[round(x[name]['acc_finetuned'], 3) for x in runs]})"
            )
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    result = run(parser.parse_args().quick)
    print("\n".join(result["summary"]))
    print(json.dumps({k: v for k, v in result.items() if k != "summary"}, indent=1))
