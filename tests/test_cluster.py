"""A sweep submitted as a Ray job to a 2-node Ray cluster, tracked by a real MLflow server.

Both nodes run on this machine (`ray start --head` and `ray start --address`, each with its own
agent and metrics ports, token auth on as `ray up` clusters have it), and the commands are the
README's "Run on a cluster" ones apart from `ray up` / `ray down`. The head node holds the
`clipsweep_driver` resource that the spec's trial drivers reserve, and only 1 CPU, which a
driver fills: so every trial's driver runs on the head and its Train worker on the other node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sweep_processes import alive, clean_env, sweep_runs, wait_for, write_space

from clipsweep.orchestrator.keys import DRIVER_NODE_TAG, NODES_TAG, STATUS_TAG

BIN = Path(sys.executable).parent


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _processes_mentioning(markers: tuple[str, ...]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            if entry.isdigit() and int(entry) != os.getpid() and any(m.encode() in cmdline for m in markers):
                found.append(int(entry))
        except (OSError, ValueError):
            pass
    return found


def _stop_processes_mentioning(*markers: str) -> None:
    """Stops this cluster's Ray processes and the MLflow server (never another Ray on the machine,
    which `ray stop` would): SIGTERM, then SIGKILL whatever is left after 3 s. Ray's workers
    exit with their raylet."""
    for sig, grace_s in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
        for pid in _processes_mentioning(markers):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not alive(set(_processes_mentioning(markers))), grace_s, "the cluster's processes to exit")


@pytest.fixture
def two_node_cluster(tmp_path: Path) -> Iterator[dict[str, object]]:
    gcs, dashboard, head_agent, head_metrics, client_port, worker_agent, worker_metrics, mlflow_port = _free_ports(8)
    env = {**clean_env(), "RAY_AUTH_MODE": "token"}
    temp = tempfile.mkdtemp(prefix="ray2n", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        # The MLflow server starts while the Ray nodes do (each takes about 10 s here).
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
             "--artifacts-destination", str(tmp_path / "mlflow-artifacts"), "--host", "127.0.0.1", "--port", str(mlflow_port)],
            stdout=open(tmp_path / "mlflow.log", "wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        _run([str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--num-cpus=1", "--num-gpus=0",
              '--resources={"clipsweep_driver": 1}', f"--temp-dir={temp}", "--include-dashboard=true",
              f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={head_agent}",
              f"--metrics-export-port={head_metrics}", f"--ray-client-server-port={client_port}"], env)  # fmt: skip
        _run([str(BIN / "ray"), "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=4", "--num-gpus=0",
              f"--dashboard-agent-listen-port={worker_agent}", f"--metrics-export-port={worker_metrics}"], env)  # fmt: skip
        uri = f"http://127.0.0.1:{mlflow_port}"

        def answers() -> bool:
            try:
                return urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200
            except OSError:
                return False

        wait_for(answers, 120, "the MLflow server", server)
        nodes = json.loads(_run([str(BIN / "ray"), "list", "nodes", "--address", f"127.0.0.1:{gcs}", "--format=json"], env).stdout)
        yield {"env": env, "dashboard": f"http://127.0.0.1:{dashboard}", "tracking_uri": uri, "nodes": nodes}
    finally:
        _stop_processes_mentioning(temp, str(tmp_path))  # Ray's processes name its session folder; MLflow's its store
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.integration
def test_a_ray_job_sweep_on_two_nodes_records_everything_in_the_mlflow_server(two_node_cluster, small_corpus, tmp_path):
    cluster = two_node_cluster
    head = [n["node_id"] for n in cluster["nodes"] if n["is_head_node"]]
    others = [n["node_id"] for n in cluster["nodes"] if not n["is_head_node"]]
    assert len(head) == 1 and len(others) == 1
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    write_space(
        job_dir, small_corpus, "it-cluster",
        trial={"optim": {"epochs": 1, "batch_size": 64, "warmup_steps": 1, "lr": 2e-3}},
        search={"num_samples": 1, "seed": 0},  # the baseline: one trial shows where drivers and workers go
        resources={"workers_per_trial": 1, "cpus_per_worker": 1, "driver_cpus": 1, "driver_resources": {"clipsweep_driver": 1}},
        mlflow={"tracking_uri": cluster["tracking_uri"], "copy_checkpoints": True},  # the copy goes through the server
    )  # fmt: skip
    storage = tmp_path / "shared-storage"
    # The README's command: the job's working directory is a copy Ray makes; nothing after the
    # sweep may depend on it (records, leaderboard and MLflow go to storage and the server).
    job = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", cluster["dashboard"], "--working-dir", str(job_dir), "--",
         "clipsweep", "run", "it-cluster.yaml", "--storage", str(storage), "--tracking-uri", cluster["tracking_uri"]],
        env=cluster["env"], capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-4000:] + job.stderr[-2000:]
    assert "Leaderboard" in job.stdout

    parents, children = sweep_runs(cluster["tracking_uri"], "it-cluster")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags[STATUS_TAG] == "completed"
    assert [r.info.run_name for r in children] == ["trial-00-baseline"]
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags[DRIVER_NODE_TAG] == head[0]  # the driver resource pins drivers to the head
        assert run.data.tags[NODES_TAG] == others[0]  # the head's one CPU is the driver's: workers go elsewhere
    client = MlflowClient(tracking_uri=cluster["tracking_uri"])
    board = {a.path.split("/", 1)[1] for a in client.list_artifacts(parents[0].info.run_id, "leaderboard")}
    assert {"leaderboard.csv", "leaderboard.html", "leaderboard_forest.png", "scores.npz"} <= board
    assert [a.path for a in client.list_artifacts(children[0].info.run_id)] == ["checkpoint"]  # mlflow.copy_checkpoints
    assert {a.path for a in client.list_artifacts(children[0].info.run_id, "checkpoint")} == {"checkpoint/trial.pt", "checkpoint/metrics.json"}
    assert (tmp_path / "mlflow-artifacts").is_dir()  # artifacts went through the server, to its destination
    (experiment,) = [p for p in storage.iterdir() if p.is_dir()]
    assert {"clipsweep_sweep.json", "leaderboard", "train"} <= set(os.listdir(experiment))

