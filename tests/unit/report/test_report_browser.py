"""`watchkeeper report` on a real replay, opened in headless Chromium: the charts are drawn, the tables complete.

Chromium (the Debian package, installed by `make system-deps`) loads the file with no
network, runs its scripts, saves a screenshot and dumps the DOM, in one run; the
assertions are on the DOM after plotly.js drew the charts (SVG), not on the file.
"""

from __future__ import annotations

import html
import re
import shutil
import struct
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from watchkeeper.cli import app

from .conftest import Replayed

CHROMIUM = shutil.which("chromium")
WIDTH, HEIGHT = 1400, 2400

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (as root, `make system-deps` installs the Debian package)"
)


@dataclass(frozen=True)
class Rendered:
    dom: str
    screenshot: Path
    figures: dict[str, list[str]]  # plot div id -> the texts of its drawn SVG ("" when nothing was drawn)
    svg_drawn: set[str]  # plot div ids holding a drawn plotly SVG


def _texts(fragment: str) -> list[str]:
    """The contents of the SVG <text> elements of a DOM fragment, tags stripped and unescaped."""
    return [html.unescape(re.sub(r"<[^>]+>", " ", t)).strip() for t in re.findall(r"<text[^>]*>(.*?)</text>", fragment)]


def _figures(dom: str) -> tuple[dict[str, list[str]], set[str]]:
    starts = list(re.finditer(r'<div id="([^"]+)" class="plotly-graph-div[^"]*"', dom))
    figures, drawn = {}, set()
    for match, following in zip(starts, [*starts[1:], None], strict=True):
        fragment = dom[match.start() : following.start() if following else len(dom)]
        figures[match[1]] = _texts(fragment)
        if 'class="main-svg"' in fragment:
            drawn.add(match[1])
    return figures, drawn


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.fixture(scope="module")
def report(replayed: Replayed) -> Path:
    output = replayed.directory / "report.html"
    args = [
        "report",
        str(replayed.output),
        "-c",
        str(replayed.config),
        "--events",
        str(replayed.events),
        "-o",
        str(output),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return output


@pytest.fixture(scope="module")
def rendered(report: Path, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    directory = tmp_path_factory.mktemp("chromium")
    screenshot = directory / "report.png"
    command = [
        str(CHROMIUM),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        f"--user-data-dir={directory / 'profile'}",
        f"--window-size={WIDTH},{HEIGHT}",
        "--virtual-time-budget=10000",  # let the page's scripts run before the DOM is dumped
        f"--screenshot={screenshot}",
        "--dump-dom",
        report.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0 and done.stdout, done.stderr[-2000:]
    figures, drawn = _figures(done.stdout)
    return Rendered(done.stdout, screenshot, figures, drawn)


def test_the_report_is_one_offline_file(report: Path) -> None:
    page = report.read_text()
    assert not re.search(r"<script[^>]+src=", page), "every script is inline"
    assert not re.search(r"<link[^>]+href=", page), "no stylesheet or font is fetched"
    charts = page.count('class="plotly-graph-div"')
    assert charts > 20
    assert len(re.findall(r"<script[^>]*>", page)) == charts + 1  # one per chart, and plotly.js once


def test_every_chart_is_drawn_and_the_screenshot_taken(report: Path, rendered: Rendered) -> None:
    declared = set(re.findall(r'<div id="([^"]+)" class="plotly-graph-div', report.read_text()))
    assert declared == set(rendered.figures)
    assert rendered.svg_drawn == declared, f"not drawn: {sorted(declared - rendered.svg_drawn)}"
    assert _png_size(rendered.screenshot) == (WIDTH, HEIGHT)
    assert rendered.screenshot.stat().st_size > 50_000  # a page with charts, not a blank one


def test_alert_timeline_and_table_list_every_alert_of_the_replay(replayed: Replayed, rendered: Rendered) -> None:
    alerts = [r for r in replayed.records if r["kind"] == "alert"]
    triggers = [r for r in replayed.records if r["kind"] == "retraining"]
    assert {a["model_id"] for a in alerts} == {"elec2", "compas"} and triggers
    for model in ("elec2", "compas"):
        timeline = rendered.figures[f"{model}-timeline"]
        assert "Alerts and retraining triggers over time" in timeline
        mine = [a for a in alerts if a["model_id"] == model]
        rows = {f"{a['monitor']}/{a['metric']} · {a['subject']}" for a in mine}
        assert rows <= set(timeline), rows - set(timeline)  # one row (y tick) per alert
        section = rendered.dom[rendered.dom.index(f'id="model-{model}"') :]
        table = section[section.index('<table class="alerts">') : section.index("</table>")]
        shown = Counter(re.findall(r'<tr class="alert alert-(firing|resolved)">', table))
        assert shown == Counter(a["status"] for a in mine)
        for alert in mine:
            assert html.escape(alert["summary"], quote=False) in table
    assert "retraining trigger" in rendered.figures["elec2-timeline"]
    assert rendered.dom.count('<tr class="trigger">') == len(triggers)
    for trigger in triggers:
        assert trigger["id"] in rendered.dom


def test_drift_heatmap_and_columns_draw_psi_and_p_value_with_thresholds(replayed: Replayed, rendered: Rendered) -> None:
    windows = [r for r in replayed.records if r["kind"] == "window" and r["model_id"] == "elec2"]
    columns = list(windows[-1]["columns"])
    heatmap = rendered.figures["elec2-heatmap"]
    assert set(columns) <= set(heatmap)  # one row per column
    assert heatmap.count("●") == sum(len(w["drifted"]) for w in windows if w["evaluated"])
    for column in columns:
        texts = rendered.figures[f"elec2-drift-{column.replace('.', '-')}"]
        assert any(t.startswith(column) for t in texts)
        assert {"PSI", "p-value (bh-adjusted, log scale)", "min_psi 0.1 (config)", "alpha 0.01 (config)"} <= set(texts)


def test_histograms_compare_the_reference_with_the_latest_drifted_window(
    replayed: Replayed, rendered: Rendered
) -> None:
    windows = [r for r in replayed.records if r["kind"] == "window" and r["model_id"] == "elec2"]
    latest = next(w for w in reversed(windows) if w["evaluated"] and w["drifted"])
    for column in latest["drifted"]:
        texts = rendered.figures[f"elec2-hist-{column.replace('.', '-')}"]
        assert "reference" in texts
        assert any(t.startswith("window ") and t.endswith(f"(n={latest['n']})") for t in texts), texts


def test_accuracy_coverage_and_fairness_are_drawn_with_intervals(rendered: Rendered) -> None:
    for metric in ("accuracy", "roc_auc"):
        assert {"interval", "baseline", "alert threshold", metric} <= set(rendered.figures[f"elec2-accuracy-{metric}"])
    assert {"label coverage", "label delay", "delay p90"} <= set(rendered.figures["compas-labels"])
    groups = rendered.figures["compas-fairness-race-groups"]
    assert {"selection rate", "TPR", "FPR"} <= set(groups)
    assert any("insufficient" in t for t in groups)  # small groups are drawn, marked
    assert "tolerance 0.1" in rendered.figures["compas-fairness-race-disparities"]
    section = rendered.dom[rendered.dom.index('id="model-compas"') :]
    assert '<tr class="group insufficient">' in section and "insufficient data (&lt; 30)" in section
