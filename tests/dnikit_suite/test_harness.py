"""The DNIKit-suite harness itself: import aliases, private stand-ins, the exception list."""

from __future__ import annotations

import importlib
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import dnikit_alias  # noqa: E402


@pytest.fixture
def aliased():
    dnikit_alias.install()
    yield
    dnikit_alias.uninstall()


def test_public_modules_alias_introscope_objects(aliased: None) -> None:
    import introscope.base
    import introscope.torch

    base = importlib.import_module("dnikit.base")
    assert base.Batch is introscope.base.Batch
    from dnikit_torch import load_torch_model_from_memory

    assert load_torch_model_from_memory is introscope.torch.load_torch_model_from_memory
    # the proxy keeps the import system's bookkeeping away from introscope's own modules
    importlib.import_module("dnikit.base._batch._fields")
    assert isinstance(sys.modules["introscope.base._batch"].Batch, type)


def test_missing_public_name_is_an_import_error(aliased: None) -> None:
    with pytest.raises(ModuleNotFoundError, match="introscope has no 'introscope.nothing_here'"):
        importlib.import_module("dnikit.nothing_here")


def test_private_members_raise_when_used(aliased: None) -> None:
    from dnikit.base._producer import _accumulate_batches

    with pytest.raises(dnikit_alias.DNIKitPrivateAPI, match="_accumulate_batches"):
        _accumulate_batches([])
    with pytest.raises(dnikit_alias.DNIKitPrivateAPI, match="_accumulate_batches"):
        isinstance(1, _accumulate_batches)


def test_shims(aliased: None) -> None:
    import typing

    import dnikit.typing._types as t
    from dnikit._availability import _pandas_available

    assert t.Optional is typing.Optional
    assert _pandas_available() is (importlib.util.find_spec("pandas") is not None)


def test_exception_list_format_and_matching() -> None:
    entries = dnikit_alias.parse_exceptions(
        "# comment\n\n"
        "test_a.py | private | uses x\n"
        "test_b.py::test_f | difference | better error\n"
        "test_b.py::TestC | difference | y\n"
    )
    a, f, c = entries
    assert a.matches("test_a.py::test_anything[1]") and not a.matches("test_ab.py::t")
    assert f.matches("test_b.py::test_f") and f.matches("test_b.py::test_f[2-3]")
    assert not f.matches("test_b.py::test_f_other")
    assert c.matches("test_b.py::TestC::test_m") and not c.matches("test_b.py::TestCD::test_m")
    with pytest.raises(ValueError, match="line 1: category 'oops'"):
        dnikit_alias.parse_exceptions("test_a.py | oops | why")
    with pytest.raises(ValueError, match="line 2: expected"):
        dnikit_alias.parse_exceptions("\ntest_a.py | private")


def test_the_repository_list_parses_and_every_line_has_a_reason() -> None:
    entries = dnikit_alias.parse_exceptions(dnikit_alias.EXCEPTIONS_FILE.read_text())
    assert entries, "the list has entries"
    targets = [e.target for e in entries]
    assert len(targets) == len(set(targets)), "no test is listed twice"


def _run_suite(tmp_path: pathlib.Path, listed: str) -> tuple[int, str]:
    import os
    import subprocess

    (tmp_path / "test_x.py").write_text(
        "def test_pass():\n    assert True\n\ndef test_fail():\n    assert False\n"
    )
    (tmp_path / "test_broken.py").write_text("import dnikit.introspectors.NotThere\n")
    (tmp_path / "exceptions.txt").write_text(listed)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(pathlib.Path(__file__).parent), env.get("PYTHONPATH")])
    )
    env["DNIKIT_SUITE_EXCEPTIONS"] = str(tmp_path / "exceptions.txt")
    env["DNIKIT_SUITE_FULL"] = "1"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "dnikit_alias",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(tmp_path),
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    return done.returncode, done.stdout + done.stderr


def test_run_is_strict(tmp_path: pathlib.Path) -> None:
    good = "test_x.py::test_fail | difference | fails\ntest_broken.py | not-built | absent\n"
    rc, out = _run_suite(tmp_path, good)
    assert rc == 0, out
    assert "1 passed" in out and "1 xfailed" in out and "1 skipped" in out
    # an unexpected failure fails the run
    rc, out = _run_suite(tmp_path, "test_broken.py | not-built | absent\n")
    assert rc == 1 and "FAILED test_x.py::test_fail" in out
    # a listed test that passes fails the run
    rc, out = _run_suite(tmp_path, good + "test_x.py::test_pass | difference | now passes\n")
    assert rc == 1 and "XPASS(strict)" in out
    # a 'private' entry must fail on private DNIKit code, not on something else
    rc, out = _run_suite(
        tmp_path, "test_x.py::test_fail | private | p\ntest_broken.py | not-built | a\n"
    )
    assert rc == 1 and "FAILED test_x.py::test_fail" in out
    # a line that matches nothing fails the run
    rc, out = _run_suite(tmp_path, good + "test_gone.py::test_old | private | gone\n")
    assert rc == 1 and "match no test" in out and "test_gone.py::test_old" in out
