"""The HTML report of an experiment: written by the CLI and ``ResultGrid.report``, checked in Chromium."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith import tune
from tunesmith.tune.schedulers import ASHAScheduler

NUM_TRIALS = 1000


def _objective(config):
    for i in range(1, 7):
        if config["lr"] > 0.08:
            raise ValueError(f"lr {config['lr']:.4f} diverged")
        tune.report({"loss": (config["lr"] - 0.03) ** 2 * 100 + 1.0 / i + 0.01 * config["layers"]})


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A real experiment of a thousand trials: ASHA stops most early, some fail."""
    storage = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNESMITH_LEDGER_DIR", str(storage / "ledger"))
    try:
        results = tune.Tuner(
            _objective,
            param_space={"lr": tune.loguniform(1e-3, 1e-1), "layers": tune.randint(1, 5),
                         "act": tune.choice(["relu", "tanh"])},
            tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=NUM_TRIALS,
                                        scheduler=ASHAScheduler(max_t=6, grace_period=1)),
            run_config=tune.RunConfig(storage_path=str(storage), name="big", verbose=0),
        ).fit()
    finally:
        mp.undo()
    return results


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_data_matches_the_run(experiment):
    from tunesmith.tune.analysis.html_report import collect_report_data

    data = collect_report_data(experiment.experiment_path)
    assert data["metric"] == "loss" and data["mode"] == "min" and not data["mode_guessed"]
    assert len(data["trials"]) == NUM_TRIALS
    best = experiment.get_best_result()
    assert data["trials"][data["best"]]["id"] == best.metrics["trial_id"]
    assert data["trials"][data["best"]]["final"] == best.metrics["loss"]
    stopped = errored = 0
    by_dir = {t["dir"]: t for t in data["trials"]}
    for result in experiment:
        trial = by_dir[os.path.basename(result.path)]
        if result.error is not None:
            errored += 1
            assert trial["status"] == "ERROR" and not trial["curve"]
            assert "diverged" in trial["error"]["traceback"]
            assert "ValueError" in trial["error"]["message"]
            continue
        if trial["stopped_at"] is not None:
            stopped += 1
            # ASHA's decision came with the trial's last result.
            assert trial["stopped_at"] == result.metrics["training_iteration"] < 6
        assert [p[1] for p in trial["curve"]][-1] == result.metrics["loss"]
    assert stopped > NUM_TRIALS // 2 and errored == experiment.num_errors > 0


def test_report_in_headless_chromium(experiment, tmp_path, record_property):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium package)")
    sync_api = pytest.importorskip("playwright.sync_api")

    out = tmp_path / "report.html"
    cli = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "report", experiment.experiment_path,
                          "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == f"Wrote {out}"
    page_html = out.read_text()
    # Self-contained: nothing is fetched (the SVG namespace is a name, not a fetch).
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", page_html)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page_html)

    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                page_html, re.S).group(1).replace("<\\/", "</"))
    with_curves = sum(1 for t in data["trials"] if t["curve"])
    best = experiment.get_best_result()

    problems, requests = [], []
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)

            assert problems == []
            assert requests == [out.as_uri()]
            # One mark per trial with a curve: a line, or a dot for a trial stopped after one result.
            assert page.locator("#curve-lines [data-trial]").count() == with_curves
            assert page.locator("#curve-lines circle").count() == sum(1 for t in data["trials"] if len(t["curve"]) == 1)
            assert page.locator("#pc-lines path").count() == with_curves
            # The plots have ink: their lines span most of the drawing area.
            for selector in ("#curve-lines", "#pc-lines"):
                box = page.locator(selector).bounding_box()
                assert box["width"] > 600 and box["height"] > 150, (selector, box)
            assert page.locator("#best-name").inner_text() == f"_objective_{best.metrics['trial_id']}"
            assert float(page.locator("#best-value").inner_text()) == pytest.approx(best.metrics["loss"], rel=1e-4)
            assert page.locator("#best-config tr").count() == 1 + 3
            assert page.locator("#errors details").count() == experiment.num_errors
            assert "diverged" in page.locator("#errors pre").first.inner_text()
            assert page.locator("#sched-bars rect").count() >= 1
            assert "trials early" in page.locator("#sched").inner_text()
            assert page.locator("#trials tbody tr").count() == 500  # first page of a thousand
            page.locator("#trials-note a").click()
            assert page.locator("#trials tbody tr").count() == NUM_TRIALS

            shots = os.environ.get("TUNESMITH_TEST_ARTIFACTS") or str(tmp_path)
            os.makedirs(shots, exist_ok=True)
            shot = os.path.join(shots, "experiment_report.png")
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=shot, full_page=True)
            record_property("screenshot", shot)
            print(f"screenshot of the report: {shot}")
            assert os.path.getsize(shot) > 50_000
        finally:
            chromium.close()


def test_result_grid_report_and_cli_errors(experiment, tmp_path):
    path = experiment.report(str(tmp_path))
    assert path == str(tmp_path / "report.html")
    text = open(path).read()
    assert experiment.get_best_result().metrics["trial_id"] in text

    missing = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "report", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert "not an experiment directory" in missing.stderr


def test_result_grid_report_from_another_filesystem(experiment, tmp_path):
    """An experiment on a pyarrow filesystem other than the local one (as on S3) is read through it."""
    import pyarrow.fs

    from tunesmith.tune import ExperimentAnalysis, ResultGrid

    root, name = os.path.split(experiment.experiment_path)
    fs = pyarrow.fs.SubTreeFileSystem(root, pyarrow.fs.LocalFileSystem())
    grid = ResultGrid(ExperimentAnalysis(name, storage_filesystem=fs, default_metric="loss", default_mode="min"))
    # Without a path, the report goes beside the experiment, through its filesystem.
    assert grid.report() == f"{name}/report.html"
    assert os.path.exists(os.path.join(experiment.experiment_path, "report.html"))
    path = grid.report(str(tmp_path / "remote.html"))
    text = open(path).read()
    assert experiment.get_best_result().metrics["trial_id"] in text
    assert text.count('"status":"ERROR"') == experiment.num_errors
    # The page names the experiment where it is, not the temporary copy the report was made from.
    assert f'"path":"{grid.experiment_path}"' in text and tempfile.gettempdir() + "/tmp" not in text


def _losses_then_maybe_html_error(config):
    for loss in config["losses"]:
        tune.report({"loss": loss})
    if config["fail"]:
        raise RuntimeError("the server said: <!DOCTYPE html><!-- 502 Bad Gateway --></html>")


@contextlib.contextmanager
def _loaded_report(path: str):
    """The report page at ``path`` in headless Chromium, drawn; yields ``(page, problems)``, where
    ``problems`` collects console errors and warnings and page errors."""
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium package)")
    sync_api = pytest.importorskip("playwright.sync_api")
    problems = []
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        try:
            page = chromium.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(Path(path).as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            yield page, problems
        finally:
            chromium.close()


def test_report_of_html_like_text_and_a_nan_final_value(tmp_path):
    """An error text holding "<!--" still gives a page that draws; a trial that ended on NaN is not the best."""
    grid = tune.Tuner(
        _losses_then_maybe_html_error,
        param_space={"losses": tune.grid_search([[3.0, 2.0], [1.0, float("nan")]]),
                     "fail": tune.sample_from(lambda spec: spec.config.losses[0] == 1.0)},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    out = grid.report(str(tmp_path / "new_dir") + os.sep)  # a directory that does not exist yet
    assert out == str(tmp_path / "new_dir" / "report.html")
    best = grid.get_best_result()
    assert best.config["losses"] == [3.0, 2.0]
    with _loaded_report(out) as (page, problems):
        assert problems == []
        assert page.locator("#best-name").inner_text() == f"_losses_then_maybe_html_error_{best.metrics['trial_id']}"
        assert "502 Bad Gateway" in page.locator("#errors pre").first.inner_text()
        assert problems == []


def _negative_rewards(config):
    for i in range(3):
        tune.report({"reward": -1.0 - i})


def test_log_scale_with_no_positive_value_says_so(tmp_path):
    grid = tune.Tuner(_negative_rewards, tune_config=tune.TuneConfig(metric="reward", mode="max"),
                      run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0)).fit()
    with _loaded_report(grid.report(str(tmp_path / "report.html"))) as (page, problems):
        page.locator("#logy").check()
        assert "log scale cannot show it" in page.locator("#curves").text_content()
        assert problems == []


def _final_value_and_params(config):
    for i in range(config["n"]):
        result = {"loss": 1.0 / (i + 1)}
        if i % 2 == 1 or config["n"] == 1:
            result["val"] = {"acc": config["final"]}  # validated every other iteration
        tune.report(result)


def test_report_draws_float_noise_missing_params_and_sparse_metrics(tmp_path):
    """Two final values 0.1+0.2 and 0.3 froze the page; a None or missing parameter dropped the trial's
    line; a metric logged every other iteration counted as not reported; a one-result trial had no dot."""
    grid = tune.Tuner(
        _final_value_and_params,
        param_space={"x": tune.grid_search([None, 4, {"deep": 1}]),
                     "final": tune.sample_from(lambda spec: 0.1 + 0.2 if spec.config.x == 4 else 0.3),
                     "n": tune.sample_from(lambda spec: 1 if spec.config.x is None else 3)},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert grid.get_best_result(metric="val/acc", mode="max") is not None
    with _loaded_report(grid.report(str(tmp_path / "report.html"), metric="val/acc", mode="max")) as (page, problems):
        assert problems == []
        # Every trial has its line, the one with x=None and the one without x/deep too.
        assert page.locator("#pc-lines path").count() == 3
        assert "No trial reported" not in page.locator("#best").text_content()
        assert page.locator("#curve-lines circle").count() == 3  # val/acc came once per trial


def _few_reports(config):
    for loss in config["losses"]:
        tune.report({"loss": loss})
    if config["fail"]:
        raise RuntimeError("failed after its first report")


def test_one_result_trials_are_visible_dots(tmp_path):
    """A trial with one result (as sklearn or XGBoost report) is a dot the reader sees: the best one, an
    errored one and a plain one, beside a trial with a curve."""
    grid = tune.Tuner(
        _few_reports,
        param_space={"losses": tune.grid_search([[0.5], [2.0], [4.0], [3.0, 2.5, 1.0]]),
                     "fail": tune.sample_from(lambda spec: spec.config.losses == [2.0])},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert grid.num_errors == 1
    with _loaded_report(grid.report(str(tmp_path / "report.html"))) as (page, problems):
        assert problems == []
        # For each trial's mark: its painted color, and whether a point 3 px from its center, in each
        # direction, is on it (hit testing follows what is painted, after the CSS).
        marks = page.evaluate("""() => [...document.querySelectorAll("#curve-lines [data-trial]")].map(m => {
            m.scrollIntoView({block: "center"});
            const box = m.getBoundingClientRect(), x = box.x + box.width / 2, y = box.y + box.height / 2;
            const style = getComputedStyle(m);
            const t = D.trials.find(t => t.id === m.dataset.trial);
            return {points: t.curve.length, status: t.status, best: t === D.trials[D.best],
                    paint: t.curve.length > 1 ? style.stroke : style.fill, opacity: +style.opacity,
                    covered: [[3, 0], [-3, 0], [0, 3], [0, -3]].every(([dx, dy]) =>
                        document.elementFromPoint(x + dx, y + dy) === m)};
        })""")
    assert sorted(m["points"] for m in marks) == [1, 1, 1, 3]
    dots = [m for m in marks if m["points"] == 1]
    assert all(m["covered"] and m["opacity"] >= 0.5 for m in dots), dots
    best = next(m for m in dots if m["best"])
    errored = next(m for m in dots if m["status"] == "ERROR")
    plain = next(m for m in dots if not m["best"] and m["status"] != "ERROR")
    assert best["paint"] == "rgb(228, 87, 46)"  # orange, as the best trial's curve
    assert errored["paint"] == "rgb(192, 57, 43)"  # red, as errored trials' curves
    assert plain["paint"] == "rgb(59, 110, 165)"


def test_cli_reports_and_lists_a_file_uri(tmp_path):
    import subprocess
    import sys

    tune.Tuner(_negative_rewards, run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path / "r"),
                                                           verbose=0)).fit()
    uri = (tmp_path / "r" / "exp").as_uri()
    out = tmp_path / "uri.html"
    run = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "report", uri, "--output", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert out.exists() and uri in out.read_text()
    listing = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "ls", uri], capture_output=True, text=True)
    assert listing.returncode == 0 and "TERMINATED" in listing.stdout
