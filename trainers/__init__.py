"""What runs on a Ray worker: configs, data, models, objectives, the train loop and evaluation (never imports `orchestrator`)."""
