"""Values defined in the user's script (``__main__``) travel to trials and back, as on Ray.

Ray sends configs and results with cloudpickle, so a config may hold an
instance of a class the script defines, the class itself, a function or a
lambda, and a trial may report such an object. The script runs as
``__main__`` in its own process here, which is what a user's ``python
train.py`` does.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    from dataclasses import dataclass
    from tunesmith import train, tune

    class LargeModel:
        def __init__(self, model_id):
            self.model_id = model_id

    @dataclass
    class Optimizer:
        lr: float

    def relu(x):
        return max(x, 0)

    def train_fn(config):
        v = config["v"]
        if isinstance(v, LargeModel):
            seen = f"model {v.model_id}"
        elif isinstance(v, Optimizer):
            seen = f"optimizer {v.lr}"
        elif v is LargeModel:
            seen = "the class"
        else:
            seen = f"function {v(-2)} {v(3)}"
        train.report({"seen": seen, "obj": Optimizer(0.5)})

    values = [LargeModel(1), LargeModel(2), Optimizer(0.1), LargeModel, relu, lambda x: x * 10]
    grid = tune.Tuner(train_fn, param_space={"v": tune.grid_search(values)},
                      run_config=tune.RunConfig(storage_path=sys.argv[1], name="main_values", verbose=0)).fit()
    print(json.dumps({
        "errors": [str(e) for e in grid.errors],
        "seen": sorted(r.metrics["seen"] for r in grid),
        "reported_types": sorted({type(r.metrics["obj"]).__name__ for r in grid}),
        "reported_is_scripts_class": all(isinstance(r.metrics["obj"], Optimizer) for r in grid),
        "config_is_scripts_class": isinstance(grid[0].config["v"], (LargeModel, Optimizer)) or callable(grid[0].config["v"]),
    }))
""")


def _run_script(tmp_path, text: str) -> subprocess.CompletedProcess:
    """Runs ``text`` as the user's own script (``__main__``), with a storage path as its argument."""
    script = tmp_path / "train.py"
    script.write_text(text)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "storage")], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_configs_and_results_may_hold_what_the_script_defines(tmp_path):
    proc = _run_script(tmp_path, SCRIPT)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == []
    assert out["seen"] == ["function -20 30", "function 0 3", "model 1", "model 2", "optimizer 0.1", "the class"]
    # What the trials reported is an object of the script's own class again in the driver.
    assert out["reported_types"] == ["Optimizer"]
    assert out["reported_is_scripts_class"] is True
    assert out["config_is_scripts_class"] is True


FAILING_SCRIPT = textwrap.dedent("""
    import sys
    from tunesmith import train, tune
    from tunesmith.train import DataParallelTrainer, ScalingConfig

    def fails(config):
        raise ValueError("the trial's own failure")

    def fails_in_a_worker(config):
        raise KeyError("a training worker's failure")

    grid = tune.Tuner(fails, run_config=tune.RunConfig(storage_path=sys.argv[1], name="tb", verbose=0)).fit()
    print("TUNE", grid.errors[0])
    try:
        DataParallelTrainer(fails_in_a_worker, scaling_config=ScalingConfig(num_workers=1),
                            run_config=train.RunConfig(storage_path=sys.argv[1], name="tb_train", verbose=0)).fit()
    except Exception as exc:
        print("TRAIN", exc)
""")


def test_a_trials_traceback_names_the_scripts_file_and_line(tmp_path):
    proc = _run_script(tmp_path, FAILING_SCRIPT)
    script = tmp_path / "train.py"
    tune_part, train_part = proc.stdout.split("\nTRAIN", 1)
    assert f'File "{script}", line 7, in fails' in tune_part
    assert 'raise ValueError("the trial\'s own failure")' in tune_part
    assert f'File "{script}", line 10, in fails_in_a_worker' in train_part
    assert "<dynamic-code>" not in proc.stdout


def test_a_module_from_the_working_directory_is_found_after_the_script_changes_directory(tmp_path):
    # As in a notebook (or `python -c`): '' on sys.path, a helper module imported from the working
    # directory, then `%cd` elsewhere and a second fit(). The workers still import the helper.
    (tmp_path / "nbhelper.py").write_text("def f(a):\n    return a + 1000\n")
    (tmp_path / "sub").mkdir()
    code = textwrap.dedent(f"""
        import json, os, sys
        assert "" in sys.path
        import nbhelper
        from tunesmith import train, tune

        def trainable(config):
            train.report({{"v": nbhelper.f(config["a"])}})

        out = []
        for name in ("first", "second"):
            grid = tune.Tuner(trainable, param_space={{"a": 1}},
                              run_config=tune.RunConfig(name=name, storage_path={str(tmp_path / "storage")!r},
                                                        verbose=0)).fit()
            out.append([grid[0].metrics.get("v"), [str(e).splitlines()[-1] for e in grid.errors]])
            if name == "first":
                os.chdir("sub")
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[1001, []], [1001, []]]
