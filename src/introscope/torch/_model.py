"""Load a PyTorch module (in memory, TorchScript file or state dict) as an introscope ``Model``."""

from __future__ import annotations

import itertools
import logging
import pathlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from introscope.base import Batch, Model, PipelineStage, Producer, ResponseInfo
from introscope.base._model import ResponseInfoMapping
from introscope.base._producer import checked_batches
from introscope.exceptions import IntroscopeError
from introscope.typing import OneManyOrNone, PathOrStr, resolve_path_or_str

from ._backend import TorchBackend
from ._capture import forward_input_names, forward_keyword_names, resolve_device, torch_module

__all__ = ["TorchModel", "load_torch_model_from_memory", "load_torch_model_from_path"]

_LOG = logging.getLogger("introscope.torch")


class TorchModel(Model):
    """A [`Model`][introscope.base.Model] around a ``torch.nn.Module``.

    Its response infos come from a dry run on the example input; without one they are filled in
    (and may be renamed, see [`introscope.torch`][introscope.torch]) when the first batch arrives.

    Examples:
        >>> import numpy as np
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> layers = [torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)]
        >>> net = torch.nn.Sequential(*layers)
        >>> from introscope.torch import load_torch_model_from_memory
        >>> model = load_torch_model_from_memory(net, example_input=np.zeros((1, 3), np.float32))
        >>> type(model).__name__, str(model.device), type(model.module).__name__
        ('TorchModel', 'cpu', 'Sequential')
        >>> list(model.input_layers), list(model.response_infos)
        (['input'], ['0', '1', '2', 'output'])
        >>> model.response_infos["0"].shape
        (None, 4)
    """

    _backend: TorchBackend

    @property
    def module(self) -> Any:
        """The wrapped ``torch.nn.Module``."""
        return self._backend._module

    @property
    def device(self) -> Any:
        """The ``torch.device`` inference runs on."""
        return self._backend._device

    @property
    def response_infos(self) -> ResponseInfoMapping:
        """Mapping of response name to ``ResponseInfo``, known once the module has run.

        Before the first forward pass (no ``example_input`` and no batch yet) reading it raises an
        error that says how to run one: the names depend on how often each submodule runs.
        """
        return self._response_infos if self._backend.ready else _BeforeDryRun(self, "responses")

    @property
    def input_layers(self) -> ResponseInfoMapping:
        """Mapping of input name to ``ResponseInfo``, known once the module has run."""
        return self._input_layers if self._backend.ready else _BeforeDryRun(self, "inputs")

    def dry_run(self, example: Any) -> TorchModel:
        """Run one example batch to learn every response's name, shape, dtype and layout.

        ``example`` is what ``example_input`` takes (an array or tensor, a tuple of them, a
        mapping of forward argument names to them), a ``Batch``, or a producer, whose
        first batch (of 2 elements) is used. Returns the model.

        Examples:
            >>> import numpy as np
            >>> import torch
            >>> _ = torch.manual_seed(0)
            >>> layers = [torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)]
            >>> net = torch.nn.Sequential(*layers)
            >>> from introscope.torch import load_torch_model_from_memory
            >>> model = load_torch_model_from_memory(net).dry_run(np.zeros((2, 3), np.float32))
            >>> model.response_infos["output"].shape
            (None, 2)
        """
        from introscope.base import peek_first_batch

        backend = self._backend
        if isinstance(example, Batch):
            arrays = _pick_inputs(self, example)
        elif callable(example):  # a producer
            arrays = _pick_inputs(self, peek_first_batch(example, batch_size=2))
        else:
            names, var = backend.input_names, False
            arrays, names = _example_arrays(example, names, var, backend.optional_names)
            extra = [n for n in names if n not in backend.input_names]
            if extra:
                backend.add_optional_inputs(extra)
        backend.ready = False
        backend.dry_run(arrays)
        self._refresh()
        return self

    def _refresh(self) -> None:
        backend = self._backend
        self._response_infos = ResponseInfoMapping(
            {r.name: r for r in backend.get_response_infos()}
        )
        self._input_layers = ResponseInfoMapping(
            {r.name: r for r in backend.get_input_layer_responses()}
        )

    def __call__(self, requested_responses: OneManyOrNone[str] = None) -> PipelineStage:
        """A stage whose output batches hold the requested responses (all when ``None``)."""
        if self._backend.ready:
            return super().__call__(requested_responses)
        return _FirstBatchDryRun(self, requested_responses)


class _BeforeDryRun(ResponseInfoMapping):
    """What ``response_infos`` is before the module has run: reading it says what to do.

    It stays valid: once a pipeline's first batch has run the module, it reads the real infos
    (so ``IUA.introspect(..., response_infos=model.response_infos)`` works either way).
    """

    def __init__(self, model: TorchModel, what: str) -> None:
        self._model = model
        self._what = what

    @property
    def _infos(self) -> dict[str, ResponseInfo]:  # type: ignore[override]
        model = self._model
        if model._backend.ready:
            source = model._response_infos if self._what == "responses" else model._input_layers
            return source._infos
        name = type(model.module).__name__
        raise IntroscopeError(
            f"the {self._what} of the torch module {name} are known only after it has run once "
            f"(a submodule that runs twice gives two responses, name#0 and name#1, and shapes "
            f"depend on the input): load it with example_input= (one batch of your data, e.g. "
            f"x[:2]), or call model.dry_run(x) or model.dry_run(producer) first"
        )

    def __repr__(self) -> str:
        if self._model._backend.ready:
            return repr(self._model.response_infos)
        return f"ResponseInfoMapping(<{self._what} not known before the first forward pass>)"


class _FirstBatchDryRun(PipelineStage):
    """Model stage that learns the module's responses from the first batch, then runs as usual."""

    def __init__(self, model: TorchModel, requested: OneManyOrNone[str]) -> None:
        self._model = model
        self._requested = requested

    def _pipeline(self, producer: Producer) -> Producer:
        model, requested = self._model, self._requested

        def produce(batch_size: int) -> Iterator[Batch]:
            it = iter(checked_batches(producer, batch_size, allow_empty=True, what="upstream"))
            first = next(it, None)
            if first is None:
                return
            if not model._backend.ready:
                model._backend.dry_run(_pick_inputs(model, first))
                model._refresh()
            stage = Model.__call__(model, requested)
            yield from stage._pipeline(lambda _bs: itertools.chain([first], it))(batch_size)

        return produce

    def __repr__(self) -> str:
        return f"TorchModel.stage({self._requested!r}, dry run on the first batch)"


def _pick_inputs(model: TorchModel, batch: Batch) -> list[np.ndarray]:
    backend = model._backend
    names = backend.input_names
    fields = batch.fields
    if len(names) == 1 and len(fields) == 1:
        return [next(iter(fields.values()))]
    extra = set(fields) - set(names)
    if set(names) <= set(fields) and extra <= set(backend.optional_names):
        if extra:
            backend.add_optional_inputs(sorted(extra))
        return [fields[n] for n in backend.input_names]
    raise IntroscopeError(
        f"the model expects inputs named {names} but the batch has fields {sorted(fields)}; "
        f"rename fields with introscope.processors.FieldRenamer or drop extra ones with "
        f"FieldRemover"
    )


def _example_arrays(
    example_input: Any, names: list[str], var: bool, optional: list[str]
) -> tuple[list[np.ndarray], list[str]]:
    torch = torch_module()

    def as_array(x: Any, what: str) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach()
            x = (x.float() if x.dtype == torch.bfloat16 else x).cpu().numpy()
        if not isinstance(x, np.ndarray):
            hint = ""
            if isinstance(x, Mapping):
                # forward(batch: dict): introscope feeds forward's arguments one array each
                hint = (
                    f"; a forward that takes a dict of tensors needs a wrapper module whose "
                    f"forward takes them as arguments ({', '.join(map(str, x))}) and builds "
                    f"the dict"
                )
            raise IntroscopeError(
                f"{what} must be a numpy array or torch tensor, got {type(x).__name__}{hint}"
            )
        if x.ndim == 0:
            raise IntroscopeError(f"{what} needs a batch dimension (dimension 0), got a 0-d array")
        return x

    if isinstance(example_input, Mapping):
        unknown = set(example_input) - set(names) - set(optional)
        if unknown or not set(names) <= set(example_input):
            raise IntroscopeError(
                f"example_input names {sorted(example_input)} do not match the module's forward "
                f"inputs {names}" + (f" (optional: {optional})" if optional else "")
            )
        names = names + [n for n in optional if n in example_input]
        return [as_array(example_input[n], f"example_input[{n!r}]") for n in names], names
    items = list(example_input) if isinstance(example_input, (tuple, list)) else [example_input]
    arrays = [as_array(x, f"example_input[{i}]") for i, x in enumerate(items)]
    if len(arrays) == len(names) or (var and len(arrays) > len(names)):
        extra = [f"input_{i}" for i in range(len(names), len(arrays))]
        return arrays, names + extra
    raise IntroscopeError(
        f"the module's forward takes {len(names)} input(s) {names} but example_input holds "
        f"{len(arrays)}"
    )


def load_torch_model_from_memory(
    module: Any, *, example_input: Any = None, device: Any = None, cast_inputs: bool = True
) -> TorchModel:
    """Wrap a ``torch.nn.Module`` as an introscope [`Model`][introscope.base.Model].

    Args:
        module: the module; one response per submodule output, named by its dotted path, and
            ``"output"`` for what ``forward`` returns (see ``introscope.torch`` for tuples,
            dicts and modules called several times).
        example_input: a batch of inputs (array or tensor; a tuple of them, or a mapping of
            forward argument name to array, for several inputs) used for one dry run that fixes
            response names, shapes and dtypes. Without it the first batch is used. Every
            required forward argument is an input (keyword-only ones are passed by keyword);
            optional ones (``mask=None``) are inputs when the mapping or first batch names them.
        device: where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"``...); the module is moved there.
            ``None`` keeps the module where it is (CPU for a new module).
        cast_inputs: feed floating inputs (float64 from numpy or scikit-learn, float16) as the
            dtype of the module's floating parameters, so a float32 module takes float64 data.
            Integer and boolean inputs are always fed unchanged (embedding indices). ``False``
            feeds every input as it comes.

    Examples:
        >>> import numpy as np
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> layers = [torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)]
        >>> net = torch.nn.Sequential(*layers)
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.torch import load_torch_model_from_memory
        >>> model = load_torch_model_from_memory(net, example_input=np.zeros((1, 3), np.float32))
        >>> data = producer_from_batches(Batch({"input": np.ones((5, 3), np.float32)}))
        >>> responses = peek_first_batch(pipeline(data, model(["1", "output"])), batch_size=5)
        >>> {name: array.shape for name, array in responses.fields.items()}
        {'1': (5, 4), 'output': (5, 2)}
    """
    torch = torch_module()
    if not isinstance(module, torch.nn.Module):
        raise IntroscopeError(
            f"load_torch_model_from_memory needs a torch.nn.Module, got {type(module).__name__}"
        )
    dev = resolve_device(device, module)
    if device is not None:
        module.to(dev)
    names, var = forward_input_names(module)
    optional, keyword = forward_keyword_names(module)
    arrays = None
    if example_input is not None:
        arrays, names = _example_arrays(example_input, names, var, optional)
    elif not names:
        if not var:
            raise IntroscopeError(f"{type(module).__name__}.forward takes no input tensor")
        names = ["input_0"]
    backend = TorchBackend(
        module,
        dev,
        names,
        optional_names=optional,
        keyword_names=keyword,
        cast_inputs=cast_inputs,
    )
    if arrays is not None:
        backend.dry_run(arrays)
    return TorchModel(backend)


def _load_state_dict(path: pathlib.Path) -> Mapping[str, Any]:
    torch = torch_module()
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: torch.from_numpy(data[k].copy()) for k in data.files}
        except (OSError, ValueError) as exc:
            raise IntroscopeError(f"{path} is not a readable .npz state dict: {exc}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-state-dict files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IntroscopeError(
            f"could not load {path} as a state dict with weights_only=True ({first}). "
            f"Files holding pickled modules are refused because loading them runs arbitrary "
            f"code: save module.state_dict() instead; for a TorchScript file leave out "
            f"model_constructor"
        ) from exc
    if isinstance(state, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise IntroscopeError(
            f"{path} does not hold a state dict (a mapping of parameter names to tensors), "
            f"got {type(state).__name__}"
        )
    return state


def load_torch_model_from_path(
    path: PathOrStr,
    model_constructor: Callable[[], Any] | None = None,
    *,
    example_input: Any = None,
    device: Any = None,
    strict: bool = True,
    cast_inputs: bool = True,
) -> TorchModel:
    """Load a TorchScript file, or a state dict into ``model_constructor()``, as a ``Model``.

    Args:
        path: a TorchScript file (``torch.jit.save``; only its ``output`` response is available,
            because compiled code does not run Python hooks), or with ``model_constructor`` a
            ``torch.save(module.state_dict(), path)`` file (loaded with ``weights_only=True``;
            a ``{"state_dict": ...}`` checkpoint works too) or an ``.npz`` of parameter arrays.
        model_constructor: builds the module the state dict belongs to.
        strict: passed to ``load_state_dict``.
        example_input: as for ``load_torch_model_from_memory``.
        device: as for ``load_torch_model_from_memory``.
        cast_inputs: as for ``load_torch_model_from_memory``.

    Examples:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> import torch
        >>> from introscope.torch import load_torch_model_from_path
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "linear.pt"
        >>> torch.save(torch.nn.Linear(3, 2).state_dict(), path)
        >>> model = load_torch_model_from_path(
        ...     path, lambda: torch.nn.Linear(3, 2), example_input=np.zeros((1, 3), np.float32)
        ... )
        >>> list(model.response_infos)
        ['output']
        >>> tmp.cleanup()
    """
    torch = torch_module()
    p = resolve_path_or_str(path)
    if not p.exists():
        raise IntroscopeError(f"model file {str(p)!r} does not exist")
    if not p.is_file():
        raise IntroscopeError(f"model path {str(p)!r} is not a file")
    if model_constructor is None:
        try:
            module = torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:  # torch raises RuntimeError or ValueError for non-archives
            raise IntroscopeError(
                f"{str(p)!r} is not a TorchScript file; for a state dict saved with "
                f"torch.save(module.state_dict(), path) also pass model_constructor (a whole "
                f"module pickled with torch.save(module, path) is not loaded: save its "
                f"state_dict() instead)"
            ) from exc
    else:
        state = _load_state_dict(p)
        module = model_constructor()
        if not isinstance(module, torch.nn.Module):
            raise IntroscopeError(
                f"model_constructor must return a torch.nn.Module, got {type(module).__name__}"
            )
        try:
            module.load_state_dict(state, strict=strict)
        except RuntimeError as exc:
            raise IntroscopeError(
                f"the state dict in {str(p)!r} does not fit {type(module).__name__}: {exc}"
            ) from exc
    return load_torch_model_from_memory(
        module, example_input=example_input, device=device, cast_inputs=cast_inputs
    )
