"""IUA views: the heatmap chart and the Jupyter HTML, rendered in headless Chromium."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from introscope.introspectors import IUA

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if pathlib.Path("/usr/bin/chromium").exists() else None
)


def analysed(layers: int = 3) -> IUA:
    rng = np.random.default_rng(0)
    shapes = {"a.conv": (8, 4, 5), "b.conv": (16, 3, 3), "fc": (30,), "d.conv": (4, 2, 2)}
    acc = IUA(channel_axis=1)
    for name, shape in list(shapes.items())[:layers]:
        x = np.maximum(rng.standard_normal((40, *shape)) - 0.5, 0)
        x[:, 0] = 0.0  # a dead channel / unit
        acc.update(name, x)
    return acc


def test_chart_is_one_labelled_heatmap_panel_per_response() -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    iua = analysed(3)
    axes = IUA.show(iua, vis_type=IUA.VisType.CHART)
    assert isinstance(axes, np.ndarray) and len(axes) == 3
    by_title = {ax.get_title(loc="left").split()[0]: ax for ax in axes}
    assert list(by_title) == ["a.conv", "b.conv", "fc"]  # sorted by response
    conv_img = by_title["a.conv"].get_images()[0].get_array()
    assert conv_img.shape == (8, 20)  # channel x position
    np.testing.assert_array_equal(conv_img[0], 1.0)  # the dead channel is fully inactive
    fc_img = by_title["fc"].get_images()[0].get_array()
    assert fc_img.shape == (5, 6) and np.ma.count_masked(fc_img) == 0  # near-square grid
    assert by_title["a.conv"].get_ylabel() == "channel"
    assert "dead 20" in by_title["a.conv"].get_title(loc="left")
    fig = axes[0].figure
    assert len(fig.axes) == 6  # each panel has its colour bar
    one = IUA.show(iua, vis_type=IUA.VisType.CHART, response_names=["fc"])
    assert not isinstance(one, np.ndarray)
    assert fig.get_figheight() > one.figure.get_figheight()  # grows with the number of layers
    plt.close("all")


def test_chart_png_is_not_blank(tmp_path: pathlib.Path) -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    image = pytest.importorskip("PIL.Image")
    axes = IUA.show(analysed(4), vis_type=IUA.VisType.CHART)
    path = tmp_path / "iua.png"
    axes[0].figure.savefig(path, dpi=60)
    plt.close("all")
    pixels = np.asarray(image.open(path).convert("L"), dtype=float)
    assert pixels.std() > 20 and (pixels < 100).mean() > 0.05


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make browser)")
def test_html_renders_in_headless_chromium(tmp_path: pathlib.Path) -> None:
    image = pytest.importorskip("PIL.Image")
    page = tmp_path / "iua.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'></head><body>"
        + analysed(3)._repr_html_()
        + "</body></html>",
        encoding="utf-8",
    )
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (400, 1200)
    assert (pixels < 128).mean() > 0.005 and pixels.std() > 10  # text and bars were drawn
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<tr>") == 4  # header + 3 responses
    for name in ("a.conv", "b.conv", "fc"):
        assert f'<td class="name">{name}</td>' in dom
