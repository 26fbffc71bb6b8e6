"""A sweep's MLflow artifacts lie beside their SQLite store, whatever the working folder."""

from __future__ import annotations

import logging
import os
from urllib.parse import urlparse

from mlflow.tracking import MlflowClient

from clipsweep.orchestrator.stores import absolute_store, artifact_root, experiment_id


def _local(uri: str) -> str:
    return urlparse(uri).path


def test_local_paths_become_absolute_and_servers_keep_their_own_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_store("sqlite:///mlruns.db") == f"sqlite:///{tmp_path}/mlruns.db"
    assert absolute_store("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert absolute_store("records") == str(tmp_path / "records")
    assert absolute_store("http://head:5000") == "http://head:5000"
    assert artifact_root("sqlite:///mlruns.db") == (tmp_path / "mlartifacts").as_uri()
    assert artifact_root("http://head:5000") is None
    assert artifact_root("postgresql://db/mlflow") is None


def test_two_stores_keep_their_artifacts_apart_from_any_working_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    uris = {}
    for store in ("a", "b"):
        (tmp_path / store).mkdir()
        uri = f"sqlite:///{tmp_path / store / 'runs.db'}"
        monkeypatch.chdir(elsewhere)  # where a sweep runs from has no say (MLflow's default: ./mlruns)
        client = MlflowClient(tracking_uri=uri)
        run = client.create_run(experiment_id(client, "same-name", uri))
        client.log_text(run.info.run_id, "x", "leaderboard/leaderboard.md")
        uris[store] = client.get_run(run.info.run_id).info.artifact_uri
        assert experiment_id(client, "same-name", uri) == run.info.experiment_id  # found again, not re-created
    for store, uri in uris.items():
        assert _local(uri).startswith(f"{tmp_path / store / 'mlartifacts'}/"), uri
        assert os.path.isfile(f"{_local(uri)}/leaderboard/leaderboard.md")
    assert not os.path.exists(elsewhere / "mlruns")


def test_an_experiment_left_under_the_temp_folder_is_named_in_a_warning(tmp_path, caplog):
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("old-sweep", artifact_location=(tmp_path / "tmp-cwd" / "mlruns").as_uri())  # as before
    with caplog.at_level(logging.WARNING, logger="clipsweep.orchestrator.stores"):
        experiment_id(client, "old-sweep", uri)
    assert "'old-sweep' keeps its artifacts under the temp folder" in caplog.text
    assert str(tmp_path / "tmp-cwd" / "mlruns") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clipsweep.orchestrator.stores"):
        experiment_id(client, "new-sweep", uri)
        experiment_id(client, "new-sweep", uri)
    assert caplog.text == ""
