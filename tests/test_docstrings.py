"""Every public name has a docstring (the API reference is generated from them)."""

import importlib
import inspect

import pytest

PUBLIC = [
    "introscope.base",
    "introscope.processors",
    "introscope.introspectors",
    "introscope.samples",
    "introscope.exceptions",
    "introscope.typing",
    "introscope.torch",
    "introscope.tensorflow",
    "introscope.onnx",
    "introscope.ray",
]


def _public_members(obj):
    for name, member in vars(obj).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(member) or isinstance(member, (property, staticmethod, classmethod)):
            yield name, member


def _missing(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    missing = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(obj) and obj.__module__.startswith("introscope"):
            for attr, _member in _public_members(obj):
                # inspect.getdoc takes an override's docstring from the base class it overrides
                if not (inspect.getdoc(getattr(obj, attr)) or "").strip():
                    missing.append(f"{module_name}.{name}.{attr}")
    return missing


@pytest.mark.parametrize("module_name", PUBLIC)
def test_public_names_have_docstrings(module_name):
    pytest.importorskip(module_name)
    assert _missing(module_name) == []
