"""Console output: the status table of CLIReporter and the per-trial lines of TrialProgressCallback."""
from __future__ import annotations

import pytest

from tunesmith import tune
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.progress_reporter import (
    CLIReporter,
    JupyterNotebookReporter,
    ProgressReporter,
    TrialProgressCallback,
    detect_reporter,
)


def make_trials(n, statuses=("RUNNING", "PENDING", "TERMINATED", "ERROR")):
    trials = []
    for i in range(n):
        config = {"lr": 0.001 * (i + 1), "opt": "adam", "nested": {"depth": i}}
        trial = Trial("train_fn", config, trial_id=f"abc_{i:05d}",
                      evaluated_params={"lr": config["lr"], "nested/depth": i})
        trial.status = statuses[i % len(statuses)]
        if trial.status != "PENDING":
            trial.update_last_result({
                "loss": 1.0 / (i + 1), "custom": 10 * i, "training_iteration": i + 1,
                "time_total_s": 1.5 * (i + 1), "pid": 4000 + i, "node_ip": "127.0.0.1",
                "config": config, "note": "text",
            })
        if trial.status == "ERROR":
            trial.error_file = f"/results/exp/{trial}/error.txt"
            trial.num_failures = 1
        trials.append(trial)
    return trials


def report_text(reporter, trials, capsys, done=False, *sys_info):
    reporter.report(trials, done, *sys_info)
    return capsys.readouterr().out


def test_reporters_are_in_tune_namespace():
    assert tune.CLIReporter is CLIReporter
    assert tune.JupyterNotebookReporter is JupyterNotebookReporter
    assert issubclass(CLIReporter, tune.ProgressReporter)


def test_status_table_shows_statuses_parameters_and_metrics(capsys):
    trials = make_trials(4)
    reporter = CLIReporter(total_samples=10)
    out = report_text(reporter, trials, capsys, False, "Resources requested: 3/4 CPUs")
    assert out.startswith("== Status ==\nCurrent time: ")
    assert "Resources requested: 3/4 CPUs" in out
    assert "Number of trials: 4/10 (1 ERROR, 1 PENDING, 1 RUNNING, 1 TERMINATED)" in out
    header = next(line for line in out.splitlines() if line.startswith("| Trial name"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells == ["Trial name", "status", "loc", "lr", "nested/depth", "loss", "total time (s)", "iter", "custom"]
    row = next(line for line in out.splitlines() if "train_fn_abc_00002" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["train_fn_abc_00002", "TERMINATED", "127.0.0.1:4002", "0.003", "2",
                     "0.333333", "4.5", "3", "20"]
    pending = next(line for line in out.splitlines() if "train_fn_abc_00001" in line)
    assert "PENDING" in pending and "0.002" in pending
    # Rows are ordered RUNNING, PENDING, TERMINATED, ERROR.
    main_table = out.split("Number of errored trials")[0]
    order = [line.split("|")[1].strip() for line in main_table.splitlines() if line.startswith("| train_fn")]
    assert order == ["train_fn_abc_00000", "train_fn_abc_00001", "train_fn_abc_00002", "train_fn_abc_00003"]
    assert "Number of errored trials: 1" in out
    assert "/results/exp/train_fn_abc_00003/error.txt" in out


def test_explicit_columns_and_hidden_empty_columns(capsys):
    trials = make_trials(3)
    reporter = CLIReporter(metric_columns={"loss": "Loss", "missing_metric": "never"},
                           parameter_columns=["lr"])
    out = report_text(reporter, trials, capsys)
    header = next(line for line in out.splitlines() if line.startswith("| Trial name"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells == ["Trial name", "status", "loc", "lr", "Loss"]
    reporter.add_metric_column("custom", "Custom")
    reporter.add_parameter_column("opt")
    out = report_text(reporter, trials, capsys)
    header = next(line for line in out.splitlines() if line.startswith("| Trial name"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Trial name", "status", "loc", "lr", "opt", "Loss", "Custom"]
    assert "adam" in out
    with pytest.raises(ValueError, match="already exists"):
        reporter.add_metric_column("loss")


def test_list_metric_columns_reject_a_different_representation():
    reporter = CLIReporter(metric_columns=["loss"])
    reporter.add_metric_column("acc")
    with pytest.raises(ValueError, match="representation"):
        reporter.add_metric_column("f1", "F1 score")


def test_table_is_truncated_with_a_line_saying_how_many_are_hidden(capsys):
    trials = make_trials(30, statuses=("RUNNING", "PENDING", "TERMINATED"))
    reporter = CLIReporter(max_progress_rows=6)
    out = report_text(reporter, trials, capsys)
    rows = [line for line in out.splitlines() if line.startswith("| train_fn")]
    assert len(rows) == 6
    assert [r.split("|")[2].strip() for r in rows].count("RUNNING") == 2
    assert "... 24 more trials not shown (8 RUNNING, 8 PENDING, 8 TERMINATED)" in out
    # The final report shows every trial.
    out = report_text(reporter, trials, capsys, True)
    assert len([line for line in out.splitlines() if line.startswith("| train_fn")]) == 30
    assert "more trials not shown" not in out


def test_error_table_is_truncated(capsys):
    trials = make_trials(8, statuses=("ERROR",))
    out = report_text(CLIReporter(max_error_rows=3), trials, capsys)
    assert "Number of errored trials: 8" in out
    assert "... 5 more trials with errors." in out


def test_best_trial_line_and_sort_by_metric(capsys):
    trials = make_trials(9, statuses=("TERMINATED",))
    reporter = CLIReporter(metric="loss", mode="max", sort_by_metric=True, parameter_columns=["lr"])
    out = report_text(reporter, trials, capsys)
    assert "Current best trial: abc_00000 with loss=1.0 and parameters={'lr': 0.001}" in out
    order = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| train_fn")]
    assert order[0] == "train_fn_abc_00000" and order[-1] == "train_fn_abc_00008"

    reporter = CLIReporter(sort_by_metric=True, parameter_columns=["lr"])
    reporter.setup(metric="loss", mode="min", total_samples=9)
    out = report_text(reporter, trials, capsys)
    assert "Current best trial: abc_00008" in out
    order = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| train_fn")]
    assert order[0] == "train_fn_abc_00008"
    assert "Number of trials: 9/9 (9 TERMINATED)" in out


def test_conflicting_metric_is_rejected():
    reporter = CLIReporter(metric="loss", mode="min")
    assert reporter.set_search_properties("loss", "min") is True
    with pytest.raises(ValueError, match="one place"):
        reporter.setup(metric="acc", mode="max")


def test_long_values_are_truncated(capsys):
    trial = Trial("train_fn", {"name": "x" * 100}, trial_id="t1", evaluated_params={"name": "x" * 100})
    out = report_text(CLIReporter(max_column_length=12), [trial], capsys)
    assert "...xxxxxxxxx" in out and "x" * 13 not in out


def test_long_column_headers_wrap_over_two_lines_and_lose_their_start(capsys):
    trial = Trial("train_fn", {"lr": 0.1}, trial_id="t1", evaluated_params={"lr": 0.1})
    trial.status = "RUNNING"
    trial.update_last_result({"validation/mean_accuracy": 0.5, "acc": 0.25, "training_iteration": 1})
    reporter = CLIReporter(max_column_length=8, metric_columns=["validation/mean_accuracy", "acc"])
    lines = report_text(reporter, [trial], capsys).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| Trial name"))
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    assert cells(lines[first])[-2:] == ["...mean_", "acc"]
    assert cells(lines[first + 1])[-2:] == ["accuracy", ""]
    assert max(len(c) for line in (lines[first], lines[first + 1]) for c in cells(line)[3:]) <= 8


def test_should_report_respects_max_report_frequency(capsys):
    reporter = CLIReporter(max_report_frequency=3600)
    trials = make_trials(2)
    assert reporter.should_report(trials) is True
    assert reporter.should_report(trials) is False
    assert reporter.should_report(trials, done=True) is True
    assert CLIReporter(max_report_frequency=0).should_report(trials) is True


def test_intermediate_tables_can_be_suppressed(capsys):
    trials = make_trials(2)
    reporter = CLIReporter(print_intermediate_tables=False)
    out = report_text(reporter, trials, capsys)
    assert "Number of trials: 2" in out and "| Trial name" not in out
    out = report_text(reporter, trials, capsys, True)
    assert "| Trial name" in out


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_progress_rows": 0}, "max_progress_rows"),
        ({"max_report_frequency": -1}, "max_report_frequency"),
        ({"mode": "best"}, "mode"),
        ({"infer_limit": -1}, "infer_limit"),
    ],
)
def test_reporter_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CLIReporter(**kwargs)
    with pytest.raises(TypeError, match="metric_columns"):
        CLIReporter(metric_columns="loss")


def test_custom_reporter_subclass_controls_frequency(capsys):
    class OnlyAtEnd(CLIReporter):
        def should_report(self, trials, done=False):
            return done

    reporter = OnlyAtEnd()
    assert reporter.should_report(make_trials(1)) is False
    assert reporter.should_report(make_trials(1), done=True) is True

    class Custom(ProgressReporter):
        def should_report(self, trials, done=False):
            return True

        def report(self, trials, *sys_info):
            print("\n".join(str(t) for t in trials))

    Custom().report(make_trials(2), False)
    assert capsys.readouterr().out == "train_fn_abc_00000\ntrain_fn_abc_00001\n"


def test_jupyter_reporter_prints_text_without_ipython(capsys):
    # Outside a running IPython shell (installed or not) the report is printed as text.
    reporter = JupyterNotebookReporter(overwrite=True)
    out = report_text(reporter, make_trials(2), capsys)
    assert "== Status ==" in out and "train_fn_abc_00001" in out


def test_detect_reporter_outside_a_notebook():
    reporter = detect_reporter(verbose=1, metric="loss", mode="min")
    assert type(reporter) is CLIReporter
    assert reporter._metric == "loss" and reporter._mode == "min"


def _events(callback, trial):
    trials = [trial]
    callback.on_trial_start(iteration=0, trials=trials, trial=trial)
    for i in range(2):
        result = {"loss": 0.5 / (i + 1), "training_iteration": i + 1, "time_total_s": 1.0 * (i + 1)}
        trial.update_last_result(result)
        callback.on_trial_result(iteration=i, trials=trials, trial=trial, result=result)
    callback.on_trial_complete(iteration=3, trials=trials, trial=trial)


def test_trial_progress_verbose_2_prints_start_and_completion(capsys):
    trial = make_trials(1)[0]
    trial.last_result = {}
    _events(TrialProgressCallback(metric="loss", verbosity=2), trial)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Trial train_fn_abc_00000 started with configuration: {'lr': 0.001")
    assert lines[1].startswith("Trial train_fn_abc_00000 completed after 2 iterations at ")
    assert "Total running time: 2.00s" in lines[1] and "loss=0.25" in lines[1]


def test_trial_progress_verbose_3_prints_every_result(capsys):
    trial = make_trials(1)[0]
    _events(TrialProgressCallback(verbosity=3), trial)
    lines = capsys.readouterr().out.splitlines()
    iteration_lines = [line for line in lines if "finished iteration" in line]
    assert len(iteration_lines) == 2
    assert iteration_lines[1].startswith("Trial train_fn_abc_00000 finished iteration 2 at ")
    assert "loss=0.25" in iteration_lines[1]


def test_trial_progress_prints_errors(capsys, monkeypatch):
    trial = make_trials(4)[3]
    trial.error_msg = "ValueError: broken"
    TrialProgressCallback(verbosity=1).on_trial_error(iteration=0, trials=[trial], trial=trial)
    out = capsys.readouterr().out
    assert "Trial train_fn_abc_00003 errored after 4 iterations" in out
    assert "Error file: /results/exp/train_fn_abc_00003/error.txt" in out
    assert "ValueError: broken" in out
    TrialProgressCallback(verbosity=1).on_trial_start(iteration=0, trials=[trial], trial=trial)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    TrialProgressCallback(verbosity=1).on_trial_error(iteration=0, trials=[trial], trial=trial)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbosity"):
        TrialProgressCallback(verbosity=5)


# -- reporters as Ray takes them ------------------------------------------------------------------------------
def _three_reports(config):
    for i in range(3):
        tune.report({"loss": 1.0 / (i + 1), "accuracy": i / 3})


def test_verbose_0_silences_a_reporter_of_the_users_too(tmp_path, capsys):
    tune.Tuner(_three_reports, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0, progress_reporter=tune.CLIReporter(max_report_frequency=0))).fit()
    assert "== Status ==" not in capsys.readouterr().out


def test_ray_column_options_work_as_on_ray():
    from tunesmith.tune.utils.log import Verbosity

    reporter = tune.CLIReporter()
    reporter.add_metric_column("loss")  # not one of Ray's default columns: adding it is no error
    reporter.add_metric_column("accuracy", "acc.")
    with pytest.raises(ValueError, match="already exists"):
        reporter.add_metric_column("loss")
    empty = tune.CLIReporter(parameter_columns=[], metric_columns=[])
    assert empty._parameter_columns is None and "training_iteration" in empty._metric_columns
    assert tune.RunConfig(verbose=Verbosity.V1_EXPERIMENT).verbose == 1


class _EndsAfterThreeTrials(tune.Stopper):
    def __init__(self):
        self.trials = set()

    def __call__(self, trial_id, result):
        self.trials.add(trial_id)
        return True

    def stop_all(self):
        return len(self.trials) >= 3


def _one_score(config):
    tune.report({"score": 1})


def test_a_run_without_a_sample_count_says_infinite(capsys, tmp_path):
    """num_samples=-1: the table said "Number of trials: 3", Ray says "3/infinite"."""
    tune.Tuner(_one_score, tune_config=tune.TuneConfig(num_samples=-1, max_concurrent_trials=1),
               run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=1, stop=_EndsAfterThreeTrials(),
                                         progress_reporter=tune.CLIReporter(max_report_frequency=0))).fit()
    assert "/infinite (" in capsys.readouterr().out


def test_wide_characters_count_as_two_columns_in_tables_and_redraws():
    """A table of Chinese values was misaligned, and a live redraw on a terminal left pieces of the old table:
    each wide character was counted as one column."""
    from tunesmith.tune.progress_reporter import _screen_rows, format_table

    table = format_table(["name", "x"], [["实验", "1"], ["ab", "10"]]).split("\n")
    assert table[3] == "| 实验 |  1 |" and table[4] == "| ab   | 10 |"
    assert _screen_rows("实验" * 40 + "\n", 70) == 3  # 160 columns on a 70-column terminal
    assert _screen_rows("ab" * 40 + "\n", 70) == 2
