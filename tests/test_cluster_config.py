"""cluster.yaml passes the Ray cluster launcher's own schema validation (no cloud call)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import fillout_defaults, validate_config

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"


def test_cluster_yaml_is_a_valid_ray_cluster_config():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    validate_config(fillout_defaults(config))  # what `ray up` runs before it touches the provider
    assert config["head_node_type"] in config["available_node_types"]
    assert config["available_node_types"]["gpu_worker"]["min_workers"] == 0  # autoscales from zero


def test_the_validation_rejects_a_broken_copy():
    broken = copy.deepcopy(yaml.safe_load(CLUSTER_YAML.read_text()))
    broken["available_node_types"]["gpu_worker"]["max_wrokers"] = 8
    with pytest.raises(Exception, match="max_wrokers"):
        validate_config(fillout_defaults(broken))
