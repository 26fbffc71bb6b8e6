"""The keys a worker adds to each epoch's report beside its metrics (`orchestrator/keys.py` re-exports them)."""

CHECKPOINT_PATH_KEY = "checkpoint_path"  # where the epoch's checkpoint was stored (as Ray's Tune bridge says)
NODE_KEY = "node_id"  # the Ray node the rank ran on
