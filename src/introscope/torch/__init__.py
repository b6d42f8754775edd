"""PyTorch adapter: wrap ``torch.nn.Module`` objects as models, bridge datasets and producers.

Response names of a wrapped module: ``"layer1.0.conv1"`` (a submodule's output, by dotted path),
``"output"`` (what ``forward`` returns), ``"lstm[0]"`` / ``"head[logits]"`` (one per tensor of a
tuple, list or dict output) and ``"block.relu#0"``, ``"block.relu#1"`` (one per call of a module
that runs several times in one forward pass). Importing this package needs torch
(``pip install 'introscope[torch]'``).
"""

from ._backend import TorchBackend
from ._layer_kinds import layer_kind
from ._model import TorchModel, load_torch_model_from_memory, load_torch_model_from_path
from ._producer import ProducerTorchDataset, TorchProducer

__all__ = [
    "ProducerTorchDataset",
    "TorchBackend",
    "TorchModel",
    "TorchProducer",
    "layer_kind",
    "load_torch_model_from_memory",
    "load_torch_model_from_path",
]
