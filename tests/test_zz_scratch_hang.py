import time, pytest
from tunesmith import tune
def hangs(config):
    time.sleep(1000)
@pytest.mark.timeout(20)
def test_hang(tmp_path):
    tune.Tuner(hangs, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
