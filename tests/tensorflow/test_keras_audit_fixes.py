"""Keras adapter: exact integer feeds, a missing backend, bfloat16 models, damaged files, layer
kinds, attention scores and layers returning dicts."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("torch")

from introscope.base import Batch, ResponseInfo, pipeline  # noqa: E402
from introscope.exceptions import IntroscopeError  # noqa: E402
from introscope.introspectors import IUA, PFA  # noqa: E402
from introscope.tensorflow import (  # noqa: E402
    load_tf_model_from_memory,
    load_tf_model_from_path,
)
from introscope.tensorflow._keras import import_keras  # noqa: E402

keras = import_keras()
layers = keras.layers
Kind = ResponseInfo.LayerKind


def _produce(fields: dict[str, np.ndarray]):  # noqa: ANN202
    def produce(batch_size: int):  # noqa: ANN202
        n = len(next(iter(fields.values())))
        for start in range(0, n, batch_size):
            yield Batch({k: v[start : start + batch_size] for k, v in fields.items()})

    return produce


# -- 1. integer feeds are converted only when exact ------------------------------------------------


def _embedding_model():  # noqa: ANN202
    keras.utils.set_random_seed(0)
    ids = keras.Input((3,), dtype="int32", name="ids")
    return keras.Model(ids, layers.Embedding(10, 2, name="emb")(ids))


def test_int64_ids_beyond_an_int32_input_are_refused() -> None:
    net = _embedding_model()
    model = load_tf_model_from_memory(model=net)
    good = np.array([[1, 2, 3], [0, 9, 4]], dtype=np.int64)
    out = model.backend.run_inference({"ids": good}, frozenset({"emb"}))["emb"]
    table = net.get_layer("emb").get_weights()[0]
    np.testing.assert_array_equal(out, table[good])  # small int64 ids convert exactly
    with pytest.raises(IntroscopeError, match=r"'ids' has int64 values.*int32.*Input with dtype"):
        model.backend.run_inference({"ids": good + 2**32}, frozenset({"emb"}))


def test_int64_beyond_2_pow_24_into_float32_is_refused() -> None:
    x = keras.Input((1,), name="x")
    model = load_tf_model_from_memory(model=keras.Model(x, layers.Identity(name="same")(x)))
    exact = np.array([[2**24]], dtype=np.int64)
    out = model.backend.run_inference({"x": exact}, frozenset({"same"}))["same"]
    assert out.dtype == np.float32 and out[0, 0] == 2**24
    with pytest.raises(IntroscopeError, match=r"'x' has int64 values.*float32"):
        model.backend.run_inference({"x": exact + 1}, frozenset({"same"}))


# -- 2. Keras installed, its backend not ---------------------------------------------------------


def test_a_missing_keras_backend_is_named_with_the_fix() -> None:
    pytest.importorskip("torch")
    try:
        import jax  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - JAX is not part of the test environment
        pytest.skip("JAX is installed: its backend imports")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    code = (
        "from introscope.exceptions import MissingDependencyError\n"
        "from introscope.tensorflow._keras import import_keras\n"
        "try:\n"
        "    import_keras()\n"
        "except MissingDependencyError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout.strip().splitlines()[-1]
    assert text.startswith("MissingDependencyError introscope.tensorflow: keras is installed")
    assert "KERAS_BACKEND='jax'" in text
    assert "package 'jax'" in text and "pip install jax" in text
    assert "set KERAS_BACKEND=torch before importing keras or introscope" in text
    assert "introscope[keras]" not in text  # keras itself is there: not the fix


# -- 3. bfloat16 models --------------------------------------------------------------------------


def _bf16_model(policy: str):  # noqa: ANN202
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        x = keras.Input((6, 6, 2), name="img")
        conv = layers.Conv2D(5, 3, activation="relu", name="conv")(x)
        gap = layers.GlobalAveragePooling2D(name="gap")(conv)
        hidden = layers.Dense(8, activation="relu", name="hidden")(gap)
        net = keras.Model(x, layers.Dense(3, name="fc")(hidden))
    finally:
        keras.config.set_dtype_policy("float32")
    return net


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16"])
def test_bfloat16_responses_are_float32_and_introspectable(policy: str) -> None:
    net = _bf16_model(policy)
    assert str(net.get_layer("conv").compute_dtype) == "bfloat16"
    model = load_tf_model_from_memory(model=net)
    infos = model.response_infos
    assert {infos[n].dtype for n in ("conv", "gap", "hidden")} == {np.dtype(np.float32)}

    images = np.random.default_rng(0).normal(size=(24, 6, 6, 2)).astype(np.float32)
    # The same bf16 values from Keras itself, widened to float32 (exact).
    tap = keras.Model(net.inputs, [net.get_layer(n).output for n in ("conv", "hidden")])
    conv_bf16, hidden_bf16 = tap([images], training=False)
    assert str(conv_bf16.dtype).endswith("bfloat16")
    as_f32 = keras.ops.convert_to_numpy
    conv_ref = as_f32(keras.ops.cast(conv_bf16, "float32"))
    hidden_ref = as_f32(keras.ops.cast(hidden_bf16, "float32"))

    responses = pipeline(_produce({"img": images}), model(["conv", "hidden"]))
    got = model.backend.run_inference({"img": images}, frozenset({"conv", "hidden"}))
    assert got["conv"].dtype == np.float32
    np.testing.assert_array_equal(got["conv"], conv_ref)

    iua = IUA.introspect(responses, batch_size=8, response_infos=infos)
    ref = IUA.introspect(
        _produce({"conv": conv_ref, "hidden": hidden_ref}), batch_size=8, channel_axis=-1
    )
    for name in ("conv", "hidden"):
        np.testing.assert_array_equal(
            iua.results[name].unit_inactive_count, ref.results[name].unit_inactive_count
        )
    assert iua.channel_axis("conv") == ref.channel_axis("conv") is not None
    np.testing.assert_array_equal(
        iua.channel_results["conv"].unit_inactive_count,
        ref.channel_results["conv"].unit_inactive_count,
    )
    assert np.asarray(iua.results["conv"].unit_inactive_count).sum() > 0  # relu zeros counted

    pfa = PFA.introspect(pipeline(_produce({"img": images}), model(["hidden"])), batch_size=8)
    pfa_ref = PFA.introspect(_produce({"hidden": hidden_ref}), batch_size=8)
    recipe, recipe_ref = pfa.get_recipe()["hidden"], pfa_ref.get_recipe()["hidden"]
    assert recipe.original_output_count == recipe_ref.original_output_count == 8
    assert recipe.recommended_output_count == recipe_ref.recommended_output_count
    assert recipe.maximally_correlated_units == recipe_ref.maximally_correlated_units


def test_a_bfloat16_input_takes_floats_and_only_exact_integers() -> None:
    x = keras.Input((3,), dtype="bfloat16", name="x")
    dense = layers.Dense(2, name="d", dtype="bfloat16")
    model = load_tf_model_from_memory(model=keras.Model(x, dense(x)))
    assert model.response_infos["x"].dtype == model.response_infos["d"].dtype == np.float32
    ones = model.backend.run_inference({"x": np.ones((2, 3), np.float32)}, frozenset({"d"}))
    exact = model.backend.run_inference({"x": np.ones((2, 3), np.int64)}, frozenset({"d"}))
    np.testing.assert_array_equal(ones["d"], exact["d"])
    big = np.full((2, 3), 256, np.int64)  # a power of two: exact in bfloat16
    model.backend.run_inference({"x": big}, frozenset({"d"}))
    with pytest.raises(IntroscopeError, match=r"'x'.*bfloat16.*e.g. 257 becomes 256"):
        model.backend.run_inference({"x": big + 1}, frozenset({"d"}))


# -- 4. damaged model files ----------------------------------------------------------------------


def test_a_damaged_keras_file_is_named_as_damaged(tmp_path: pathlib.Path) -> None:
    x = keras.Input((3,), name="x")
    good = tmp_path / "good.keras"
    keras.Model(x, layers.Dense(2, name="d")(x)).save(good)
    assert list(load_tf_model_from_path(good).response_infos) == ["x", "d"]

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    no_config = tmp_path / "no_config.keras"
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.writestr("metadata.json", "{}")
    bad_h5 = tmp_path / "bad.h5"
    bad_h5.write_bytes(b"not hdf5 at all")
    cases = [
        (truncated, "Keras archive.*not a zip archive"),
        (no_config, "Keras archive.*no config.json"),
        (bad_h5, "HDF5 model file.*not an HDF5 file"),
    ]
    for path, why in cases:
        with pytest.raises(IntroscopeError, match=rf"{path.name}' exists but cannot be read as a"):
            load_tf_model_from_path(path)
        with pytest.raises(IntroscopeError, match=why) as caught:
            load_tf_model_from_path(path)
        assert "File not found" not in str(caught.value)


def test_an_hdf5_user_block_of_any_power_of_two_is_not_damage(tmp_path: pathlib.Path) -> None:
    from introscope.tensorflow._loading import _HDF5_SIGNATURE, _damage

    for offset in (0, 512, 2048, 8192):
        ok = tmp_path / f"block{offset}.h5"
        ok.write_bytes(b"\0" * offset + _HDF5_SIGNATURE + b"\0" * 64)
        assert _damage(ok) == "", offset
    odd = tmp_path / "odd.h5"  # the signature only where no user block ends
    odd.write_bytes(b"\0" * 3000 + _HDF5_SIGNATURE + b"\0" * 64)
    assert "not an HDF5 file" in _damage(odd)


# -- 5. layer kinds ------------------------------------------------------------------------------


def test_layer_kinds_match_the_torch_adapter() -> None:
    ids = keras.Input((5,), dtype="int32", name="ids")
    seq = layers.Embedding(20, 8, name="emb")(ids)
    seq = layers.LayerNormalization(name="ln")(seq)
    seq = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(seq, seq)
    seq = layers.GRU(8, return_sequences=True, name="gru")(seq)
    seq = layers.LSTM(8, return_sequences=True, name="lstm")(seq)
    seq = layers.Conv1D(4, 3, name="c1d")(seq)
    seq = layers.AlphaDropout(0.1, name="adrop")(seq)
    img = keras.Input((6, 6, 6, 2), name="vol")
    vol = layers.Conv3D(3, 3, name="c3d")(img)
    flat = keras.Input((6, 6, 3), name="img")
    dw = layers.DepthwiseConv2D(3, name="dw")(flat)
    sep = layers.SeparableConv2D(4, 3, name="sep")(flat)
    net = keras.Model([ids, img, flat], [seq, vol, dw, sep])
    kinds = {
        n: i.layer.kind for n, i in load_tf_model_from_memory(model=net).response_infos.items()
    }
    assert kinds == {
        "ids": Kind.PLACEHOLDER,
        "vol": Kind.PLACEHOLDER,
        "img": Kind.PLACEHOLDER,
        "emb": Kind.EMBEDDING,
        "ln": Kind.LAYER_NORM,
        "mha": Kind.ATTENTION,
        "gru": Kind.GRU,
        "lstm": Kind.LSTM,
        "c1d": Kind.CONV_1D,
        "adrop": Kind.DROPOUT,
        "c3d": Kind.CONV_3D,
        "dw": Kind.CONV_2D,
        "sep": Kind.CONV_2D,
    }
    import torch
    from introscope.torch._layer_kinds import layer_kind as torch_kind

    assert torch_kind(torch.nn.Embedding(20, 8)) == kinds["emb"]
    assert torch_kind(torch.nn.LayerNorm(8)) == kinds["ln"]
    assert torch_kind(torch.nn.MultiheadAttention(8, 2)) == kinds["mha"]
    assert torch_kind(torch.nn.GRU(8, 8)) == kinds["gru"]


# -- 6. attention scores have no channel axis ----------------------------------------------------


@pytest.mark.parametrize("layer", ["mha", "attention"])
def test_attention_scores_have_no_channel_axis(layer: str) -> None:
    x = keras.Input((5, 8), name="seq")
    if layer == "mha":
        attn = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attn")
        out, scores = attn(x, x, return_attention_scores=True)
        score_shape = (None, 2, 5, 5)
    else:
        attn = layers.Attention(name="attn")
        out, scores = attn([x, x], return_attention_scores=True)
        score_shape = (None, 5, 5)
    infos = load_tf_model_from_memory(model=keras.Model(x, [out, scores])).response_infos
    assert infos["attn"].shape == (None, 5, 8) and infos["attn"].channel_axis == -1
    assert infos["attn:1"].shape == score_shape
    assert infos["attn:1"].channel_axis is None  # (batch, [heads,] queries, keys)


# -- 7. layers returning dicts -------------------------------------------------------------------


class _DictOut(layers.Layer):
    def call(self, x):  # noqa: ANN001, ANN201
        return {"zeta": x * 1.0, "output_10": x * 10.0, "output_2": x * 2.0, "pair": [x, -x]}


class _TupleOut(layers.Layer):
    def call(self, x):  # noqa: ANN001, ANN201
        return x * 10.0, x * 20.0


def test_dict_outputs_are_named_by_key_tuples_by_position() -> None:
    x = keras.Input((2,), name="x")
    d = _DictOut(name="head")(x)
    t = _TupleOut(name="tup")(x)
    total = layers.Add(name="sum")([d["zeta"], d["output_2"], d["pair"][1], t[0], t[1]])
    model = load_tf_model_from_memory(model=keras.Model(x, total))
    names = [n for n in model.response_infos if n not in ("x", "sum")]
    assert sorted(names) == sorted(
        [
            "head[zeta]",
            "head[output_10]",
            "head[output_2]",
            "head[pair][0]",
            "head[pair][1]",
            "tup",
            "tup:1",
        ]
    )
    xs = np.array([[1.0, 3.0], [2.0, -1.0]], np.float32)
    out = model.backend.run_inference({"x": xs}, frozenset(names))
    expected = {
        "head[zeta]": xs,
        "head[output_10]": 10 * xs,
        "head[output_2]": 2 * xs,
        "head[pair][0]": xs,
        "head[pair][1]": -xs,
        "tup": 10 * xs,
        "tup:1": 20 * xs,
    }
    for name, want in expected.items():
        np.testing.assert_allclose(out[name], want, err_msg=name)


def test_a_nested_model_with_dict_outputs_is_named_by_key() -> None:
    inner_in = keras.Input((3,), name="inner_x")
    inner = keras.Model(
        inner_in,
        {"b": layers.Dense(2, name="db")(inner_in), "a": layers.Dense(4, name="da")(inner_in)},
        name="backbone",
    )
    x = keras.Input((3,), name="x")
    feats = inner(x)
    net = keras.Model(x, layers.Concatenate(name="cat")([feats["a"], feats["b"]]))
    model = load_tf_model_from_memory(model=net)
    infos = model.response_infos
    assert list(infos) == ["x", "backbone[a]", "backbone[b]", "cat"]
    assert infos["backbone[a]"].shape == (None, 4) and infos["backbone[b]"].shape == (None, 2)
    assert "da" not in infos  # a nested model's own layers are not responses


# -- 8. a nested model is one response; its layers through the inner model or a flat graph -------


def test_a_nested_backbones_layers_through_the_inner_or_a_flat_model() -> None:
    keras.utils.set_random_seed(0)
    b_in = keras.Input((6, 6, 2), name="b_img")
    b_conv = layers.Conv2D(3, 3, activation="relu", name="b_conv")(b_in)
    backbone = keras.Model(b_in, layers.GlobalAveragePooling2D(name="b_gap")(b_conv), name="bb")
    head = layers.Dense(2, name="head")
    x = keras.Input((6, 6, 2), name="img")
    net = keras.Model(x, head(backbone(x)))
    assert list(load_tf_model_from_memory(model=net).response_infos) == ["img", "bb", "head"]
    inner = load_tf_model_from_memory(model=net.get_layer("bb"))
    assert list(inner.response_infos) == ["b_img", "b_conv", "b_gap"]
    flat = load_tf_model_from_memory(model=keras.Model(backbone.input, head(backbone.output)))
    assert list(flat.response_infos) == ["b_img", "b_conv", "b_gap", "head"]
    images = np.random.default_rng(1).normal(size=(4, 6, 6, 2)).astype(np.float32)
    out = flat.backend.run_inference({"b_img": images}, frozenset({"head"}))["head"]
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(net(images)), rtol=1e-6)
