"""What a :class:`~._monitor.Monitor` tells its user about how the model runs: warnings, errors.

Each function either warns (``stacklevel`` pointing at the user's code, past torch's frames) or
returns the error for the monitor to raise; the monitor decides when (most warnings are said
once per monitor, or once per module).
"""

from __future__ import annotations

import warnings
from typing import Any

from introscope._validation import user_stacklevel
from introscope.exceptions import IntroscopeError


def warn_unattached(owner: str) -> None:
    """The result of a monitor that was never attached (it counted nothing)."""
    warnings.warn(
        f"{owner}: this monitor was never attached, so it counted nothing; "
        f"creating it registers no hooks. Run the model inside `with "
        f"{owner}(model) as m:`, or call m.attach() first (m.detach() "
        f"after). (Said once per monitor.)",
        RuntimeWarning,
        stacklevel=user_stacklevel("torch"),
    )


def warn_partial_pass(owner: str, counted: int) -> None:
    """A forward pass raised after some watched outputs were counted."""
    warnings.warn(
        f"{owner}: a forward pass raised after {counted} watched module output(s) "
        f"were counted; those outputs stay in the result (the other modules did not see "
        f"that batch). Call monitor.reset() to start afresh. (Said once per monitor.)",
        RuntimeWarning,
        stacklevel=user_stacklevel("torch"),
    )


def warn_replica(owner: str) -> None:
    """The model ran as ``nn.DataParallel`` replicas, which the monitor does not see."""
    warnings.warn(
        f"{owner}: the model ran as nn.DataParallel replicas, whose outputs the "
        f"monitor does not see (nothing of those passes is counted); monitor the model "
        f"unwrapped, or run one process per device (DistributedDataParallel) with a monitor "
        f"in each and merge their accumulators. (Said once per monitor.)",
        RuntimeWarning,
        stacklevel=user_stacklevel("torch"),
    )


def warn_outside_pass(owner: str, name: str, first: str) -> None:
    """A module that runs several times per pass ran outside a forward pass of the model."""
    warnings.warn(
        f"{owner}: module {name!r}, which runs several times per forward pass, ran "
        f"outside a forward pass of the model (e.g. in model.encode(x)); calls there cannot "
        f"be told apart and all are counted as {first!r}. Run the model itself (model(x)), "
        f"or monitor the submodule whose forward makes those calls. (Said once per module.)",
        stacklevel=user_stacklevel("torch"),
    )


def warn_sequence_first(
    owner: str, name: str, module: Any, shape: tuple[int, ...], batch: int
) -> None:
    """A ``batch_first=False`` module reads the forward's sample rows as positions."""
    warnings.warn(
        f"{owner}: module {name!r} ({type(module).__name__}, batch_first=False) gets "
        f"an input of shape {shape}: it reads dimension 0 as positions, and "
        f"introscope counts dimension 0 of every watched output as samples (the forward "
        f"got {batch} rows). If the model's inputs are (sequence, batch, ...), the "
        f"counts are per position, not per sample: build the model with batch_first=True "
        f"and batch-first inputs. (Said once per monitor.)",
        stacklevel=user_stacklevel("torch"),
    )


def warn_rows_differ(owner: str, name: str, rows: int, batch: int) -> None:
    """A watched module returned another number of rows than the forward pass got."""
    warnings.warn(
        f"{owner}: module {name!r} returned {rows} rows in a forward pass of "
        f"{batch} samples; its rows are counted as samples. A sequence-first layer "
        f"(nn.LSTM, nn.TransformerEncoderLayer with batch_first=False) returns one row per "
        f"position: build it with batch_first=True, or watch a module whose outputs hold "
        f"one row per sample",
        stacklevel=user_stacklevel("torch"),
    )


def not_a_tensor(owner: str, name: str, output: Any) -> IntroscopeError:
    """The error for a watched module whose output is not one tensor."""
    return IntroscopeError(
        f"{owner}: module {name!r} returned a {type(output).__name__}, not a "
        f"single tensor; watch a submodule that returns one tensor (for several "
        f"outputs, run the model through introscope.torch, which names each tensor "
        f"'{name}[0]', '{name}[1]', ...)"
    )


def on_meta_device(owner: str, name: str) -> IntroscopeError:
    """The error for a watched output on the 'meta' device (no data)."""
    return IntroscopeError(
        f"{owner}: module {name!r} returned a tensor on the "
        f"'meta' device, which holds no data; run the model with real "
        f"weights and inputs (e.g. model.to_empty(device='cpu') then "
        f"load_state_dict(...))"
    )


def not_picklable(owner: str) -> TypeError:
    """The error for pickling a monitor (``torch.save`` of a model that holds it)."""
    return TypeError(
        f"{owner}: a monitor cannot be pickled (e.g. torch.save(model) of a model that "
        f"holds it as an attribute); save model.state_dict(), keep the monitor outside the "
        f"model, and save what it counted with monitor.accumulator.state_dict()"
    )


def warn_saw_nothing_compiled(owner: str) -> None:
    """Attached, no forward pass seen, and torch.compile has compiled code in this process."""
    warnings.warn(
        f"{owner}: the monitor was attached but saw no forward pass of the model, and "
        f"torch.compile has compiled code in this process. A model compiled (and run) before "
        f"the monitor was attached runs graphs that skip hooks added afterwards "
        f"(torch._dynamo.config.skip_nnmodule_hook_guards): attach the monitor before "
        f"torch.compile, or call torch.compiler.reset() after attaching so the model is "
        f"compiled again with the hooks. (Said once per monitor.)",
        RuntimeWarning,
        stacklevel=user_stacklevel("torch"),
    )


def warn_late_layout(owner: str, name: str, axis: int | None, passes: int) -> None:
    """A watched module first ran after the monitor stopped following layouts."""
    warnings.warn(
        f"{owner}: module {name!r} first ran after the monitor stopped following the model's "
        f"layouts ({passes} forward passes that did not reach it), so its channel axis is "
        f"guessed from its rank as {axis} (channels-first). If that is wrong, pass "
        f"channel_axis= to the monitor (an int, or a mapping of response names), or let the "
        f"first passes run every watched module. (Said once per module.)",
        RuntimeWarning,
        stacklevel=user_stacklevel("torch"),
    )


def under_transform(owner: str, name: str) -> IntroscopeError:
    """A watched module ran inside a torch.func transform (per-sample gradients, ensembles)."""
    return IntroscopeError(
        f"{owner}: module {name!r} ran inside a torch.func transform (grad, vmap, jvp, ...), "
        f"whose wrapped tensors hold no data the monitor can read while it runs; detach the "
        f"monitor around the transformed step (monitor.detach() / attach()) and watch a plain "
        f"forward pass of the same batches, e.g. under torch.no_grad()"
    )
