"""onnxruntime sessions of an ONNX graph with chosen intermediate tensors added as outputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from introscope.exceptions import IntroscopeError

from ._proto import onnx, ort

__all__ = ["SessionFactory"]


class SessionFactory:
    """Builds sessions of one model for given output names, with the user's providers/options."""

    def __init__(
        self,
        model: Any,
        value_infos: Mapping[str, Any],
        providers: Sequence[str] | None,
        session_options: Any,
    ) -> None:
        self.model = model
        self._value_infos = value_infos
        self._graph_outputs = {o.name for o in model.graph.output}
        self._providers = list(providers) if providers is not None else None
        self._session_options = session_options

    def make(self, names: Iterable[str], *, strict: bool = True) -> Any:
        """A session whose outputs include ``names`` (tensors without a type are added untyped).

        With ``strict`` a failure is an ``IntroscopeError``; otherwise the exception propagates.
        """
        model = onnx().ModelProto()
        model.CopyFrom(self.model)
        for name in sorted(set(names) - self._graph_outputs):
            info = self._value_infos.get(name)
            if info is None:
                info = onnx().helper.make_empty_tensor_value_info(name)
            model.graph.output.append(info)
        runtime = ort()
        providers = self._providers or runtime.get_available_providers()
        try:
            return runtime.InferenceSession(
                model.SerializeToString(), sess_options=self._session_options, providers=providers
            )
        except Exception as exc:
            if not strict:
                raise
            raise IntroscopeError(f"onnxruntime could not load the model: {exc}") from exc
