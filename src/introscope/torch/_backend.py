"""The torch ``ModelBackend``: runs a module batch by batch and captures responses with hooks.

Response names:

- ``"layer1.0.conv1"`` -- the output of the submodule at that dotted path;
- ``"output"`` -- what the module's ``forward`` returns (``"output_"`` if a submodule is
  itself called ``output``);
- ``"lstm[0]"``, ``"lstm[1][0]"``, ``"head[logits]"`` -- one response per tensor of a module that
  returns (nested) tuples, lists or dicts;
- ``"block.relu#0"``, ``"block.relu#1"`` -- one response per call of a module that runs several
  times in one forward pass, in call order (no plain ``"block.relu"`` then).

Names, shapes and dtypes come from one dry run on an example input (or on the first batch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from introscope.base import ResponseInfo
from introscope.base._model import unknown_name_error
from introscope.base._response_info import UNKNOWN_UPSTREAM, channels_first_axis
from introscope.exceptions import IntroscopeError

from ._capture import (
    call_name,
    eval_mode,
    flatten_output,
    get_output,
    key_suffix,
    naming_root,
    numpy_dtype,
    to_numpy,
    torch_module,
)
from ._inputs import forward_error, to_tensors
from ._layer_kinds import _KINDS, layer_kind

__all__ = ["TorchBackend"]

_LOG = logging.getLogger("introscope.torch")


class _StopForward(BaseException):
    """Raised by a hook once every requested response is captured, to skip the rest of forward.

    A BaseException so that a model's own ``except Exception`` cannot swallow it.
    """


@dataclass(frozen=True)
class _Spec:
    name: str
    path: str  # dotted module path; "" is the root, whose response is forward's return value
    call: int  # which call of the module within one forward pass
    key: tuple[Any, ...]  # position inside the module's (nested) output
    info: ResponseInfo


class TorchBackend:
    """Runs a ``torch.nn.Module`` for ``introscope.base.Model``; see the module docstring.

    Examples:
        >>> import numpy as np
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> layers = [torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)]
        >>> net = torch.nn.Sequential(*layers)
        >>> from introscope.torch import TorchBackend
        >>> backend = TorchBackend(net, torch.device("cpu"), ["input"])
        >>> backend.dry_run([np.zeros((1, 3), dtype=np.float32)])
        >>> [info.name for info in backend.get_response_infos()]
        ['0', '1', '2', 'output']
        >>> inputs = {"input": np.ones((5, 3), np.float32)}
        >>> out = backend.run_inference(inputs, frozenset({"output"}))
        >>> out["output"].shape
        (5, 2)
    """

    def __init__(
        self,
        module: Any,
        device: Any,
        input_names: Sequence[str],
        *,
        optional_names: Sequence[str] = (),
        keyword_names: frozenset[str] = frozenset(),
        cast_inputs: bool = True,
    ) -> None:
        torch = torch_module()
        self._cast_inputs = cast_inputs
        self._torch = torch
        self._module = module
        self._device = device
        self._input_names = list(input_names)
        # forward's optional inputs (usable when the example or first batch names them), and the
        # inputs passed by keyword: keyword-only ones and optional ones.
        self.optional_names = list(optional_names)
        self._keyword_names = keyword_names
        self._all_modules = list(module.modules())
        # no_grad, not inference_mode: a tensor a module keeps from a forward (a cached rotary
        # table, a mask) would be an inference tensor, and training the model afterwards would
        # fail ("Inference tensors cannot be saved for backward"), as would TorchScript code
        # specialised while autograd was on.
        self._no_grad = torch.no_grad
        self._hookable = self._find_hookable(module)
        self._root_name = "output"
        while self._root_name in self._hookable:
            self._root_name += "_"
        self._input_infos: list[ResponseInfo] = []
        self._specs: dict[str, _Spec] = {}
        self._not_batched: dict[str, tuple[int, ...]] = {}  # outputs left out by the dry run
        self._calls: dict[str, int] = {}
        self.ready = False
        self._preliminary_infos()

    # -- structure ------------------------------------------------------------------------------

    def _find_hookable(self, module: Any) -> dict[str, Any]:
        # TorchScript modules run compiled code that never calls Python hooks, and refuse them:
        # neither they nor anything inside them can be captured (their caller's output can).
        script = self._torch.jit.ScriptModule
        if isinstance(module, script):
            _LOG.info("TorchScript module: only its output is available as a response")
            return {}
        hookable: dict[str, Any] = {}
        skip: list[str] = []
        for path, sub in naming_root(module).named_modules():
            if not path or any(path.startswith(p + ".") for p in skip):
                continue
            if isinstance(sub, script):
                skip.append(path)
                continue
            hookable[path] = sub
        return hookable

    def _layer(self, path: str) -> ResponseInfo.Layer:
        module = self._hookable[path] if path else self._module
        typename = getattr(module, "original_name", None) or type(module).__name__
        kind = layer_kind(module)
        if kind is ResponseInfo.LayerKind.UNKNOWN and isinstance(
            module, self._torch.jit.ScriptModule
        ):
            kind = _KINDS.get(typename, kind)
        return ResponseInfo.Layer(name=path or self._root_name, kind=kind, typename=typename)

    def _param_dtype(self) -> np.dtype:
        """The dtype of the module's first floating parameter or buffer (float32 without any)."""
        for tensors in (self._module.parameters(), self._module.buffers()):
            for p in tensors:
                if p.is_floating_point():
                    return numpy_dtype(p.dtype)
        return np.dtype(np.float32)

    def _torch_only_dtype(self) -> Any:
        """The parameters' torch dtype when numpy has none (bfloat16), else None.

        Floating inputs are then built in float32 (their numpy dtype) and cast on the way in.
        """
        if not self._cast_inputs:
            return None
        for tensors in (self._module.parameters(), self._module.buffers()):
            for p in tensors:
                if p.is_floating_point():
                    return p.dtype if p.dtype == self._torch.bfloat16 else None
        return None

    def _input_dtype(self, name: str, dtype: np.dtype) -> np.dtype:
        """What a floating input is fed as: the parameters' dtype (float64 data, float32 net)."""
        if not self._cast_inputs or not np.issubdtype(dtype, np.floating):
            return dtype
        target = self._param_dtype()
        if target != dtype:
            _LOG.debug(
                "model input %r: %s arrays are fed as %s, the dtype of the module's parameters "
                "(cast_inputs=False to feed them unchanged)",
                name,
                dtype,
                target,
            )
        return target

    def _preliminary_infos(self) -> None:
        # Before a dry run only names and layers are known; shape () means "not known yet".
        dtype = self._param_dtype()
        self._input_infos = [
            ResponseInfo(name, dtype, (), ResponseInfo.Layer(name, _PLACEHOLDER, "Tensor"))
            for name in self._input_names
        ]
        specs = {}
        for path in [*self._hookable, ""]:
            name = path or self._root_name
            specs[name] = _Spec(name, path, 0, (), ResponseInfo(name, dtype, (), self._layer(path)))
        self._specs = specs

    def get_response_infos(self) -> list[ResponseInfo]:
        """Every response the model can produce, in the model's order."""
        return [s.info for s in self._specs.values()]

    def get_input_layer_responses(self) -> list[ResponseInfo]:
        """The model's inputs."""
        return list(self._input_infos)

    @property
    def input_names(self) -> list[str]:
        """Names of the forward arguments fed from batch fields, in order."""
        return list(self._input_names)

    def add_optional_inputs(self, names: Sequence[str]) -> None:
        """Feed these optional forward inputs too (before the dry run only)."""
        assert not self.ready and set(names) <= set(self.optional_names)
        self._input_names += [n for n in self.optional_names if n in names]
        self._preliminary_infos()

    # -- dry run --------------------------------------------------------------------------------

    def unavailable(self, name: str) -> str | None:
        """Why ``name``, an output the dry run saw, is not a response (None: not seen)."""
        if name not in self._not_batched:
            return None
        return (
            f"response {name!r} is not available: in the dry run its shape was "
            f"{self._not_batched[name]}, whose dimension 0 does not follow the number of "
            f"elements; introscope needs the batch on dimension 0 (e.g. batch_first=True for "
            f"recurrent layers, or another module whose output has it)"
        )

    def _record_shapes(
        self, arrays: Sequence[np.ndarray], order: list[tuple[str, int]] | None = None
    ) -> dict[str, list[list[tuple[tuple[Any, ...], Any]]]]:
        """One forward pass: per module path, per call, ``(key, (shape, dtype))`` of each output
        tensor (the model's own output under ``""``); ``order`` gets ``(path, call)`` in the
        order the calls finished."""
        tensors = self._to_tensors(dict(zip(self._input_names, arrays)), check=False)
        records: dict[str, list[list[tuple[tuple[Any, ...], Any]]]] = {}

        def make_hook(path: str) -> Callable[[Any, Any, Any], None]:
            def hook(_module: Any, _args: Any, out: Any) -> None:
                calls = records.setdefault(path, [])
                if order is not None:
                    order.append((path, len(calls)))
                calls.append([(k, (tuple(t.shape), t.dtype)) for k, t in flatten_output(out)])

            return hook

        handles = [m.register_forward_hook(make_hook(p)) for p, m in self._hookable.items()]
        try:
            with self._no_grad(), eval_mode(self._all_modules):
                out = self._forward(tensors)
        finally:
            for h in handles:
                h.remove()
        records[""] = [[(k, (tuple(t.shape), t.dtype)) for k, t in flatten_output(out)]]
        if order is not None:
            order.append(("", 0))
        return records

    def _fixed_first_dims(
        self,
        arrays: Sequence[np.ndarray],
        records: Mapping[str, list[list[tuple[tuple[Any, ...], Any]]]],
    ) -> set[tuple[str, int, tuple[Any, ...]]]:
        """Outputs whose dimension 0 equals the dry run's batch size by coincidence.

        A second pass with another number of elements (the first element repeated, 2 or 3
        rows): an output whose dimension 0 does not follow it is not one row per element, e.g.
        the (layers, batch, hidden) state of a 2-layer LSTM run on a batch of 2.
        """
        n = arrays[0].shape[0]
        other = 3 if n == 2 else 2
        try:
            second = self._record_shapes([np.repeat(a[:1], other, axis=0) for a in arrays])
        except Exception:  # noqa: BLE001 - a model that needs its batch as given: keep pass 1
            _LOG.debug("dry run: the second pass (batch of %d) failed; not used", other)
            return set()
        fixed = set()
        for path, calls in records.items():
            again = second.get(path, [])
            for call, outputs in enumerate(calls):
                shapes = dict(again[call]) if call < len(again) else {}
                for key, (shape, _) in outputs:
                    if shape and shape[0] == n and key in shapes:
                        if not shapes[key][0] or shapes[key][0][0] != other:
                            fixed.add((path, call, key))
        return fixed

    def dry_run(self, arrays: Sequence[np.ndarray]) -> None:
        """Run ``arrays`` (one batch per input, in input order) once to learn every response."""
        self._input_infos = [
            ResponseInfo(
                name,
                self._input_dtype(name, np.dtype(a.dtype)),
                (None, *a.shape[1:]),
                ResponseInfo.Layer(name, _PLACEHOLDER, "Tensor"),
            )
            for name, a in zip(self._input_names, arrays)
        ]
        order: list[tuple[str, int]] = []
        records = self._record_shapes(arrays, order)
        batch_size = arrays[0].shape[0] if arrays else None
        fixed = self._fixed_first_dims(arrays, records) if batch_size else set()
        specs: dict[str, _Spec] = {}
        not_batched = []
        self._not_batched = {}
        # A (batch, sequence, features) model input: what is computed from it element-wise
        # keeps no channel axis (rank-4 and -5 inputs are NCHW / NCDHW).
        layouts: dict[tuple[int, ...], int | None] = {
            tuple(a.shape[1:]): None for a in arrays if getattr(a, "ndim", 0) == 3
        }
        # In the order the calls finished: the calls of a shared module stay where they ran
        # (its second call after the layers before it), and layouts follow the data.
        for path, call in dict.fromkeys(order):
            calls = records[path]
            outputs = calls[call]
            name_base = path or self._root_name
            layer = self._layer(path)
            for key, (shape, tdtype) in outputs:
                name = call_name(name_base, call, len(calls) > 1) + key_suffix(key)
                if (
                    not shape
                    or (batch_size is not None and shape[0] != batch_size)
                    or (path, call, key) in fixed
                ):
                    # e.g. an LSTM's (layers, batch, hidden) state: not one row per element
                    not_batched.append(f"{name} {shape}")
                    self._not_batched[name] = shape
                    continue
                # torch is channels-first (N, C, ...); an activation or sum keeps the layout
                # of the latest response of its shape (a ReLU after a Linear on (N, L, D)
                # has features last), else NCL / NCHW / NCDHW by rank.
                upstream = layouts.get(shape[1:], UNKNOWN_UPSTREAM)
                axis = channels_first_axis(layer.kind, len(shape), upstream)
                layouts[shape[1:]] = axis
                info = ResponseInfo(name, numpy_dtype(tdtype), (None, *shape[1:]), layer, axis)
                specs[name] = _Spec(name, path, call, key, info)
        if not_batched:
            _LOG.info(
                "outputs left out because dimension 0 is not the batch of %s: %s",
                batch_size,
                ", ".join(not_batched),
            )
        unused = [p for p in self._hookable if p not in records]
        if unused:
            _LOG.debug("submodules that did not run in the dry run (no response): %s", unused)
        self._specs = specs
        self._calls = {path: len(calls) for path, calls in records.items()}
        self.ready = True

    # -- inference ------------------------------------------------------------------------------

    def _forward(self, tensors: list[Any]) -> Any:
        try:
            args = [t for n, t in zip(self._input_names, tensors) if n not in self._keyword_names]
            kwargs = {n: t for n, t in zip(self._input_names, tensors) if n in self._keyword_names}
            return self._module(*args, **kwargs)
        except (_StopForward, IntroscopeError):
            raise
        except Exception as exc:
            raise forward_error(self._module, self._input_names, tensors, exc) from exc

    def _to_tensors(self, inputs: Mapping[str, np.ndarray], *, check: bool = True) -> list[Any]:
        return to_tensors(
            self._torch,
            inputs,
            self._input_names,
            self._input_infos,
            self._device,
            self._torch_only_dtype,
            check=check,
        )

    def _grab(self, out: Any, spec: _Spec) -> Any:
        try:
            tensor = get_output(out, spec.key)
        except (IndexError, KeyError, TypeError):
            tensor = None
        if not isinstance(tensor, self._torch.Tensor):
            raise IntroscopeError(
                f"response {spec.name!r} is a {type(tensor).__name__} in this batch, not a tensor as "
                f"in the dry run; the module's output structure changed between batches"
            )
        # Copy at once: later in-place ops (ReLU(inplace=True), x += ...) would change the data.
        tensor = tensor.detach()
        if tensor.device.type == "cpu":
            return tensor.clone()
        return tensor.to("cpu", non_blocking=tensor.device.type == "cuda")

    def run_inference(
        self, inputs: Mapping[str, np.ndarray], outputs: frozenset[str]
    ) -> dict[str, np.ndarray]:
        """Run one batch and return the requested responses as numpy arrays."""
        torch = self._torch
        if not self.ready:
            missing = [n for n in self._input_names if n not in inputs]
            if missing:
                raise IntroscopeError(
                    f"the model expects inputs {self._input_names} but got {sorted(inputs)}"
                )
            self.dry_run([inputs[n] for n in self._input_names])
        unknown = set(outputs) - set(self._specs)
        if unknown:
            for name in sorted(unknown):
                reason = self.unavailable(name)
                if reason:
                    raise IntroscopeError(reason)
            raise unknown_name_error("response", unknown, self._specs)
        tensors = self._to_tensors(inputs)
        batch_size = int(tensors[0].shape[0]) if tensors else 0
        specs = [self._specs[n] for n in outputs]
        wanted: dict[str, dict[int, list[_Spec]]] = {}
        for s in specs:
            if s.path:
                wanted.setdefault(s.path, {}).setdefault(s.call, []).append(s)
        n_hooked = sum(1 for s in specs if s.path)
        stop_early = n_hooked == len(specs)  # forward's return value is not needed
        captured: dict[str, Any] = {}
        counts: dict[str, int] = dict.fromkeys(wanted, 0)

        def make_hook(
            path: str, by_call: dict[int, list[_Spec]]
        ) -> Callable[[Any, Any, Any], None]:
            def hook(_module: Any, _args: Any, out: Any) -> None:
                call = counts[path]
                counts[path] = call + 1
                for s in by_call.get(call, ()):
                    captured[s.name] = self._grab(out, s)
                if stop_early and len(captured) == n_hooked:
                    raise _StopForward

            return hook

        handles = [
            self._hookable[p].register_forward_hook(make_hook(p, by_call))
            for p, by_call in wanted.items()
        ]
        stopped = False
        out = None
        try:
            with self._no_grad(), eval_mode(self._all_modules):
                try:
                    out = self._forward(tensors)
                except _StopForward:
                    stopped = True
        finally:
            for h in handles:
                h.remove()
        if not stopped:
            self._check_calls(counts)
            for s in specs:
                if not s.path:
                    captured[s.name] = self._grab(out, s)
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        result = {}
        for name, t in captured.items():
            arr = to_numpy(t, name)
            if arr.ndim == 0 or arr.shape[0] != batch_size:
                raise IntroscopeError(
                    f"response {name!r} has shape {arr.shape}, whose dimension 0 is not the batch "
                    f"of {batch_size} elements; introscope needs the batch on dimension 0 "
                    f"(e.g. batch_first=True for recurrent layers)"
                )
            result[name] = arr
        return result

    def _check_calls(self, counts: Mapping[str, int]) -> None:
        for path, n in counts.items():
            expected = self._calls.get(path, 1)
            if n != expected:
                raise IntroscopeError(
                    f"submodule {path!r} ran {n} time(s) in this forward pass but {expected} "
                    f"time(s) in the dry run that named its responses; introscope cannot "
                    f"name the responses of a module whose call count changes between batches"
                )


_PLACEHOLDER = ResponseInfo.LayerKind.PLACEHOLDER
