"""Shared fixtures: a small synthetic corpus and one real local Ray for the whole session.

Every test that uses the local Ray is marked `integration`, as are the subprocess sweeps
(`tests/test_faults.py`, `tests/test_cluster.py`): `pytest -m "not integration"` is the fast tier.
"""

from __future__ import annotations

import pytest
import ray

from clipsweep.orchestrator.trial_data import TrialData
from clipsweep.trainers.config import TrialConfig
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


@pytest.fixture(scope="session")
def small_data(ray_local, small_corpus: SyntheticCorpus) -> TrialData:
    """`small_corpus` as trials read it, its training set decoded once into the object store, as
    a sweep shares it between its trials (`TrialData.with_decoded_training_set`): the in-process
    trials of the integration tier skip a decode each (about 4 s here)."""
    data = TrialData.from_paths(small_corpus.split_dir("train"), small_corpus.tokenizer_dir, small_corpus.split_dir("heldout"))
    return data.with_decoded_training_set(TrialConfig.from_dict({}))


@pytest.fixture
def no_ray():
    """Fails the test if it starts Ray: for checks that must refuse bad input before Ray starts.

    Reads Ray's own state, before and after: none may be up when the test begins (the fast tier
    never starts one, and in a full run these tests' module, test_bad_input.py, runs before any
    module that uses `ray_local`), and none may be up after it.
    """
    assert not ray.is_initialized(), "a Ray from an earlier test is up: this check needs a process without one"
    yield
    started = ray.is_initialized()
    if started:
        ray.shutdown()  # leave no Ray to the next test
    assert not started, "Ray was started: the bad input was not caught before Ray"


# CI runs the integration tier on two pytest workers with work stealing (`-n 2 --dist worksteal`):
# each worker starts with one half of the tests, in collection order, and an idle worker takes
# the back half of the other's queue. The order for that: the sweep module first (a worker's
# first tests are never taken from it, so its module-scoped sweep runs once; pytest-xdist's
# `loadgroup` would say so with a mark, but its marks do nothing on pytest 9), then the subprocess
# sweeps, the longest tests (1.5-3.5 min each here), so that none of them starts last and runs alone.
RUN_FIRST = ("test_sweep.py", "test_faults.py", "test_cluster.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
    # stable: the rest as collected
    items.sort(key=lambda item: RUN_FIRST.index(item.path.name) if item.path.name in RUN_FIRST else len(RUN_FIRST))
