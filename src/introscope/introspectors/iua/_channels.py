"""Which axis of a response holds the channels, from an explicit argument or a ``ResponseInfo``."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from introscope.base import ResponseInfo
from introscope.base._response_info import SPATIAL_KINDS
from introscope.exceptions import IntroscopeError

__all__ = ["ChannelAxisArg", "infer_channel_axis", "resolve_channel_axis"]

_log = logging.getLogger("introscope.introspectors.iua")

#: ``None`` (no channel view), one axis for every response with spatial positions, or per response.
ChannelAxisArg = int | Mapping[str, int | None] | None

# ONNX operator names: ONNX tensors are channels-first (NCHW).
_ONNX_OPS = frozenset(
    {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization", "LpPool"}
)


def infer_channel_axis(info: ResponseInfo) -> int | None:
    """Channel axis (counted with the batch axis) of a convolution-like response, else None.

    An axis the adapter recorded in ``info.channel_axis`` (from the layer's data format) wins.
    Otherwise, for responses built by hand, the type name tells: PyTorch type names end in a lowercase ``d`` (``Conv2d``, ``BatchNorm2d``, ``MaxPool2d``) and
    are channels-first (axis 1); Keras names end in ``D`` (``Conv2D``, ``MaxPooling2D``) and are
    channels-last (axis -1); ONNX operators (``Conv``, ...) are channels-first.
    """
    if info.channel_axis is not None:
        return info.channel_axis
    if info.layer.kind not in SPATIAL_KINDS:
        return None
    typename = info.layer.typename.rsplit(".", 1)[-1]
    if typename in _ONNX_OPS or typename.endswith("d"):
        return 1
    if typename.endswith("D"):
        return -1
    _log.debug("no channel axis for %r: cannot tell the layout of %r", info.name, typename)
    return None


def resolve_channel_axis(
    field: str,
    shape: tuple[int, ...],
    channel_axis: ChannelAxisArg,
    response_infos: Mapping[str, ResponseInfo] | None,
) -> int | None:
    """The channel axis of ``field`` as an index into its unit shape (batch axis dropped)."""
    if isinstance(channel_axis, Mapping):
        axis = channel_axis.get(field)
        explicit = field in channel_axis
    else:
        axis = channel_axis
        explicit = channel_axis is not None
    if not explicit and response_infos is not None and field in response_infos:
        axis = infer_channel_axis(response_infos[field])
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise IntroscopeError(f"channel_axis for {field!r} must be an int or None, got {axis!r}")
    ndim = len(shape)
    if ndim < 3:
        # (batch, units): no spatial positions, the channel view would equal the unit view.
        if isinstance(channel_axis, Mapping) and explicit:
            raise IntroscopeError(
                f"channel_axis given for {field!r}, but its responses have shape {shape}; "
                f"a channel view needs (batch, channels, positions...) or (batch, ..., channels)"
            )
        return None
    if not -ndim <= axis < ndim or axis % ndim == 0:
        raise IntroscopeError(
            f"channel_axis {axis} for {field!r} is not a non-batch axis of its shape {shape}"
        )
    return axis % ndim - 1
