"""Every name clipsweep writes into a Tune result, a Tune config or an MLflow run, in one place.

Result keys are what a trial reports each epoch (beside its `bench/*`, `loss/*` and `train/*`
metrics); config keys are what a Tune trial config carries beside its dotted config fields; tags
are what the MLflow UI's runs table can show and filter on.
"""

from __future__ import annotations

# ---- Worker report keys: defined where the worker writes them (trainers never imports this) --
from clipsweep.trainers.report_keys import CHECKPOINT_PATH_KEY, NODE_KEY  # noqa: F401  (re-exported)

# ---- Tune result keys ----------------------------------------------------------------------
SCORE = "score"  # cheap-tier mean primary metric, every epoch (what a person reads)
FINAL_STAGE_SCORE = "final_stage_score"  # the same in final-stage epochs (NaN before): what ASHA and Optuna see
FINAL_STAGE_EPOCH = "final_stage_epoch"  # epochs into the final stage: ASHA's clock and Optuna's step
TRAIN_NODES = "train_nodes"  # comma-separated Ray node ids of the epoch's Train workers
DRIVER_NODE = "driver_node"  # Ray node id of the trial's driver (the Tune trainable)

# ---- Tune config keys ----------------------------------------------------------------------
ROLE_KEY = "role"  # baseline | point | search
SEED_FIELD = "optim.seed"  # what a seed replicate's config sets
REPLICATE_KEY = "replicate_of"  # in a replicate's Tune config: the finalist it repeats

# ---- MLflow tags ---------------------------------------------------------------------------
STATUS_TAG = "clipsweep.status"  # completed | stopped_early | failed | killed
VERDICT_TAG = "clipsweep.verdict"  # on a ranked run: its variant's aggregate verdict against the reference
PAIRING_TAG = "clipsweep.pairing"  # paired | unpaired | items only
ROLE_TAG = "clipsweep.role"  # baseline | search
REASON_TAG = "clipsweep.failure_reason"
TRIAL_ID_TAG = "clipsweep.trial_id"
TRIAL_TAG = "clipsweep.trial"  # the trial's name (`trial-01-point`); the run name may carry a suffix
SWEEP_TAG = "clipsweep.sweep"
PARENT_TAG = "mlflow.parentRunId"
OVERRIDES_TAG = "clipsweep.overrides"  # JSON {dotted field: value}: what differs from the baseline
NODES_TAG = "clipsweep.train_nodes"  # Ray node ids the trial's Train workers ran on
DRIVER_NODE_TAG = "clipsweep.driver_node"  # Ray node id of the trial's driver
BEST_CHECKPOINT_TAG = "clipsweep.best_checkpoint"  # storage path of the best-scoring epoch's checkpoint
SEED_TAG = "clipsweep.seed"  # the run's optim.seed
REPLICATE_OF_TAG = "clipsweep.replicate_of"  # on a seed replicate: the finalist (child run name) it repeats
PATH_TAG = "clipsweep.path"  # on the parent run: the Tune experiment folder
LEADERBOARD_TAG = "clipsweep.leaderboard"  # on the parent run, when there was nothing to rank
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI (Markdown)
