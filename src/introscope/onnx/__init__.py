"""ONNX models through onnxruntime: any framework that exports ONNX can be introspected.

``onnx`` and ``onnxruntime`` are imported only when a model is loaded
(``pip install 'introscope[onnx]'``).
"""

from ._backend import OnnxBackend, load_onnx_model

__all__ = ["OnnxBackend", "load_onnx_model"]
