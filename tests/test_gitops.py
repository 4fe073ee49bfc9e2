"""GitOps retraining: retrain requests, their keys, and `cdarts gitops sync` / `cdarts submit
--idempotency-key` through the real kfp.Client against an in-memory KFP API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cdarts.cli.gitops import period_label
from cdarts.cli.main import app
from cdarts.errors import ConfigError
from pipelines.retrain_request import git_blob_id, load_request, request_files
from tests.conftest import CONFIGS
from tests.fake_kfp_server import FakeKfp, start_fake_kfp

# The tests compile with the default (tag) images; a cluster gets digests (k8s/base/settings.yaml).
UNPINNED = ["--allow-unpinned-images"]
runner = CliRunner()
REQUESTS = CONFIGS / "retrain"


@pytest.fixture
def requests_dir(tmp_path: Path) -> Path:
    target = tmp_path / "requests"
    target.mkdir()
    (target / "cifar.yaml").write_text("genotype: DARTS_V2\nconfig: tiny\noverrides: [retrain.epochs=3]\n")
    return target


def test_the_key_uses_the_same_blob_id_as_git(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("genotype: DARTS_V2\nconfig: tiny\n")
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    loaded = load_request(path)
    assert loaded.blob_id == expected.stdout.strip() == git_blob_id(path.read_bytes())
    assert loaded.idempotency_key() == f"{loaded.blob_id}:r.yaml"
    assert loaded.idempotency_key("2026-W48") == f"{loaded.blob_id}:r.yaml@2026-W48"


def test_a_request_resolves_config_overrides_and_genotype(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump({"genotype": "CDARTS_CIFAR", "config": "tiny", "overrides": ["retrain.epochs=7"], "gpus": 2})
    )
    arguments = load_request(path).pipeline_arguments("s3://bucket/checkpoints")
    assert yaml.safe_load(arguments["config"])["retrain"]["epochs"] == 7
    assert json.loads(arguments["genotype"])["normal"]  # self-contained genotype JSON
    assert arguments["gpus"] == 2 and arguments["checkpoint_root"] == "s3://bucket/checkpoints"


def test_a_request_sets_where_its_run_reads_data_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    request = {
        "genotype": "DARTS_V2",
        "config": "tiny",
        "data_source": "cifar10:s3://datasets/cifar-10-python.tar.gz",
        "namespace": "team-nas",
        "node_selector": {"nvidia.com/gpu.product": "H100"},
        "tolerations": [toleration],
    }
    path.write_text(yaml.safe_dump(request))
    loaded = load_request(path)
    arguments = loaded.pipeline_arguments()
    data = yaml.safe_load(arguments["config"])["data"]  # the source is part of the resolved config
    assert (data["source"], data["location"]) == ("cifar10", "s3://datasets/cifar-10-python.tar.gz")
    assert arguments["node_selector"] == {"nvidia.com/gpu.product": "H100"}
    assert arguments["tolerations"] == [toleration] and loaded.request.namespace == "team-nas"
    # Without them, the compiled pipeline's defaults and the trigger's namespace apply.
    path.write_text(yaml.safe_dump({"genotype": "DARTS_V2", "config": "tiny"}))
    plain = load_request(path)
    assert "node_selector" not in plain.pipeline_arguments() and plain.request.namespace is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("genotype: [1, 2\n", "not valid UTF-8 YAML"),
        ("- a list\n", "must be a YAML mapping"),
        ("config: tiny\n", "genotype: Field required"),
        ("genotype: DARTS_V2\nconfig: tiny\nepochs: 3\n", "epochs: Extra inputs are not permitted"),
        ("genotype: DARTS_V2\nconfig: no-such-preset\n", "no-such-preset"),
        ("genotype: NOT_A_GENOTYPE\nconfig: tiny\n", "NOT_A_GENOTYPE"),
        ("genotype: DARTS_V2\nconfig: tiny\noverrides: [retrain.nope=1]\n", "nope"),
        ("genotype: DARTS_V2\nconfig: tiny\ngpus: 0\n", "gpus"),
        ("genotype: DARTS_V2\nconfig: tiny\ndata_source: cifar10\n", "needs a location"),
        ("genotype: DARTS_V2\nconfig: tiny\ndata_source: 'ftp:x'\n", "unknown source 'ftp'"),
        ("genotype: DARTS_V2\nconfig: tiny\nnamespace: Team_NAS\n", "namespace"),
        ("genotype: DARTS_V2\nconfig: tiny\ntolerations: [{key: a, operator: Sometimes}]\n", "operator"),
    ],
)
def test_bad_requests_are_one_line_errors_naming_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.yaml") as raised:
        load_request(path)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_the_shipped_requests_are_valid_and_all_listed_in_their_kustomization() -> None:
    files = request_files(REQUESTS)
    assert files, "configs/retrain has no requests"
    for path in files:
        load_request(path)
    kustomization = yaml.safe_load((REQUESTS / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert sorted(generator["files"]) == sorted(p.name for p in files)


def test_period_labels() -> None:
    from datetime import datetime

    now = datetime(2026, 11, 29, 12, 0)
    assert period_label("none", now) is None
    assert period_label("daily", now) == "2026-11-29"
    assert period_label("weekly", now) == "2026-W48"
    assert period_label("monthly", now) == "2026-11"


def _sync(requests: Path, kfp_api: FakeKfp, ledger: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app, ["gitops", "sync", str(requests), "--host", kfp_api.url, "--ledger", str(ledger), *UNPINNED, *extra]
    )
    return result.exit_code, result.output


def test_sync_submits_once_per_request_version(requests_dir: Path, kfp_api: FakeKfp, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    code, output = _sync(requests_dir, kfp_api, ledger, "--revision", "abc123")
    assert code == 0, output
    assert "cifar.yaml: created run" in output and len(kfp_api.runs) == 1
    code, output = _sync(requests_dir, kfp_api, ledger)  # Argo CD re-sync of the same commit
    assert code == 0 and "already submitted" in output and len(kfp_api.runs) == 1
    (requests_dir / "cifar.yaml").write_text("genotype: DARTS_V2\nconfig: tiny\noverrides: [retrain.epochs=4]\n")
    code, output = _sync(requests_dir, kfp_api, ledger)  # the config changed in git
    assert code == 0 and "created run" in output and len(kfp_api.runs) == 2
    run = kfp_api.runs[-1]
    assert run["display_name"].startswith("retrain-cifar-")
    submitted = run["runtime_config"]["parameters"]
    assert yaml.safe_load(submitted["config"])["retrain"]["epochs"] == 4
    keys = runner.invoke(app, ["gitops", "keys", str(requests_dir), "--ledger", str(ledger)])
    assert f"submitted {run['run_id']}" in keys.output


def test_a_request_with_a_namespace_runs_there(requests_dir: Path, kfp_api: FakeKfp, tmp_path: Path) -> None:
    (requests_dir / "team.yaml").write_text("genotype: DARTS_V2\nconfig: tiny\nnamespace: team-nas\n")
    code, output = _sync(requests_dir, kfp_api, tmp_path / "ledger", "--namespace", "kubeflow-user")
    assert code == 0, output
    experiments = {e["experiment_id"]: e["namespace"] for e in kfp_api.experiments}
    by_request = {run["display_name"].split("-")[1]: experiments[run["experiment_id"]] for run in kfp_api.runs}
    assert by_request == {"cifar": "kubeflow-user", "team": "team-nas"}


def test_a_scheduled_sync_submits_once_per_period(requests_dir: Path, kfp_api: FakeKfp, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    assert _sync(requests_dir, kfp_api, ledger)[0] == 0
    assert _sync(requests_dir, kfp_api, ledger, "--period", "weekly")[0] == 0
    assert _sync(requests_dir, kfp_api, ledger, "--period", "weekly")[0] == 0
    assert len(kfp_api.runs) == 2  # the unscheduled run and this week's
    code, output = _sync(requests_dir, kfp_api, ledger, "--period", "hourly")
    assert code == 2 and "unknown --period" in output


def test_one_bad_request_blocks_the_whole_sync(requests_dir: Path, kfp_api: FakeKfp, tmp_path: Path) -> None:
    (requests_dir / "zz-broken.yaml").write_text("genotype: DARTS_V2\nconfig: tiny\nlearning_rate: 1\n")
    code, output = _sync(requests_dir, kfp_api, tmp_path / "ledger")
    assert code == 2 and "zz-broken.yaml" in output and "Traceback" not in output
    assert kfp_api.runs == []  # nothing half-done


def test_an_unreachable_kfp_server_fails_the_job_and_a_retry_submits(
    requests_dir: Path, kfp_api: FakeKfp, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    result = runner.invoke(
        app, ["gitops", "sync", str(requests_dir), "--host", "http://127.0.0.1:9", "--ledger", str(ledger), *UNPINNED]
    )
    assert result.exit_code == 2 and "could not be submitted" in result.output
    assert "Traceback" not in result.output
    code, output = _sync(requests_dir, kfp_api, ledger)  # the Job's retry
    assert code == 0 and "created run" in output and len(kfp_api.runs) == 1


def test_two_trigger_processes_racing_on_the_same_commit_create_one_run(
    requests_dir: Path, s3_env: str, tmp_path: Path
) -> None:
    fake = start_fake_kfp(create_delay_seconds=1.0)
    ledger = f"s3://cdarts/gitops/{tmp_path.name}"
    command = [
        str(Path(sys.executable).parent / "cdarts"), "gitops", "sync", str(requests_dir),
        "--host", fake.url, "--ledger", ledger, "--wait-for-holder", "60", *UNPINNED,
    ]  # fmt: skip
    try:
        processes = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=240) for process in processes]
    finally:
        assert fake.server is not None
        fake.server.shutdown()
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert len(fake.runs) == 1
    run_id = fake.runs[0]["run_id"]
    assert all(run_id in stdout for stdout, _ in outputs)
    assert sorted("created run" in stdout for stdout, _ in outputs) == [False, True]


def test_submit_with_an_idempotency_key_creates_one_run(kfp_api: FakeKfp, tmp_path: Path) -> None:
    arguments = [
        "submit", "--host", kfp_api.url, "--pipeline", "retrain", "--config", "tiny", "--genotype", "DARTS_V2",
        *UNPINNED, "--idempotency-key", "abc:cifar.yaml", "--ledger", str(tmp_path / "ledger"),
    ]  # fmt: skip
    first = runner.invoke(app, arguments)
    second = runner.invoke(app, arguments)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "created" in first.output and "already submitted" in second.output
    assert len(kfp_api.runs) == 1 and kfp_api.runs[0]["run_id"] in second.output
    missing_ledger = runner.invoke(app, arguments[:-2], env={"CDARTS_IDEMPOTENCY_LEDGER": ""})
    assert missing_ledger.exit_code == 2 and "needs --ledger" in missing_ledger.output


def test_an_in_cluster_trigger_authenticates_with_its_projected_token(
    requests_dir: Path, kfp_api: FakeKfp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("projected-token-4c1d")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    code, output = _sync(requests_dir, kfp_api, tmp_path / "ledger")
    assert code == 0, output
    assert kfp_api.authorizations and set(kfp_api.authorizations) == {"Bearer projected-token-4c1d"}
    assert "projected-token-4c1d" not in output
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "missing"))
    code, output = _sync(requests_dir, kfp_api, tmp_path / "ledger2")
    assert code == 2 and "not a readable token file" in output


@pytest.mark.slow
def test_sync_opens_one_parent_run_per_created_run(
    requests_dir: Path, kfp_api: FakeKfp, tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent MLflow run exists only for runs really created: a re-sync adds none."""
    from mlflow.tracking import MlflowClient

    experiment = f"gitops-{time.time_ns()}"
    (requests_dir / "cifar.yaml").write_text(
        f"genotype: DARTS_V2\nconfig: tiny\noverrides: [tracking.enabled=true, tracking.experiment={experiment}]\n"
    )
    monkeypatch.setenv("CDARTS_MLFLOW_TRACKING_URI", mlflow_server)  # as the trigger's ConfigMap provides it
    ledger = tmp_path / "ledger"
    assert _sync(requests_dir, kfp_api, ledger, "--revision", "abc123")[0] == 0
    assert _sync(requests_dir, kfp_api, ledger)[0] == 0  # re-sync: already submitted
    (run,) = kfp_api.runs
    client = MlflowClient(tracking_uri=mlflow_server)
    (parent,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run["runtime_config"]["parameters"]["mlflow_parent_run_id"] == parent.info.run_id
    assert parent.data.tags["kfp.run_id"] == run["run_id"] and parent.data.tags["cdarts.gitops.revision"] == "abc123"
    assert parent.data.tags["cdarts.gitops.request"] == "cifar.yaml"
