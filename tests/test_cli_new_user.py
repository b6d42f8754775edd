"""The command line as a new user meets it: no guessed layer names, keras reported correctly."""

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")


def _cli(*args, cwd, env=None):
    return subprocess.run(
        [sys.executable, "-m", "introscope", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_layers_of_a_state_dict_needs_an_input_shape_and_never_guesses(tmp_path):
    (tmp_path / "twice.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(1, 2, 3)\n"
        "        self.r = torch.nn.ReLU()\n"
        "    def forward(self, x):\n"
        "        return self.r(self.r(self.conv(x)) - 1)\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import twice

        torch.save(twice.Net().state_dict(), tmp_path / "net.pt")
    finally:
        sys.path.remove(str(tmp_path))
    out = _cli("layers", "--model", "net.pt", "--constructor", "twice:Net", cwd=tmp_path)
    assert out.returncode == 2
    assert "--input-shape" in out.stderr and "r#0" not in out.stdout
    out = _cli(
        "layers", "--model", "net.pt", "--constructor", "twice:Net", "--input-shape", "1,6,6",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert "r#0" in names and "r#1" in names and "r" not in names


def test_info_reports_keras_without_tensorflow(tmp_path):
    pytest.importorskip("keras")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = _cli("info", cwd=tmp_path, env=env)
    assert out.returncode == 0
    (line,) = [x for x in out.stdout.splitlines() if x.strip().startswith("keras")]
    assert "not installed" not in line and line.split()[1].startswith("3.")
