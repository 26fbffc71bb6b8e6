"""A corpus of the mistakes users make, each of which must end in one clear error line.

Every case runs the real CLI (`main`) in this process and must: exit non-zero, print no
traceback, name the field or path, the value and what is allowed, and stop before Ray starts
(the `no_ray` fixture reads Ray's state before and after) and before any MLflow run
is created (the case's SQLite store is never written).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient
from paper10_fixtures import write_paper10
from ray import tune
from specs import spec_doc

from clipsweep import Sweep
from clipsweep.orchestrator import cli
from clipsweep.orchestrator.keys import REASON_TAG, ROLE_TAG, STATUS_TAG
from clipsweep.trainers.data.synthetic import SyntheticCorpus
from clipsweep.trainers.evaluation.datasets import DATASETS


@dataclass(frozen=True)
class Case:
    """One bad input: the files it writes (spec edits or raw text), the command, and what the
    error must say (`{tmp}` in any of them is the case's folder)."""

    id: str
    argv: list[str]
    says: tuple[str, ...]
    spec: dict[str, Any] | None = None  # deep-merged into the valid base spec, written to {tmp}/spec.yaml
    files: dict[str, str] = field(default_factory=dict)  # raw files, relative to {tmp}
    setup: Callable[[str], None] | None = None


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _base_spec(corpus: SyntheticCorpus, tmp: str) -> dict[str, Any]:
    return {**spec_doc(corpus, tmp, name="bad-input", batch_size=32), "search": {"num_samples": 2}}


def _sweep_json(tmp: str) -> None:
    os.makedirs(f"{tmp}/sweep")
    with open(f"{tmp}/sweep/clipsweep_sweep.json", "w") as f:
        f.write('{"tracking_uri": "sqlite:///x.db", "mlflow_parent')


def _shards_folder(tmp: str) -> None:
    os.makedirs(f"{tmp}/imgs")
    with open(f"{tmp}/imgs/captions.csv", "wb") as f:
        f.write("file,caption\nà.jpg,caf\xe9 au lait\n".encode("latin-1"))


SPEC = ["validate", "{tmp}/spec.yaml"]
TRAIN = ["train", "{tmp}/train.yaml", "--storage", "{tmp}/runs"]

CASES = [
    # --- the sweep spec -------------------------------------------------------------------
    Case("knob-typo", SPEC, ("search_space.objective.temprature", "did you mean objective.temperature"),
         spec={"search_space": {"objective": {"temprature": {"type": "uniform", "low": 0.03, "high": 0.1}}}}),
    Case("bad-choice", SPEC, ("search_space.objective.logit_transform.values[1]", "'sinus'", "allowed: identity, sine"),
         spec={"search_space": {"objective": {"logit_transform": {"type": "choice", "values": ["identity", "sinus"]}}}}),
    Case("low-above-high", SPEC, ("search_space.objective.temperature.low=0.5", "allowed: low <= high"),
         spec={"search_space": {"objective": {"temperature": {"type": "loguniform", "low": 0.5, "high": 0.1}}}}),
    Case("top-level-typo", SPEC, ("unknown field serach", "did you mean search"), spec={"serach": {"num_samples": 3}}),
    Case("lr-as-text", SPEC, ("trial.optim.lr='2e-3'", "YAML reads 2e-3 as text"),
         files={"spec.yaml": "name: x\ntrial: {optim: {lr: 2e-3}}\nsearch_space: {objective: {temperature: {type: uniform, low: 0.03, high: 0.1}}}\n"}),
    Case("range-end-as-text", SPEC, ("search_space.optim.lr.low='1e-4'", "YAML reads 1e-4 as text"),
         files={"spec.yaml": "name: x\nsearch_space: {optim: {lr: {type: loguniform, low: 1e-4, high: 1.0e-2}}}\n"}),
    Case("infinite-number", SPEC, ("search_space.objective.temperature.high=inf", "a finite number"),
         files={"spec.yaml": "name: x\nsearch_space: {objective: {temperature: {type: uniform, low: 0.03, high: 1.0e+400}}}\n"}),
    Case("infinite-trial-value", SPEC, ("trial.optim.weight_decay=inf", "finite"),
         files={"spec.yaml": "name: x\ntrial: {optim: {weight_decay: 1.0e+400}}\nsearch_space: {objective: {temperature: {type: uniform, low: 0.03, high: 0.1}}}\n"}),
    Case("tab-indent", SPEC, ("spec.yaml", "line 3", "indent with spaces"),
         files={"spec.yaml": "name: x\nsearch_space:\n\tobjective: {}\n"}),
    Case("malformed-yaml", SPEC, ("spec.yaml", "line 3", "malformed YAML"), files={"spec.yaml": "name: x\ntrial: {optim: [\n"}),
    Case("yaml-list", SPEC, ("spec.yaml", "must be a mapping", "list"), files={"spec.yaml": "- name: x\n"}),
    Case("spec-is-folder", ["validate", "{tmp}"], ("{tmp}", "Is a directory")),
    Case("spec-missing", ["validate", "{tmp}/nope.yaml"], ("{tmp}/nope.yaml", "No such file")),
    Case("name-escapes", SPEC, ("name='../x'", "a plain folder name"), spec={"name": "../x"}),
    Case("name-nested", SPEC, ("name='a/b'", "a plain folder name"), spec={"name": "a/b"}),
    Case("storage-is-file", SPEC, ("storage_path=", "is a file", "allowed: a writable folder"),
         spec={"storage_path": "{tmp}/a-file"}, files={"a-file": "x"}),
    Case("storage-unwritable", SPEC, ("storage_path='/proc/x'", "allowed: a writable folder"), spec={"storage_path": "/proc/x"}),
    Case("storage-scheme", SPEC, ("storage_path='nosuchfs://b'", "no filesystem for nosuchfs://"), spec={"storage_path": "nosuchfs://b"}),
    Case("trial-actor-two-workers", SPEC, ("resources.trainer=trial_actor with workers_per_trial=2", "trains one worker"),
         spec={"resources": {"trainer": "trial_actor", "workers_per_trial": 2}}),
    Case("trainer-unknown", SPEC, ("resources.trainer", "'ray'", "torch_trainer"), spec={"resources": {"trainer": "ray"}}),
    Case("gpu-without-gpu", SPEC, ("resources.gpus_per_worker=1", "no GPU"), spec={"resources": {"gpus_per_worker": 1}}),
    Case("batch-range-above-data", SPEC, ("search_space.optim.batch_size.high=4096", "at most the", "training items"),
         spec={"search_space": {"optim": {"batch_size": {"type": "int", "low": 32, "high": 4096}}}}),
    Case("batch-choice-above-data", SPEC, ("search_space.optim.batch_size.values[1]=2048", "training items"),
         spec={"search_space": {"optim": {"batch_size": {"type": "choice", "values": [32, 2048]}}}}),
    Case("clusters-range-above-data", SPEC, ("search_space.negatives.n_clusters_image.high=5000", "training items"),
         spec={"trial": {"negatives": {"weighting": "cluster_mask"}},
               "search_space": {"negatives": {"n_clusters_image": {"type": "int", "low": 10, "high": 5000}}}}),
    Case("when-value-never-drawn", SPEC, ("when.objective.logit_transform", "'sigmoid_centered'", "can draw: identity, sine"),
         spec={"search_space": {"objective": {"omega": {"type": "uniform", "low": 0.5, "high": 1.5,
                                                        "when": {"objective.logit_transform": ["sine", "sigmoid_centered"]}}}}}),
    Case("when-field-typo", SPEC, ("objective.logit_transfrom;", "did you mean objective.logit_transform"),
         spec={"search_space": {"objective": {"omega": {"type": "uniform", "low": 0.5, "high": 1.5,
                                                        "when": {"objective.logit_transfrom": ["sine"]}}}}}),
    Case("point-field-typo", SPEC, ("points_to_evaluate[0]: unknown field objective.temprature", "did you mean objective.temperature"),
         spec={"points_to_evaluate": [{"objective.temprature": 0.05}]}),
    Case("grace-above-max-t", SPEC, ("scheduler.grace_period=5", "allowed: 1 to max_t=2"), spec={"scheduler": {"grace_period": 5}}),
    Case("setting-of-no-scheduler", SPEC, ("scheduler.grace_period=2 acts on nothing under scheduler.name='none'", "(a setting of asha)"),
         spec={"scheduler": {"name": "none", "grace_period": 2}}),
    Case("checkpoints-keep-unknown", SPEC, ("checkpoints.keep='best'", "allowed: best_and_latest, all"),
         spec={"checkpoints": {"keep": "best"}}),
    Case("copy-checkpoints-not-bool", SPEC, ("mlflow.copy_checkpoints='yes'", "allowed: true or false"),
         spec={"mlflow": {"copy_checkpoints": "yes"}}),
    Case("mlflow-no-server", SPEC, ("mlflow.tracking_uri='http://127.0.0.1:9'", "no MLflow server answers"),
         spec={"mlflow": {"tracking_uri": "http://127.0.0.1:9"}}),
    Case("data-train-missing", SPEC, ("data.train=", "{tmp}/nowhere", "does not exist"), spec={"data": {"train": "{tmp}/nowhere"}}),
    Case("data-stream-not-bool", SPEC, ("data.stream='yes'", "allowed: true or false"), spec={"data": {"stream": "yes"}}),
    Case("data-tar-pattern-matches-nothing", SPEC, ("data.train='{tmp}/cc3m/{00000..00003}.tar'", "no such tar shard",
         "4 of the 4 named are missing"), spec={"data": {"train": "{tmp}/cc3m/{00000..00003}.tar"}}),
    Case("data-uri-scheme-not-installed", SPEC, ("data.train='nosuchfs://bucket/shards/{0..9}.tar'",
         "no filesystem for nosuchfs:// is installed"), spec={"data": {"train": "nosuchfs://bucket/shards/{0..9}.tar"}}),
    Case("data-skipped-fraction-out-of-range", SPEC, ("data.max_skipped_fraction=2", "allowed: a number in [0, 1)"),
         spec={"data": {"max_skipped_fraction": 2}}),
    Case("data-key-typo", SPEC, ("unknown field data.tokeniser", "did you mean tokenizer"), spec={"data": {"tokeniser": "x"}}),
    Case("paper10-root-missing", SPEC, ("suite.roots.dtd='{tmp}/none'", "DTD is expected as"),
         spec={"suite": {"name": "paper10", "roots": {"dtd": "{tmp}/none"}}}),
    # --- one trial: `clipsweep train` --------------------------------------------------------
    Case("train-malformed-yaml", TRAIN, ("train.yaml", "line 2", "malformed YAML"), files={"train.yaml": "trial: {optim: [\n"}),
    Case("train-yaml-list", TRAIN, ("train.yaml", "must be a mapping"), files={"train.yaml": "- trial\n"}),
    Case("train-config-folder", ["train", "{tmp}", "--storage", "{tmp}/runs"], ("{tmp}", "Is a directory")),
    Case("train-unknown-key", TRAIN, ("unknown field trail", "did you mean trial"), files={"train.yaml": "trail: {}\n"}),
    Case("train-bad-knob", TRAIN, ("trial.objective.logit_transform='sinus'", "allowed:"),
         files={"train.yaml": "trial: {objective: {logit_transform: sinus}}\n"}),
    Case("train-infinite", TRAIN, ("trial.optim.lr=inf", "finite"), files={"train.yaml": "trial: {optim: {lr: 1.0e+400}}\n"}),
    Case("train-tab", TRAIN, ("train.yaml", "indent with spaces"), files={"train.yaml": "trial:\n\toptim: {}\n"}),
    Case("train-resume-missing", ["train", "--resume", "{tmp}/no-checkpoint", "--storage", "{tmp}/runs"],
         ("--resume", "{tmp}/no-checkpoint", "no checkpoint")),
    Case("train-storage-is-file", ["train", "--storage", "{tmp}/spec.yaml"], ("--storage='{tmp}/spec.yaml'", "is a file")),
    Case("train-zero-workers", ["train", "--workers", "0", "--storage", "{tmp}/runs"], ("--workers 0", "allowed: >= 1")),
    # --- data commands ----------------------------------------------------------------------
    Case("csv-not-utf8", ["data", "convert", "folder", "--images", "{tmp}/imgs", "--out", "{tmp}/out"],
         ("{tmp}/imgs/captions.csv", "UTF-8"), setup=_shards_folder),
    Case("convert-images-wrong", ["data", "convert", "folder", "--images", "{tmp}/imgs", "--captions-csv", "{tmp}/c.csv",
                                  "--out", "{tmp}/out"], ("no image", "{tmp}/imgs", "nothing written"),
         files={"c.csv": "file,caption\na.jpg,a cat\nb.jpg,a dog\n"}),
    Case("tokenizer-no-shards", ["data", "tokenizer", "{tmp}/none", "--out", "{tmp}/tok"], ("{tmp}/none",)),
    # --- the CLI ------------------------------------------------------------------------------
    Case("resume-with-spec", ["run", "{tmp}/spec.yaml", "--resume", "{tmp}"], ("--resume", "drop the spec argument")),
    Case("resume-nothing-there", ["run", "--resume", "{tmp}"], ("{tmp}", "not a clipsweep sweep")),
    Case("leaderboard-file", ["leaderboard", "{tmp}/spec.yaml"], ("{tmp}/spec.yaml", "a file", "allowed:")),
    Case("leaderboard-corrupt-record", ["leaderboard", "{tmp}/sweep"], ("{tmp}/sweep/clipsweep_sweep.json", "not valid JSON"),
         setup=_sweep_json),
    Case("leaderboard-unknown-run", ["leaderboard", "0123456789abcdef0123456789abcdef", "--tracking-uri", "sqlite:///{tmp}/mlruns.db"],
         ("0123456789abcdef0123456789abcdef", "{tmp}/mlruns.db", "no such")),
    Case("leaderboard-no-server", ["leaderboard", "0123456789abcdef0123456789abcdef", "--tracking-uri", "http://127.0.0.1:9"],
         ("--tracking-uri='http://127.0.0.1:9'", "no MLflow server answers")),
]  # fmt: skip


def _fill(value: Any, tmp: str) -> Any:
    if isinstance(value, str):
        return value.replace("{tmp}", tmp)
    if isinstance(value, dict):
        return {k: _fill(v, tmp) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, tmp) for v in value]
    return value


def _write_case(case: Case, corpus: SyntheticCorpus, tmp: str) -> None:
    with open(f"{tmp}/spec.yaml", "w") as f:
        yaml.safe_dump(_merge(_base_spec(corpus, tmp), _fill(case.spec or {}, tmp)), f)
    with open(f"{tmp}/train.yaml", "w") as f:
        yaml.safe_dump({"data": _base_spec(corpus, tmp)["data"]}, f)
    for name, text in case.files.items():
        with open(f"{tmp}/{name}", "w") as f:
            f.write(_fill(text, tmp))
    if case.setup is not None:
        case.setup(tmp)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error_before_ray(case: Case, small_corpus, tmp_path, capsys, no_ray):
    tmp = str(tmp_path)
    _write_case(case, small_corpus, tmp)
    code = cli.main(_fill(case.argv, tmp))
    out, err = capsys.readouterr()
    assert code != 0, out
    assert "Traceback" not in out + err
    assert err.startswith("error:"), err
    said = " ".join(err.split())  # rich wraps nothing (soft_wrap), but be safe about spacing
    for needle in _fill(list(case.says), tmp):
        assert needle in said, f"{needle!r} not in {said!r}"
    assert not os.path.exists(f"{tmp}/mlruns.db"), "an MLflow store was written"


@pytest.fixture(scope="module")
def paper10(tmp_path_factory):
    """Tiny copies of the 10 paper10 test splits in their real formats."""
    return write_paper10(str(tmp_path_factory.mktemp("paper10")))


MISSING = {  # dataset -> a test image its fixture holds (relative to its root), or COCO's whole image folder
    "pets": "oxford-iiit-pet/images/beagle_40.jpg",
    "dtd": "dtd/dtd/images/banded/banded_0002.jpg",
    "flowers102": "flowers-102/jpg/image_00003.jpg",
    "coco": "val2014/COCO_val2014_000000000001.jpg",
    "coco-folder": "val2014",
}


@pytest.mark.parametrize("case", list(MISSING))
def test_a_missing_test_image_fails_validate_before_ray(case, paper10, small_corpus, tmp_path, capsys, no_ray):
    name = case.removesuffix("-folder")
    root = str(tmp_path / name)
    shutil.copytree(paper10[name].root, root)
    gone = os.path.join(root, MISSING[case])
    shutil.rmtree(gone) if os.path.isdir(gone) else os.remove(gone)
    space = tmp_path / "p10.yaml"
    space.write_text(yaml.safe_dump({
        "name": "p10", "storage_path": str(tmp_path / "runs"), "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/m.db"},
        "data": {"train": small_corpus.split_dir("train"), "tokenizer": small_corpus.tokenizer_dir},
        "suite": {"name": "paper10", "roots": {name: root}},
        "search_space": {"objective": {"temperature": {"type": "loguniform", "low": 0.03, "high": 0.1}}},
    }))  # fmt: skip
    assert cli.main(["validate", str(space)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    info = DATASETS[name]
    assert f"suite.roots.{name}='{root}'" in err and f"{info.title} is expected as {info.layout}" in err
    if case == "coco-folder":
        assert f"{gone} does not exist" in err
    else:
        n = len(paper10[name].labels or paper10[name].captions)
        assert f"1 of the {n} test images are missing, first {gone};" in err


def test_corpus_has_thirty_cases_over_every_entry_point():
    assert len(CASES) >= 30
    assert {c.argv[0] for c in CASES} >= {"validate", "train", "data", "run", "leaderboard"}


PREFLIGHT = [c for c in CASES if c.id in ("gpu-without-gpu", "storage-is-file", "name-escapes", "batch-range-above-data")]


@pytest.mark.parametrize("case", PREFLIGHT, ids=[c.id for c in PREFLIGHT])
def test_run_refuses_what_validate_refuses(case: Case, small_corpus, tmp_path, capsys, no_ray):
    tmp = str(tmp_path)
    _write_case(case, small_corpus, tmp)
    assert cli.main(["run", f"{tmp}/spec.yaml"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert _fill(case.says[0], tmp) in err
    assert not os.path.exists(f"{tmp}/mlruns.db")


def test_more_concurrency_than_cores_is_a_warning_not_an_error(small_corpus, tmp_path, capsys, no_ray):
    tmp = str(tmp_path)
    spec = _merge(_base_spec(small_corpus, tmp), {"search": {"max_concurrent": 64}, "resources": {"workers_per_trial": 64}})
    spec["trial"]["optim"]["batch_size"] = 64
    with open(f"{tmp}/spec.yaml", "w") as f:
        yaml.safe_dump(spec, f)
    assert cli.main(["validate", f"{tmp}/spec.yaml"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "warning" in out and "search.max_concurrent=64" in out and f"{os.cpu_count()} CPU cores" in out
    assert "resources.workers_per_trial=64" in out



class _BrokenCallback(tune.Callback):
    """A user's callback that raises on the first epoch a trial reports (a trial run is open)."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        raise OSError("the disk the user's callback writes to is full")


def test_a_sweep_that_fails_after_its_parent_run_exists_leaves_nothing_running(small_corpus, tmp_path, ray_local):
    tmp = str(tmp_path)
    spec = _merge(_base_spec(small_corpus, tmp), {"trial": {"optim": {"epochs": 1}}, "search": {"num_samples": 1}})
    spec["scheduler"] = {"name": "none"}
    with open(f"{tmp}/spec.yaml", "w") as f:
        yaml.safe_dump(spec, f)
    with pytest.raises(Exception, match="disk the user's callback writes to is full"):
        Sweep.from_yaml(f"{tmp}/spec.yaml").run(callbacks=[_BrokenCallback()])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlruns.db")
    runs = client.search_runs([client.get_experiment_by_name("bad-input").experiment_id])
    by_role = {run.data.tags.get(ROLE_TAG): run for run in runs}
    assert set(by_role) == {"sweep", "baseline"}  # the parent, and the trial that was running
    assert [run.info.status for run in runs if run.info.status == "RUNNING"] == []
    parent = by_role["sweep"]
    assert parent.info.status == "FAILED"
    assert parent.data.tags[STATUS_TAG] == "failed" and "disk the user's callback" in parent.data.tags[REASON_TAG]
    assert by_role["baseline"].info.status == "KILLED"

