"""The forward-hook monitor: feed any introscope accumulator from chosen modules of a live model.

``Monitor(model, accumulator, layers)`` registers forward hooks (a context manager: attached on
entry, detached on exit); every output of a watched module goes to
``accumulator.update(name, tensor, where="module output")`` on the model's own device, and
``monitor.result`` is ``accumulator.finalize()``. ``IUA.monitor`` and ``PFA.monitor`` are thin
factories of it.

Response names are the adapter's (:func:`._capture.call_name`): a module's dotted path, or
``path#k`` for the k-th call (from 0) of a module that runs several times in one forward pass.
The adapter learns the call counts from a dry run; a monitor learns them as the model runs: once
a module is seen to run twice in one pass, what was filed under the plain name is renamed
``path#0`` (``accumulator.rename_field``). A call outside a forward pass of the model counts as
the first call. The first output of each response also gives the accumulator a
``ResponseInfo`` as the adapter builds it (layer kind, channels-first layout), when the
accumulator takes one (``add_response_info``). Calls made while autograd runs a backward pass
(activation checkpointing recomputing a block) are not fed: those samples were seen in the
forward.

Each hook is a small ``_Hook`` object that holds the monitor and its module weakly, so
``copy.deepcopy(model)`` (a checkpoint, an EMA copy, ``PFA.prune``) and ``torch.save(model)``
work while a monitor is attached: a copy shares the hook objects, which ignore calls on any
module but their own (the copy is not watched), and a saved model holds inert hooks. A monitor
dropped while attached detaches (with a warning) when it is garbage-collected, instead of
counting on unseen.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, cast

import numpy as np

from introscope.base import ResponseInfo
from introscope.base._response_info import UNKNOWN_UPSTREAM, channels_first_axis
from introscope.exceptions import IntroscopeError, require

from ._capture import call_name, flatten_output, numpy_dtype

# _inert stays importable here: models saved whole by earlier versions name it at this path.
from ._hooks import (  # noqa: F401
    _batch_rows,
    _compiling,
    _Hook,
    _in_trace_check,
    _inert,
    _orphaned,
    _Pass,
    disable_under_dynamo,
    disable_when_dynamo_loads,
)
from ._layer_kinds import layer_kind
from ._modules import resolve_modules
from ._monitor_messages import (
    not_a_tensor,
    not_picklable,
    on_meta_device,
    under_transform,
    warn_late_layout,
    warn_outside_pass,
    warn_partial_pass,
    warn_replica,
    warn_rows_differ,
    warn_saw_nothing_compiled,
    warn_sequence_first,
    warn_unattached,
)

__all__ = ["Monitor", "resolve_modules"]  # resolve_modules: re-exported

_M = TypeVar("_M", bound="Monitor[Any]")

# Layouts are followed until every watched module has run once in a pass that did not raise, for
# at most this many passes (the trackers cost a hook call per module per pass).
_FOLLOW_PASSES = 16
_R = TypeVar("_R")


class Monitor(Generic[_R]):
    """Forward hooks on chosen modules of a ``torch.nn.Module`` feeding an accumulator.

    Args:
        model: the ``torch.nn.Module`` whose forward passes delimit the calls.
        accumulator: an introscope accumulator (``IUA()``, ``PFA`` covariance state, ...).
        layers: module names (as in ``model.named_modules()``) or modules; None picks every
            module whose class name is in ``default_types``.
        owner: starts every error message (``"IUA.monitor"``).
        transform: applied to each output tensor before it is folded (e.g. spatial pooling);
            gets ``(response name, tensor, its ResponseInfo)``.
    """

    def __init__(
        self,
        model: Any,
        accumulator: Any,
        layers: str | Iterable[Any] | None = None,
        *,
        owner: str = "monitor",
        default_types: tuple[str, ...] = (),
        transform: Callable[[str, Any, ResponseInfo], Any] | None = None,
    ) -> None:
        self._torch = torch = require("torch", "torch", owner)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{owner} needs a torch.nn.Module, got {type(model).__name__}")
        self._owner = owner
        self._model = model
        # Passes in progress, one per thread (a model may run in several threads at once);
        # the lock guards the accumulator and what the threads share.
        self._local = threading.local()
        # Reentrant: a signal handler may read monitor.result while a hook holds it.
        self._lock = threading.RLock()
        self._inflight: list[_Pass] = []  # passes begun and not ended, in every thread
        self._described: set[str] = set()
        self._repeated: set[str] = set()  # modules seen running several times in one pass
        self._modules = resolve_modules(model, layers, owner=owner, default_types=default_types)
        self.accumulator = accumulator
        self._transform = transform
        self._handles: list[Any] = []
        # Layouts as the adapter infers them: during the first forward pass every module's
        # outputs are followed (an activation keeps the layout of the latest output of its
        # shape), then those hooks go; each response's ResponseInfo is kept (also over resets).
        self._layouts: dict[tuple[int, ...], int | None] = {}
        self._infos: dict[str, ResponseInfo] = {}
        self._trackers: list[Any] = []
        self._tracked = False
        self._watch: dict[int, Callable[..., None]] = {}  # id(module) -> its hook, attached
        self._finalizer: Any = None
        self._warned_rows: set[str] = set()
        self._warned_sequence = False
        self._warned_outside: set[str] = set()
        self._warned_replica = False
        self._warned_partial = False
        self._ever_attached = False
        self._warned_unattached = False
        self._entered = 0  # depth of `with monitor:` blocks
        self._keep_on_exit = False  # attached by attach() before the outermost `with`
        self._passes_seen = 0  # forward passes begun since the hooks were registered
        self._followed = 0  # passes ended while the layouts were followed
        self._warned_compiled = False
        self._warned_late: set[str] = set()
        self._dtypes: dict[str, Any] = {}  # torch dtype each response's ResponseInfo describes

    @property
    def accumulator(self) -> Any:
        """The accumulator the hooks feed; assign another (e.g. one loaded from a checkpoint
        with ``from_state_dict``) to go on from it."""
        return self._acc

    @accumulator.setter
    def accumulator(self, accumulator: Any) -> None:
        for verb in ("update", "finalize", "reset", "rename_field"):
            if not callable(getattr(accumulator, verb, None)):
                raise TypeError(
                    f"{self._owner}: the accumulator must have {verb}(); got "
                    f"{type(accumulator).__name__}"
                )
        with self._lock:
            self._acc = accumulator
            self._describe = getattr(accumulator, "add_response_info", None)
            self._described = set()
            # An accumulator resumed from a checkpoint knows which modules run several times a
            # pass: their data is already under name#0, name#1, ...
            fields = set(getattr(accumulator, "fields", ()) or ())
            self._repeated |= {n for n in self._modules if call_name(n, 0, True) in fields}

    @property
    def state(self) -> Any:
        """The accumulator fed by the hooks (the same object as :attr:`accumulator`)."""
        return self._acc

    @property
    def result(self) -> _R:
        """The result of everything seen since the last reset: ``accumulator.finalize()``, as a
        snapshot that later batches and :meth:`reset` leave as it is."""
        with self._lock:
            acc = self._acc
            if not self._ever_attached and not self._warned_unattached:
                if not list(getattr(acc, "fields", ()) or ()):
                    self._warned_unattached = True
                    warn_unattached(self._owner)
            if self.attached:
                self._check_saw_passes()
            result = acc.finalize()
            if result is acc and callable(getattr(acc, "spawn", None)):
                # An accumulator that is its own result (IUA, as in DNIKit): a copy.
                result = acc.merge(acc.spawn()).finalize()
            return cast(_R, result)

    def reset(self) -> None:
        """Forget everything seen so far (hooks stay attached), e.g. once per epoch."""
        with self._lock:
            self._acc.reset()
            self._described.clear()
            now = self._local.__dict__.pop("now", None)
            if now is not None and now in self._inflight:
                self._inflight.remove(now)

    def _pass(self) -> _Pass:
        """This thread's forward pass."""
        now = self._local.__dict__.get("now")
        if now is None:
            now = self._local.now = _Pass()
        return now

    # ------------------------------------------------------------------ hooks
    def attach(self: _M) -> _M:
        """Register the forward hooks (idempotent)."""
        self._ever_attached = True
        if not self._handles:
            model = self._model
            self._passes_seen = 0
            disable_when_dynamo_loads(self._torch)
            self._watch = {id(m): self._make_hook(n, m) for n, m in self._modules.items()}
            self._handles.append(model.register_forward_pre_hook(_Hook(self, model, "_begin_pass")))
            # always_call: a forward pass that raises still ends (the next one starts afresh).
            self._handles.append(
                model.register_forward_hook(_Hook(self, model, "_end_pass"), always_call=True)
            )
            for module in self._modules.values():
                self._handles.append(module.register_forward_hook(_Hook(self, module, "_watched")))
            if not self._tracked:
                # Registered after the watched modules' hooks: on a watched module the
                # layout of its input is read before its own output is recorded.
                script = self._torch.jit.ScriptModule
                for _, module in model.named_modules():
                    if not isinstance(module, script):
                        self._trackers.append(
                            module.register_forward_hook(_Hook(self, module, "_track"))
                        )
                        if getattr(module, "batch_first", None) is False:
                            # nn.LSTM, nn.MultiheadAttention, nn.TransformerEncoderLayer, ...
                            self._trackers.append(
                                module.register_forward_pre_hook(
                                    _Hook(self, module, "_check_sequence_first")
                                )
                            )
            self._finalizer = weakref.finalize(
                self, _orphaned, self._handles + self._trackers, self._owner, weakref.ref(model)
            )
            self._finalizer.atexit = False
        return self

    def detach(self) -> None:
        """Remove every hook this monitor registered."""
        if self._handles:
            self._check_saw_passes()
        self._entered = 0
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._watch = {}
        for handle in self._handles + self._trackers:
            handle.remove()
        self._handles.clear()
        self._trackers.clear()

    @property
    def attached(self) -> bool:
        """Whether the hooks are registered."""
        return bool(self._handles)

    def __enter__(self: _M) -> _M:
        # Re-entrant, like torch.no_grad: a helper's `with monitor:` inside the training loop's
        # keeps the hooks until the outermost block ends. A monitor attached by attach() before
        # the outermost block stays attached after it.
        if self._entered == 0:
            self._keep_on_exit = self.attached
        self._entered += 1
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self._entered = max(0, self._entered - 1)
        if self._entered == 0 and not self._keep_on_exit:
            self.detach()

    def _check_saw_passes(self) -> None:
        """Warn (once) when attached hooks saw no forward pass while torch.compile has compiled
        code here: compiled graphs of a model compiled before the monitor skip its hooks."""
        if self._passes_seen or self._warned_compiled:
            return
        dynamo = sys.modules.get("torch._dynamo.utils")
        counters = getattr(dynamo, "counters", None)
        try:
            compiled = bool(counters is not None and counters["frames"]["ok"])
        except Exception:  # noqa: BLE001 - torch's private counters changed: say nothing
            compiled = False
        if compiled:
            self._warned_compiled = True
            warn_saw_nothing_compiled(self._owner)

    def _begin_pass(self, _module: Any, args: tuple[Any, ...]) -> None:
        # The model's own forward starts a pass. A depth left behind means a pass that ended
        # without its end hook (KeyboardInterrupt skips torch's always_call hooks), not a
        # model that calls itself: this is a new pass.
        with self._lock:
            stale = self._local.__dict__.get("now")
            if stale is not None and stale in self._inflight:
                self._inflight.remove(stale)  # its end hook never ran (KeyboardInterrupt)
            now = self._local.now = _Pass()
            self._inflight.append(now)
            self._passes_seen += 1
        # An exception being handled around this pass is not one the pass raises.
        now.outer_exc = sys.exc_info()[1]
        tracing = self._torch._C._get_tracing_state()
        if _compiling(self._torch):
            disable_under_dynamo(self._torch)  # torch.compile after attach: from its next trace
        now.batch = None if tracing else _batch_rows(self._torch.Tensor, args)
        # torch.jit.trace then checks the trace by running the model again, untraced.
        now.checking = not tracing and not _compiling(self._torch) and _in_trace_check()
        if not self._tracked:
            # As the adapter: a (batch, sequence, features) input gives what is computed from it
            # element-wise no channel axis.
            with self._lock:
                for arg in args:
                    if isinstance(arg, self._torch.Tensor) and arg.dim() == 3:
                        self._layouts.setdefault(tuple(arg.shape[1:]), None)
        if self._tracked and self._trackers:
            # Removed here, not in _end_pass: that runs while torch iterates the root
            # module's forward hooks, one of which is a tracker.
            with self._lock:
                for handle in self._trackers:
                    handle.remove()
                self._trackers.clear()
        now.depth = 1

    def _end_pass(self, *_: Any) -> None:
        now = self._pass()
        now.depth = max(0, now.depth - 1)
        if now.depth:
            return
        with self._lock:
            if now in self._inflight:
                self._inflight.remove(now)
        exc = sys.exc_info()[1]
        raised = exc is not None and exc is not now.outer_exc
        if now.fed and raised:
            # torch runs this hook (always_call) while the forward's exception propagates.
            self._partial_pass(now.fed)
        if self._trackers and not now.checking and not self._torch._C._get_tracing_state():
            # Layouts are known once a pass that did not raise has run every watched module
            # (a first pass may skip a branch, or fail early). Not after torch.jit.trace's
            # passes: removing hooks between its trace and its check makes them differ.
            self._followed += 1
            if (not raised and self._all_described()) or self._followed >= _FOLLOW_PASSES:
                self._tracked = True
        now.checking = False

    def _all_described(self) -> bool:
        infos = self._infos
        return all(n in infos or call_name(n, 0, True) in infos for n in self._modules)

    def _partial_pass(self, counted: int) -> None:
        if self._warned_partial:
            return
        self._warned_partial = True
        warn_partial_pass(self._owner, counted)

    def _watched(self, module: Any, inputs: Any, output: Any) -> None:
        hook = self._watch.get(id(module))
        if hook is not None:
            hook(module, inputs, output)

    def _track(self, module: Any, _inputs: Any, output: Any) -> None:
        if self._tracked:
            return
        kind = layer_kind(module)
        with self._lock:
            for _, tensor in flatten_output(output):
                shape = tuple(tensor.shape)
                upstream = self._layouts.get(shape[1:], UNKNOWN_UPSTREAM)
                self._layouts[shape[1:]] = channels_first_axis(kind, len(shape), upstream)

    def _make_hook(self, name: str, module: Any) -> Callable[[Any, Any, Any], None]:
        tensor_type = self._torch.Tensor
        # The id of the autograd graph being run, -1 outside backward().
        in_backward = getattr(self._torch._C, "_current_graph_task_id", lambda: -1)

        tracing = self._torch._C._get_tracing_state
        # torch.func's grad/vmap wrap the tensors a module returns inside their transforms.
        functorch = getattr(self._torch._C, "_functorch", None)
        is_wrapped = getattr(functorch, "is_functorch_wrapped_tensor", None) or _never

        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            if in_backward() != -1 or tracing():
                # Activation checkpointing runs modules again during backward() to rebuild
                # what it did not keep: the same samples, already counted in the forward.
                # torch.jit.trace (and the TorchScript ONNX export) runs the model on its
                # example inputs, which are not data either, and again to check the trace.
                return
            now = self._pass()
            if not now.depth and self._inflight:
                now = self._pass_elsewhere(now)  # a forward that runs modules in a worker thread
            if now.checking:
                return
            call = 0
            if now.depth:
                with self._lock:  # the pass may be another thread's
                    call = now.calls.get(name, 0)
                    now.calls[name] = call + 1
                if call and name not in self._repeated:
                    self._first_repeat(name)
            elif name in self._repeated and name not in self._warned_outside:
                self._outside_pass(name)
            if type(output) is not tensor_type and not isinstance(output, tensor_type):
                self._not_a_tensor(call_name(name, call, name in self._repeated), output)
            if output.dim() < 1:
                raise IntroscopeError(
                    f"{self._owner}: module {call_name(name, call, name in self._repeated)!r} "
                    f"returned a 0-d tensor; its outputs need a batch dimension"
                )
            x = output.detach()
            if is_wrapped(x):
                x = self._unwrapped(x, call_name(name, call, name in self._repeated))
            # Named under the lock: another thread's pass may find the module repeated (and
            # rename its data to name#0) at any time before.
            with self._lock:
                response = call_name(name, call, name in self._repeated)
                if now.depth and now.batch is not None and x.shape[0] != now.batch:
                    self._rows_differ(response, x.shape[0], now.batch)
                info = self._infos.get(response)
                if info is None or self._dtypes.get(response) is not x.dtype:
                    if x.is_meta:
                        raise on_meta_device(self._owner, response)
                    if info is None:
                        info = self._info(response, module, x)
                    else:  # model.to(dtype), autocast: the description follows the outputs
                        info = dataclasses.replace(info, dtype=_numpy_dtype(x.dtype))
                        self._described.discard(response)
                    self._infos[response] = info
                    self._dtypes[response] = x.dtype
                if self._transform is not None:
                    x = self._transform(response, x, info)
                if response not in self._described and self._describe is not None:
                    self._described.add(response)
                    self._describe(info)
                self._acc.update(response, x, where="module output")
                if now.depth:
                    now.fed += 1

        return hook

    def _unwrapped(self, x: Any, name: str) -> Any:
        """A tensor of a torch.func transform (grad, vmap, jvp) holds no data the monitor can
        read while the transform runs: refused with the way out, not a raw torch error."""
        raise under_transform(self._owner, name)

    def _pass_elsewhere(self, own: _Pass) -> _Pass:
        """The pass a hook outside any pass of its own thread belongs to: the one pass in
        flight (a forward that runs modules in worker threads), else its own."""
        with self._lock:
            return self._inflight[0] if len(self._inflight) == 1 else own

    def _first_repeat(self, name: str) -> None:
        """``name`` runs a second time in a pass: its data so far is its first call's."""
        with self._lock:
            if name in self._repeated:
                return  # another thread's pass got here first
            first = call_name(name, 0, True)
            try:
                fields = getattr(self._acc, "fields", None)
                if fields is None or name in fields:
                    self._acc.rename_field(name, first)
                if name in self._described:
                    self._described.discard(name)
                    self._described.add(first)
                if name in self._infos:
                    self._infos[first] = dataclasses.replace(self._infos.pop(name), name=first)
            finally:
                self._repeated.add(name)  # numbered from now on, whatever happened above

    def _replica_ran(self) -> None:
        if self._warned_replica:
            return
        self._warned_replica = True
        warn_replica(self._owner)

    def _outside_pass(self, name: str) -> None:
        self._warned_outside.add(name)
        warn_outside_pass(self._owner, name, call_name(name, 0, True))

    def _check_sequence_first(self, module: Any, args: tuple[Any, ...]) -> None:
        """First pass: a ``batch_first=False`` module whose input has the forward's sample rows
        on dimension 0 reads them as positions, and the watched outputs' rows are positions
        (which the rows check cannot see when the model's own input is sequence-first)."""
        now = self._pass()
        if self._warned_sequence or not now.depth or now.batch is None:
            return
        first = next((a for a in args if isinstance(a, self._torch.Tensor)), None)
        if first is None or first.dim() < 3 or first.shape[0] != now.batch:
            return
        if first.shape[1] == now.batch:
            return  # as many positions as samples: cannot tell
        self._warned_sequence = True
        name = next((n for n, m in self._model.named_modules() if m is module), "?")
        warn_sequence_first(self._owner, name, module, tuple(first.shape), now.batch)

    def _rows_differ(self, name: str, rows: int, batch: int) -> None:
        if name in self._warned_rows:
            return
        self._warned_rows.add(name)
        warn_rows_differ(self._owner, name, rows, batch)

    def _not_a_tensor(self, name: str, output: Any) -> None:
        raise not_a_tensor(self._owner, name, output)

    def _info(self, name: str, module: Any, x: Any) -> ResponseInfo:
        """The response's ``ResponseInfo`` as the adapter describes it (channels-first; the
        layout of an activation is that of the latest output of its shape in the pass)."""
        kind = layer_kind(module)
        layer = ResponseInfo.Layer(name, kind, type(module).__name__)
        upstream = self._layouts.get(tuple(x.shape[1:]), UNKNOWN_UPSTREAM)
        axis = channels_first_axis(kind, x.dim(), upstream)
        if (
            self._tracked
            and upstream is UNKNOWN_UPSTREAM
            and axis != channels_first_axis(kind, x.dim(), None)
            and name not in self._warned_late
        ):
            # Its layout depends on what it was computed from, which nothing followed.
            self._warned_late.add(name)
            warn_late_layout(self._owner, name, axis, self._followed)
        return ResponseInfo(name, _numpy_dtype(x.dtype), (None, *x.shape[1:]), layer, axis)

    def __deepcopy__(self: _M, memo: dict[int, Any]) -> _M:
        # A model holding its monitor as an attribute is deep-copied (checkpoints, EMA): the
        # copy shares the monitor, which watches the original model only.
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise not_picklable(self._owner)

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"{self._owner}({list(self._modules)}, {state})"


def _numpy_dtype(torch_dtype: Any) -> np.dtype:
    try:
        return numpy_dtype(torch_dtype)
    except Exception:  # noqa: BLE001 - a dtype numpy lacks (bfloat16): described as float32
        return np.dtype(np.float32)


def _never(_: Any) -> bool:
    return False
