"""load_torch_model_from_path: TorchScript, state dicts (.pt and .npz) and files that are not models."""

import numpy as np
import pytest

from introscope.base import Batch, pipeline
from introscope.exceptions import IntroscopeError

torch = pytest.importorskip("torch")
from torch_nets import Net  # noqa: E402

from introscope.torch import load_torch_model_from_path  # noqa: E402

# torch 2.13 deprecates TorchScript (jit.trace/save/load); it still loads and runs.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def outputs(model, x, names=("output",)):
    batch = Batch({"x": x})
    (out,) = list(pipeline(lambda bs: iter([batch]), model(list(names)))(len(x)))
    return out.fields


def direct(module, x):
    module.eval()
    with torch.no_grad():
        return module(torch.tensor(x)).numpy()


def test_torchscript_file_gives_its_output(tmp_path, net, images):
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(net.eval(), torch.from_numpy(images[:2])), str(path))
    model = load_torch_model_from_path(path, example_input=images[:2])
    assert list(model.response_infos) == ["output"]
    assert model.response_infos["output"].shape == (None, 3)
    np.testing.assert_allclose(outputs(model, images)["output"], direct(net, images), rtol=1e-5)


def test_state_dict_with_constructor(tmp_path, net, images):
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    model = load_torch_model_from_path(path, Net, example_input=images[:2])
    assert "block.relu#1" in model.response_infos
    got = outputs(model, images, ["output", "bn"])
    np.testing.assert_allclose(got["output"], direct(net, images), rtol=1e-5)
    # a training checkpoint {"state_dict": ...} works too
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, path)
    model = load_torch_model_from_path(path, Net, example_input=images[:2])
    np.testing.assert_allclose(outputs(model, images)["output"], direct(net, images), rtol=1e-5)


def test_npz_state_dict(tmp_path, net, images):
    path = tmp_path / "net.npz"
    np.savez(path, **{k: v.numpy() for k, v in net.state_dict().items()})
    model = load_torch_model_from_path(path, Net, example_input=images[:2])
    np.testing.assert_allclose(outputs(model, images)["output"], direct(net, images), rtol=1e-5)


def test_pickled_module_is_refused(tmp_path, net):
    path = tmp_path / "whole.pt"
    torch.save(net, path)  # a pickle of the module: arbitrary code on load
    with pytest.raises(IntroscopeError, match="weights_only=True.*save module.state_dict"):
        load_torch_model_from_path(path, Net)


def test_state_dict_that_does_not_fit(tmp_path):
    path = tmp_path / "lin.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(IntroscopeError, match="does not fit Net"):
        load_torch_model_from_path(path, Net)


def test_missing_and_non_model_files(tmp_path):
    with pytest.raises(IntroscopeError, match="does not exist"):
        load_torch_model_from_path(tmp_path / "nope.pt")
    with pytest.raises(IntroscopeError, match="is not a file"):
        load_torch_model_from_path(tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(IntroscopeError, match="not a TorchScript file"):
        load_torch_model_from_path(junk)
    with pytest.raises(IntroscopeError, match="could not load .* as a state dict"):
        load_torch_model_from_path(junk, Net)
    with pytest.raises(IntroscopeError, match="must return a torch.nn.Module"):
        torch.save({"w": torch.zeros(1)}, junk)
        load_torch_model_from_path(junk, lambda: "not a module")
