"""Names of the result fields that tunesmith fills in automatically.

They follow the names of Ray Tune, so that analysis code written for Ray reads
tunesmith's output unchanged.
"""
from __future__ import annotations

TRAINING_ITERATION = "training_iteration"
TIME_THIS_ITER_S = "time_this_iter_s"
TIME_TOTAL_S = "time_total_s"
TIMESTEPS_THIS_ITER = "timesteps_this_iter"
TIMESTEPS_TOTAL = "timesteps_total"
EPISODES_THIS_ITER = "episodes_this_iter"
EPISODES_TOTAL = "episodes_total"
ITERATIONS_SINCE_RESTORE = "iterations_since_restore"
TIME_SINCE_RESTORE = "time_since_restore"
TIMESTEPS_SINCE_RESTORE = "timesteps_since_restore"
DONE = "done"
# Set on the result a trainable repeats once it has ended (its last one): no new row, the last is done.
RESULT_DUPLICATE = "__duplicate__"
SHOULD_CHECKPOINT = "should_checkpoint"
TRIAL_ID = "trial_id"
EXPERIMENT_TAG = "experiment_tag"
EXPERIMENT_ID = "experiment_id"
DATE = "date"
TIMESTAMP = "timestamp"
HOSTNAME = "hostname"
NODE_IP = "node_ip"
PID = "pid"
CONFIG = "config"
CHECKPOINT_DIR_NAME = "checkpoint_dir_name"
MEAN_ACCURACY = "mean_accuracy"
MEAN_LOSS = "mean_loss"
NEG_MEAN_LOSS = "neg_mean_loss"
EPISODE_REWARD_MEAN = "episode_reward_mean"

DEFAULT_METRIC = "_metric"

# Fields set by tunesmith on every result; a metric a user reports is never one of these.
AUTO_RESULT_KEYS = (
    TRAINING_ITERATION,
    TIME_THIS_ITER_S,
    TIME_TOTAL_S,
    ITERATIONS_SINCE_RESTORE,
    TIME_SINCE_RESTORE,
    TIMESTEPS_SINCE_RESTORE,
    TIMESTEPS_TOTAL,
    DONE,
    TRIAL_ID,
    EXPERIMENT_TAG,
    DATE,
    TIMESTAMP,
    HOSTNAME,
    NODE_IP,
    PID,
    CONFIG,
    CHECKPOINT_DIR_NAME,
)

# Per-trial file names, as Ray Tune writes them.
EXPR_PARAM_FILE = "params.json"
EXPR_PARAM_PICKLE_FILE = "params.pkl"
EXPR_PROGRESS_FILE = "progress.csv"
EXPR_RESULT_FILE = "result.json"
EXPR_ERROR_FILE = "error.txt"
EXPR_ERROR_PICKLE_FILE = "error.pkl"
EXPERIMENT_STATE_FILE = "experiment_state.json"
# The form of the experiment state this release writes (1: checkpoints without their row counts).
EXPERIMENT_STATE_VERSION = 2
SEARCHER_STATE_FILE = "searcher_state.pkl"
SCHEDULER_STATE_FILE = "scheduler_state.pkl"
STOPPER_STATE_FILE = "stopper_state.pkl"
TUNER_FILE = "tuner.pkl"
CHECKPOINT_DIR_FORMAT = "checkpoint_{:06d}"
