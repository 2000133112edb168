"""`--plot`: a PNG control chart whose red marks sit exactly on the flagged points."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg

from streams.spc.charts import ChartConfig
from streams.spc.io import read_table
from streams.spc.offline import analyse, build_samples
from streams.spc.plot import render

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun

REPO = Path(__file__).resolve().parents[3]


def _red(path: Path) -> np.ndarray[Any, Any]:
    """Boolean mask of strongly red pixels."""
    rgba = mpimg.imread(str(path))
    r, g, b = rgba[..., 0], rgba[..., 1], rgba[..., 2]
    return (r > 0.75) & (g < 0.25) & (b < 0.25)


def test_cli_plot_writes_a_chart_with_red_marks_at_the_signals(qcc: Path, tmp_path: Path, spc: Spc) -> None:
    out = tmp_path / "charts" / "xbar-r.png"
    run = spc("xbar-r", "--input", qcc / "pistonrings.txt", "--value-column", "diameter", "--subgroup-column",
              "sample", "--phase1-column", "trial", "--plot", out, "--json")  # fmt: skip
    assert run.json()["signals"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 30_000 < out.stat().st_size < 2_000_000
    red = _red(out)
    assert red.shape[0] > 500 and red.shape[1] > 900  # two panels, readable size
    assert red.sum() > 200


def test_red_pixels_are_at_the_flagged_points_and_nowhere_else(qcc: Path, tmp_path: Path) -> None:
    table = read_table(qcc / "pistonrings.txt")
    samples = build_samples(table, "xbar-r", "diameter", subgroup_column="sample", phase1_column="trial")
    result = analyse("xbar-r", samples, ChartConfig())
    info = render(result, tmp_path / "x.png", title_hint="diameter")
    flagged = [p.index for p in result.points if p.rules]
    assert flagged == [35, 37, 38, 39, 40] and len(info.flagged) == len(flagged)
    red = _red(info.path)
    assert red.shape == (info.height, info.width)
    for x, y in info.flagged:
        window = red[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4]
        assert window.mean() > 0.8, (x, y)  # a filled red marker on the point
    # Every red pixel is a marker or its vertical rule label: in a narrow column over a flagged point.
    ys, xs = np.nonzero(red)
    marks = np.array(info.flagged)
    dx = np.abs(xs[:, None] - marks[None, :, 0])
    above = marks[None, :, 1] - ys[:, None]  # > 0: above the marker centre
    assert np.all(np.any((dx <= 8) & (above >= -6) & (above <= 110), axis=1))


def test_no_signals_no_red(qcc: Path, tmp_path: Path, spc: Spc) -> None:
    out = tmp_path / "u.png"
    run = spc(
        "u", "--input", qcc / "pcmanufact.txt", "--value-column", "x", "--size-column", "size", "--plot", out
    )
    assert run.rc == 0 and "no signals" in run.out
    assert out.exists() and _red(out).sum() == 0


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        ("cusum", ["--value-column", "viscosity", "--phase1-column", "trial"]),
        ("ewma", ["--value-column", "viscosity", "--phase1-column", "trial", "--lambda", 0.1, "--L", 2.7]),
        ("imr", ["--value-column", "viscosity", "--phase1-column", "trial", "--rules", "nelson"]),
    ],
)
def test_every_chart_family_plots(qcc: Path, tmp_path: Path, spc: Spc, kind: str, args: list[object]) -> None:
    out = tmp_path / f"{kind}.png"
    run = spc(kind, "--input", qcc / "viscosity.txt", *args, "--plot", out, "--json")
    assert bool(run.json()["signals"]) == bool(_red(out).sum() > 50)


def test_variable_limits_are_drawn_as_steps(tmp_path: Path, spc: Spc) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "d,n\n" + "".join(f"{d},{n}\n" for d, n in [(4, 50), (6, 80), (3, 40), (9, 120), (25, 60)])
    )
    out = tmp_path / "p.png"
    assert spc("p", "--input", path, "--value-column", "d", "--size-column", "n", "--plot", out).rc == 0
    assert _red(out).sum() > 50


def test_committed_example_image(qcc: Path) -> None:
    """docs/spc-example.png (pistonrings X̄-R) is in the tree and shows its signals."""
    path = REPO / "docs" / "spc-example.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _red(path).sum() > 200
