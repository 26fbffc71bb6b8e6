"""Shared fixtures: a small synthetic corpus and one real local Ray for the whole session.

Every test that uses the local Ray is marked `integration`, as are the subprocess sweeps
(`tests/test_faults.py`, `tests/test_cluster.py`): `pytest -m "not integration"` is the fast tier.
"""

from __future__ import annotations

import pytest
import ray

from clipsweep.trainers.data.synthetic import SyntheticCorpus, generate_synthetic


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCorpus:
    """600 scenes, small shards so that the loader sees several files."""
    return generate_synthetic(str(tmp_path_factory.mktemp("corpus")), n=600, seed=3, rows_per_shard=128)


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray. 4 logical CPUs on 2 cores: 2 Train workers plus Ray Data tasks fit."""
    ray.init(num_cpus=4, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


class RayStarted(AssertionError):
    """Raised by the `no_ray` tripwire: the code under test got as far as starting Ray."""


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test the moment any path of clipsweep would start (or join) Ray: for checks
    that must refuse bad input before Ray starts."""
    from clipsweep.orchestrator import api, trial

    def started(*args, **kwargs):
        raise RayStarted("Ray was started: the bad input was not caught before Ray")

    monkeypatch.setattr(ray, "init", started)
    monkeypatch.setattr(api, "start_ray", started)
    monkeypatch.setattr(trial, "ensure_ray", started)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
