"""``introscope analyze``/``layers`` on what users bring: Parquet tables with text columns,
integer token ids, conv heads, TorchScript, labels CSVs, checkpoint layouts, multi-input models,
and how errors and warnings read on stderr."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from introscope.cli import main

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

NETS = '''
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 4 * 4, 8)
        self.relu2 = nn.ReLU()
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.relu2(self.fc(self.relu(self.conv(x)).flatten(1))))


class Wide(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32),
            nn.ReLU(), nn.Linear(32, 32),
        )

    def forward(self, x):
        return self.body(x)


class TextNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 4)
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(6, 3)

    def forward(self, tokens):
        return self.fc(self.relu(self.conv(self.emb(tokens).transpose(1, 2))).amax(2))


class FCN(nn.Module):
    """Fully-convolutional classifier: the 1x1 conv's 5 channels are the 5 classes."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.body(x)).flatten(1)


class Seg(nn.Module):
    """Segmentation head: the output is the last conv's (N, 4, H, W) map."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 3, padding=1)
        self.r1 = nn.ReLU()
        self.c2 = nn.Conv2d(6, 6, 3, padding=1)
        self.r2 = nn.ReLU()
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        return self.head(self.r2(self.c2(self.r1(self.c1(x)))))


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x, mask):
        return self.fc(x * mask)


class Needs(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(4, width)
'''


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """``auditnets`` importable from the current folder (``tmp_path``), as for a user."""
    (tmp_path / "auditnets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "auditnets", raising=False)
    import auditnets

    torch.manual_seed(0)
    return auditnets


def _err(capsys):
    return capsys.readouterr().err.strip()


# 1, 6: Parquet tables ---------------------------------------------------------------------


def test_parquet_text_columns_are_left_out_and_named(tmp_path, capsys):
    from introscope.cli._data import load_data

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"id": [f"s{i}" for i in range(20)], "f1": rng.random(20), "f2": rng.random(20),
         "cls": ["a"] * 20, "caption": ["a photo"] * 20}
    )  # fmt: skip
    frame.to_parquet(tmp_path / "t.parquet")
    source = load_data(tmp_path / "t.parquet", spec=None, with_model=False)
    assert source.array.shape == (20, 2) and source.ids[0] == "s0"
    notes = "; ".join(source.notes)
    assert "f1, f2" in notes and "cls, caption" in notes and "left out" in notes
    out = tmp_path / "r"
    argv = ["analyze", "--data", str(tmp_path / "t.parquet"), "--out", str(out), "-q",
            "--projection", "pca", "--introspectors", "projection"]  # fmt: skip
    assert main(argv) == 0
    # a list column is the embedding even beside numeric and text columns
    frame["emb"] = list(rng.random((20, 3)))
    frame.to_parquet(tmp_path / "v.parquet")
    source = load_data(tmp_path / "v.parquet", spec=None, with_model=False)
    assert source.array.shape == (20, 3) and "'emb'" in source.notes[1]
    # only text: the intended message, naming what the table has
    pd.DataFrame({"id": list("ab" * 10), "split": ["train"] * 20}).to_parquet(tmp_path / "s.pq")
    (tmp_path / "s.pq").rename(tmp_path / "s.parquet")
    assert main(["analyze", "--data", str(tmp_path / "s.parquet"), "--out", str(out)]) == 3
    err = _err(capsys)
    assert "no embedding column" in err and "split" in err and "Traceback" not in err


def test_a_ragged_list_column_is_a_clear_usage_error(tmp_path, capsys):
    vectors = [np.ones(3)] * 10 + [np.ones(4)] * 2
    pd.DataFrame({"emb": vectors}).to_parquet(tmp_path / "ragged.parquet")
    code = main(["analyze", "--data", str(tmp_path / "ragged.parquet"), "--out", str(tmp_path)])
    err = _err(capsys)
    assert code == 2, err
    assert "'emb'" in err and "3 (10 rows), 4 (2 rows)" in err and "row 10" in err


# 2: integer inputs --------------------------------------------------------------------------


def test_integer_arrays_pass_unchanged_and_uint8_pixels_become_float(tmp_path):
    from introscope.cli._data import Preprocess, load_data

    def first(name, x, **kwargs):
        np.save(tmp_path / name, x)
        source = load_data(tmp_path / name, spec=None, with_model=True, **kwargs)
        return next(iter(source.producer(4))).fields["samples"]

    tokens = np.arange(24).reshape(8, 3)
    assert first("i64.npy", tokens.astype(np.int64)).dtype == np.int64
    assert first("i32.npy", tokens.astype(np.int32)).dtype == np.int32
    np.testing.assert_array_equal(first("i64.npy", tokens.astype(np.int64)), tokens[:4])
    assert first("u8.npy", tokens.astype(np.uint8)).dtype == np.float32
    scaled = first("i64.npy", tokens.astype(np.int64), preprocess=Preprocess(scale=0.5))
    assert scaled.dtype == np.float32 and scaled[0, 1] == 0.5


def test_token_ids_reach_an_embedding_in_analyze_and_layers(nets, tmp_path, capsys):
    torch.save(nets.TextNet().state_dict(), "text.pt")
    np.save("tok.npy", np.random.default_rng(0).integers(0, 20, (30, 7)).astype(np.int64))
    argv = ["analyze", "--model", "text.pt", "--constructor", "auditnets:TextNet",
            "--data", "tok.npy", "--out", "r", "-q", "--introspectors", "iua,pfa"]  # fmt: skip
    assert main(argv) == 0, _err(capsys)
    summary = json.loads((tmp_path / "r" / "iua_model.json").read_text())
    assert [r["response"] for r in summary] == ["relu"] and summary[0]["samples"] == 30
    layers = ["layers", "--model", "text.pt", "--constructor", "auditnets:TextNet",
              "--input-shape", "7"]  # fmt: skip
    assert main([*layers, "--input-dtype", "int64"]) == 0
    out = capsys.readouterr().out
    assert "EMBEDDING" in out and "(N, 6, 7)" in out
    assert main(layers) == 2  # float32 zeros into an embedding: say which option to change
    assert "--input-dtype float32 (int64 for token ids)" in _err(capsys)


# 3: the layers that make the output are not pruned -----------------------------------------


@pytest.mark.parametrize(
    ("net", "shape", "head", "kept"),
    [("FCN", (3, 6, 6), "body.2", ["body.0"]), ("Seg", (1, 6, 6), "head", ["c1", "c2"])],
)
def test_pfa_leaves_out_a_conv_that_makes_the_output(nets, net, shape, head, kept):
    from introscope.cli._models import load_model, select_layers

    torch.save(getattr(nets, net)().state_dict(), "w.pt")
    model = load_model("w.pt", constructor=f"auditnets:{net}", example_shape=shape)
    iua, pfa = select_layers(model, None, None)
    assert pfa == kept and head not in pfa
    assert iua  # the ReLUs


def test_pfa_leaves_out_the_logits_and_its_file_is_a_pruning_plan(nets, tmp_path):
    from introscope.introspectors.pfa import PFAPruningPlan

    torch.save(nets.Small().state_dict(), "small.pt")
    np.save("x.npy", np.random.default_rng(0).random((50, 1, 6, 6)).astype(np.float32))
    argv = ["analyze", "--model", "small.pt", "--constructor", "auditnets:Small",
            "--data", "x.npy", "--out", "r", "-q", "--introspectors", "iua,pfa"]  # fmt: skip
    assert main(argv) == 0
    path = tmp_path / "r" / "pfa_model.json"
    saved = json.loads(path.read_text())
    assert list(saved["layers"]) == ["conv", "fc"] and saved["strategy"] == "KL"
    plan = PFAPruningPlan.load(path)
    for name, sizes in saved["layers"].items():
        assert len(plan.layers[name].keep) == sizes["recommended_count"]
        assert plan.layers[name].original_count == sizes["original_count"]


# 4: TorchScript --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_says_on_stderr_that_iua_and_pfa_were_skipped(nets, tmp_path, caplog):
    torch.jit.script(nets.Small()).save("small_ts.pt")
    np.save("x.npy", np.random.default_rng(0).random((12, 1, 6, 6)).astype(np.float32))
    argv = ["analyze", "--model", "small_ts.pt", "--data", "x.npy", "--out", "r", "-q",
            "--introspectors", "iua,pfa"]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="introscope"):
        assert main(argv) == 0
    (line,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "IUA and PFA skipped" in line and "--constructor" in line and "TorchScript" in line


# 5: labels CSV ---------------------------------------------------------------------------------


def test_labels_csv_headers_and_id_hints(tmp_path, capsys):
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).random((12, 4)).astype(np.float32))
    argv = ["analyze", "--data", str(tmp_path / "emb.npy"), "--out", str(tmp_path / "r"),
            "-q", "--projection", "pca", "--introspectors", "projection", "--labels"]  # fmt: skip
    rows = "".join(f"{i},L{i}\n" for i in reversed(range(12)))
    for header in ("id,class", "filename,class", "ID,Category", "name,target"):
        (tmp_path / "l.csv").write_text(f"{header}\n{rows}")
        assert main([*argv, str(tmp_path / "l.csv")]) == 0, (header, _err(capsys))
        frame = pd.read_parquet(tmp_path / "r" / "dataset_report.parquet")
        assert frame["label"].tolist() == [f"L{i}" for i in range(12)], header
    (tmp_path / "one.csv").write_text("class\n" + "".join(f"c{i}\n" for i in range(12)))
    assert main([*argv, str(tmp_path / "one.csv")]) == 0
    # a header it does not know: one row too many, and it says the first row looks like one
    (tmp_path / "odd.csv").write_text("index,kind\n" + rows)
    assert main([*argv, str(tmp_path / "odd.csv")]) == 2
    err = _err(capsys)
    assert "13 labels for 12 samples" in err and "looks like a header" in err
    # ids that are not the samples': the hint says they are row numbers for an .npy
    (tmp_path / "ids.csv").write_text("id,label\n" + "".join(f"x{i},a\n" for i in range(12)))
    assert main([*argv, str(tmp_path / "ids.csv")]) == 2
    err = _err(capsys)
    assert "row numbers '0' to '11'" in err and "relative to the folder" not in err


def test_labels_csv_hint_for_an_image_folder_names_the_paths(tmp_path):
    from PIL import Image

    from introscope.cli._data import load_data
    from introscope.exceptions import IntroscopeValueError

    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((4, 4), 60 * i, np.uint8)).save(tmp_path / "imgs/cat" / f"{i}.png")
    (tmp_path / "l.csv").write_text("filename,class\n0.png,cat\n1.png,cat\n2.png,cat\n")
    with pytest.raises(IntroscopeValueError, match="image paths relative to the --data folder"):
        load_data(tmp_path / "imgs", spec=None, with_model=False, labels_csv=tmp_path / "l.csv")


# 6, 7: models and checkpoints --------------------------------------------------------------


def _layers(path, ctor="auditnets:Small"):
    return main(["layers", "--model", path, "--constructor", ctor, "--input-shape", "1,6,6"])


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd, "epoch": 3},
        lambda sd: {"state_dict": sd},
        lambda sd: {"model_state_dict": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DataParallel
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}},  # Lightning
    ],
)
def test_common_checkpoint_layouts_load(nets, capsys, caplog, wrap):
    torch.save(wrap(nets.Small().state_dict()), "ckpt.pt")
    with caplog.at_level(logging.INFO, logger="introscope"):
        assert _layers("ckpt.pt") == 0, _err(capsys)
    assert "conv " in capsys.readouterr().out
    prefixed = [r for r in caplog.records if "prefix removed" in r.getMessage()]
    if prefixed:
        assert prefixed[0].levelno == logging.WARNING


def test_checkpoints_that_do_not_fit_get_one_short_line(nets, capsys):
    sd = nets.Small().state_dict()
    cases = {
        "two.pt": ({"state_dict": sd, "model": sd}, "several state dicts ['state_dict', 'model']"),
        "none.pt": ({"epoch": 3, "lr": 0.1}, "no state dict"),
        "shape.pt": ({**sd, "out.bias": torch.zeros(5)}, "1 of another shape (out.bias: (5,)"),
        "other.pt": (
            {**{f"x.{k}": v for k, v in sd.items()}, "y": sd["out.bias"]},
            "6 of Small's 6 keys missing (conv.bias, conv.weight, fc.bias, ...); "
            "7 unexpected keys (x.conv.bias",
        ),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, name)
        assert _layers(name) == 3, name
        err = _err(capsys)
        assert message in err and len(err.splitlines()) == 1 and len(err) < 600, err


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_pickled_module_and_a_constructor_with_arguments(nets, capsys):
    torch.save(nets.Small(), "pickled.pt")  # the whole module: refused, in the CLI's words
    assert _layers("pickled.pt") == 3
    err = _err(capsys)
    assert "\x1b" not in err and "model_constructor" not in err
    assert "torch.save(model.state_dict(), path)" in err
    torch.jit.script(nets.Small()).save("ts.pt")
    assert _layers("ts.pt") == 3 and "leave out --constructor" in _err(capsys)
    torch.save(nets.Small().state_dict(), "sd.pt")
    assert _layers("sd.pt", "auditnets:Needs") == 2
    err = _err(capsys)
    assert "must be callable without arguments" in err and "(width)" in err


def test_error_lines_hide_introscope_class_names_and_escape_codes():
    from introscope.cli._console import error_text
    from introscope.exceptions import IntroscopeError

    exc = IntroscopeError("StateError: IUA: cannot merge\n  \x1b[1mresponse 'a'\x1b[0m")
    assert error_text(exc) == "IUA: cannot merge response 'a'"
    assert error_text(TypeError("bad\nvalue")) == "TypeError: bad value"


# 9: one input ----------------------------------------------------------------------------------


def test_a_multi_input_model_is_a_usage_error(nets, capsys):
    torch.save(nets.Two().state_dict(), "two.pt")
    np.save("x.npy", np.zeros((12, 4), np.float32))
    argv = ["analyze", "--model", "two.pt", "--constructor", "auditnets:Two", "--data", "x.npy",
            "--out", "r", "-q"]  # fmt: skip
    assert main(argv) == 2
    err = _err(capsys)
    assert "takes 2 inputs ['x', 'mask']" in err and "feeds one input array" in err


# 10: warnings ----------------------------------------------------------------------------------


def test_warnings_print_as_one_clean_line():
    code = (
        "import logging, warnings\n"
        "from introscope.cli._console import configure_logging\n"
        "configure_logging(False, False)\n"
        "warnings.warn('PFA: fewer samples\\nthan units')\n"
        "logging.getLogger('introscope.cli').warning('stale files')\n"
        "logging.getLogger('numba').warning('slow')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "warning: PFA: fewer samples than units",
        "warning: stale files",
        "warning: numba: slow",
    ]


def test_hidden_layers_as_wide_as_the_output_stay_in_pfa_and_int16_data_feeds_a_cnn(nets, tmp_path):
    # A constant-width MLP: only its last layer makes the output.
    torch.save(nets.Wide().state_dict(), "wide.pt")
    np.save("v.npy", np.random.default_rng(0).standard_normal((60, 16)).astype(np.float32))
    argv = ["analyze", "--model", "wide.pt", "--constructor", "auditnets:Wide", "--data",
            "v.npy", "--out", "w", "-q", "--introspectors", "pfa"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((tmp_path / "w" / "pfa_model.json").read_text())
    assert list(saved["layers"]) == ["body.0", "body.2", "body.4"]
    # int16 scans into a float CNN: fed as float32 (integers stay integers for embeddings).
    torch.save(nets.Small().state_dict(), "small.pt")
    scans = np.random.default_rng(1).integers(-1000, 1000, (50, 1, 6, 6)).astype(np.int16)
    np.save("ct.npy", scans)
    argv = ["analyze", "--model", "small.pt", "--constructor", "auditnets:Small", "--data",
            "ct.npy", "--out", "c", "-q", "--introspectors", "iua"]  # fmt: skip
    assert main(argv) == 0
