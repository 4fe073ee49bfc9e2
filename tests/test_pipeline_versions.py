"""Pipelines and pipeline versions on a KFP server: `cdarts pipeline upload`, runs of `submit` and
`gitops sync` created from a version (or inline), and `compile --kubernetes-manifest-format`,
through the real kfp.Client against the in-memory KFP API."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from cdarts.cli.main import app
from pipelines import pipeline_versions
from pipelines.compile import compile_pipeline
from pipelines.options import PipelineOptions
from pipelines.pipeline_versions import (
    PipelineStore,
    UploadedVersion,
    content_version_name,
    git_version_name,
    revision_version_name,
)
from tests.conftest import CONFIGS
from tests.fake_kfp_server import FakeKfp
from tests.test_manifests import _validate_custom_resource

runner = CliRunner()
GPU = "registry.example.com/cdarts-gpu@sha256:" + "a" * 64
CPU = "registry.example.com/cdarts-cpu@sha256:" + "b" * 64
IMAGES = ["--image", f"gpu={GPU}", "--image", f"cpu={CPU}"]


def _git(root: Path, *args: str) -> str:
    command = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The code is compiled from a clean git checkout with one commit."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "tracked.txt").write_text("v1\n")
    _git(root, "init", "-q")
    _git(root, "add", "tracked.txt")
    _git(root, "-c", "commit.gpgsign=false", "commit", "-qm", "first")
    monkeypatch.setattr(pipeline_versions, "SOURCE_ROOT", root)
    return root


@pytest.fixture
def no_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code is compiled from an installed copy (no git): versions are named by content."""
    plain = tmp_path / "installed"
    plain.mkdir()
    monkeypatch.setattr(pipeline_versions, "SOURCE_ROOT", plain)


def _upload(kfp_api: FakeKfp, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["pipeline", "upload", "--host", kfp_api.url, "--pipeline", "retrain", *extra])
    return result.exit_code, result.output


def _field(output: str, name: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith(f"{name}: ")]
    return line.removeprefix(f"{name}: ")


def _images(ir: dict[str, Any]) -> set[str]:
    return {executor["container"]["image"] for executor in ir["deploymentSpec"]["executors"].values()}


def test_versions_are_named_after_a_clean_commit_else_the_content(checkout: Path, tmp_path: Path) -> None:
    commit = _git(checkout, "rev-parse", "HEAD")
    assert git_version_name() == f"git-{commit[:12]}"
    (checkout / "untracked.txt").write_text("ignored, as by git describe --dirty\n")
    assert git_version_name() == f"git-{commit[:12]}"
    (checkout / "tracked.txt").write_text("v2\n")
    assert git_version_name() is None  # uncommitted changes: the commit does not name this code
    assert git_version_name(tmp_path) is None  # not the top of a checkout
    package = tmp_path / "p.yaml"
    package.write_text("spec\n")
    assert pipeline_versions.default_version_name(package) == content_version_name(package)
    assert content_version_name(package).startswith("spec-") and len(content_version_name(package)) == 17
    assert revision_version_name("ABCDEF0123456789abcd") == "git-abcdef012345"


def test_upload_creates_the_pipeline_and_a_version_named_after_the_commit(kfp_api: FakeKfp, checkout: Path) -> None:
    code, output = _upload(kfp_api, *IMAGES)
    assert code == 0, output
    (pipeline,) = kfp_api.pipelines
    (version,) = kfp_api.versions  # the pipeline holds no other version than the one named here
    commit = _git(checkout, "rev-parse", "HEAD")
    assert pipeline["display_name"] == "cdarts-retrain" and version["display_name"] == f"git-{commit[:12]}"
    assert _field(output, "pipeline id") == pipeline["pipeline_id"]
    assert _field(output, "version id") == version["pipeline_version_id"]
    assert _field(output, "version name") == f"git-{commit[:12]}"
    ir = next(yaml.safe_load_all(kfp_api.packages[version["pipeline_version_id"]]))
    assert ir["pipelineInfo"]["name"] == "cdarts-retrain" and _images(ir) == {GPU, CPU}

    code, again = _upload(kfp_api, *IMAGES)  # the same code again: reused, not duplicated
    assert code == 0 and "already uploaded, reused" in again, again
    assert len(kfp_api.versions) == 1 and _field(again, "version id") == version["pipeline_version_id"]

    # The same commit compiled with other images is another spec: refused, not reused silently.
    other = ["--image", f"gpu={GPU.replace('a' * 64, 'c' * 64)}", "--image", f"cpu={CPU}"]
    code, refused = _upload(kfp_api, *other)
    assert code == 2 and "holds another spec" in refused and len(refused.strip().splitlines()) == 1
    assert _upload(kfp_api, *other, "--version-name", "gpu-c")[0] == 0
    assert kfp_api.version_names() == [f"git-{commit[:12]}", "gpu-c"]


def test_a_different_spec_makes_a_new_version(kfp_api: FakeKfp, no_checkout: None, tmp_path: Path) -> None:
    assert _upload(kfp_api, *IMAGES)[0] == 0
    assert _upload(kfp_api, "--allow-unpinned-images")[0] == 0
    first, second = kfp_api.version_names()
    assert first.startswith("spec-") and second.startswith("spec-") and first != second
    assert len(kfp_api.pipelines) == 1

    # A package compiled beforehand with the same options has the same content, so the same name.
    package = tmp_path / "retrain.yaml"
    compiled = runner.invoke(app, ["compile", "--pipeline", "retrain", "--out", str(package), *IMAGES])
    assert compiled.exit_code == 0, compiled.output
    code, output = _upload(kfp_api, "--package", str(package))
    assert code == 0 and _field(output, "version name") == first and "reused" in output
    assert len(kfp_api.versions) == 2
    for extra, fragment in (
        (["--package", str(package), *IMAGES], "compile flags do not apply"),
        (["--package", str(package), "--pipeline", "search"], "not cdarts-search"),
        (["--package", str(CONFIGS / "tiny.yaml")], "not a compiled KFP pipeline"),
    ):
        result = runner.invoke(app, ["pipeline", "upload", "--host", kfp_api.url, *extra])
        assert result.exit_code == 2 and fragment in result.stderr, result.output


def _stale_once(lookup: Any) -> Any:
    """``lookup`` that misses on its first call, as when another uploader wins the race."""
    calls: list[tuple[Any, ...]] = []

    def stale(*args: Any) -> Any:
        calls.append(args)
        return None if len(calls) == 1 else lookup(*args)

    return stale


def test_an_upload_losing_a_race_reuses_what_the_winner_created(
    kfp_api: FakeKfp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "retrain.yaml"
    compile_pipeline("retrain", package)
    winner = PipelineStore(kfp_api.url).upload("cdarts-retrain", package, "v1")
    late = PipelineStore(kfp_api.url)
    monkeypatch.setattr(late, "find_pipeline", _stale_once(late.find_pipeline))
    monkeypatch.setattr(late, "_find_version", _stale_once(late._find_version))
    # Both creations are refused with 409 Conflict, as the real server refuses duplicate names.
    assert late.upload("cdarts-retrain", package, "v1") == UploadedVersion(winner.ref, created=False)
    assert len(kfp_api.pipelines) == 1 and len(kfp_api.versions) == 1


def _submit(kfp_api: FakeKfp, *extra: str) -> Any:
    arguments = ["submit", "--host", kfp_api.url, "--pipeline", "retrain", "--genotype", "DARTS_V2"]
    return runner.invoke(app, [*arguments, "--config", str(CONFIGS / "tiny.yaml"), *extra])


def test_submit_creates_the_run_from_the_version_of_the_code(kfp_api: FakeKfp, checkout: Path) -> None:
    result = _submit(kfp_api, *IMAGES)
    assert result.exit_code == 0, result.output
    (version,) = kfp_api.versions
    (run,) = kfp_api.runs
    assert run["pipeline_version_reference"] == {
        "pipeline_id": version["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert run["pipeline_spec"] is None  # the spec is not sent with the run
    assert f"pipeline version: cdarts-retrain {version['display_name']}" in result.stdout

    inline = _submit(kfp_api, *IMAGES, "--inline")
    assert inline.exit_code == 0, inline.output
    assert "pipeline version" not in inline.stdout and len(kfp_api.versions) == 1
    sent = kfp_api.runs[-1]
    assert sent["pipeline_version_reference"] is None
    assert _images(sent["pipeline_spec"]["pipeline_spec"]) == {GPU, CPU}

    # An existing version by name: nothing is compiled, so its images need no flag.
    existing = _submit(kfp_api, "--pipeline-version", version["display_name"])
    assert existing.exit_code == 0, existing.output
    assert kfp_api.runs[-1]["pipeline_version_reference"]["pipeline_version_id"] == version["pipeline_version_id"]
    missing = _submit(kfp_api, "--pipeline-version", "missing")
    assert missing.exit_code == 2 and len(kfp_api.runs) == 3
    (line,) = missing.stderr.strip().splitlines()
    assert "has no version missing" in line
    both = _submit(kfp_api, "--inline", "--pipeline-version", "missing")
    assert both.exit_code == 2 and "exclude each other" in both.stderr


def test_sync_creates_runs_from_the_version_of_the_synced_revision(kfp_api: FakeKfp, tmp_path: Path) -> None:
    requests = tmp_path / "requests"
    requests.mkdir()
    (requests / "cifar.yaml").write_text("genotype: DARTS_V2\nconfig: tiny\n")
    sync = ["gitops", "sync", str(requests), "--host", kfp_api.url, "--ledger", str(tmp_path / "ledger"), *IMAGES]
    revision = "0123456789abcdef0123456789abcdef01234567"
    first = runner.invoke(app, [*sync, "--revision", revision])
    assert first.exit_code == 0, first.output
    (version,) = kfp_api.versions
    (run,) = kfp_api.runs
    assert version["display_name"] == "git-0123456789ab"
    assert run["pipeline_version_reference"]["pipeline_version_id"] == version["pipeline_version_id"]
    again = runner.invoke(app, [*sync, "--revision", revision])  # Argo CD re-syncs the same commit
    assert again.exit_code == 0 and "already submitted" in again.output and "reused" in again.output
    assert len(kfp_api.versions) == 1 and len(kfp_api.runs) == 1 and len(kfp_api.pipelines) == 1
    branch = runner.invoke(app, [*sync, "--revision", "main"])  # a branch moves: it cannot name a version
    assert branch.exit_code == 2 and "not a git commit id" in branch.stderr


def _manifests(tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    out = tmp_path / "resources.yaml"
    result = runner.invoke(app, ["compile", "--out", str(out), "--kubernetes-manifest-format", *IMAGES, *extra])
    assert result.exit_code == 0, result.output
    return [doc for doc in yaml.safe_load_all(out.read_text()) if doc]


def test_the_manifest_format_writes_valid_kfp_resources_with_the_images(tmp_path: Path, no_checkout: None) -> None:
    pipeline, version = _manifests(tmp_path, "--version-name", "release-1", "--namespace", "kubeflow")
    for resource in (pipeline, version):
        _validate_custom_resource(resource)
    assert (pipeline["kind"], pipeline["metadata"]) == ("Pipeline", {"name": "cdarts-search", "namespace": "kubeflow"})
    assert version["metadata"] == {"name": "release-1", "namespace": "kubeflow"}
    assert version["spec"]["pipelineName"] == "cdarts-search"
    # The version holds exactly what `cdarts compile` writes as IR, images replaced.
    options = PipelineOptions(gpu_image=GPU, cpu_image=CPU)
    ir, platform = compile_pipeline("search", tmp_path / "ir.yaml", options)
    assert version["spec"]["pipelineSpec"] == ir and version["spec"]["platformSpec"] == platform
    assert _images(version["spec"]["pipelineSpec"]) == {GPU, CPU}

    # Named as an upload of the same code would be: here after the IR's content.
    (_, default) = _manifests(tmp_path)
    assert default["metadata"]["name"] == content_version_name(tmp_path / "ir.yaml")
    broken = dict(version, spec={**version["spec"], "pipelineSpecs": version["spec"]["pipelineSpec"]})
    with pytest.raises(jsonschema.ValidationError, match="pipelineSpecs"):
        _validate_custom_resource(broken)


def test_the_manifest_format_refuses_bad_names(tmp_path: Path) -> None:
    out = str(tmp_path / "r.yaml")
    for extra, fragment in (
        (["--kubernetes-manifest-format", "--version-name", "Release 1"], "not a Kubernetes resource name"),
        (["--version-name", "v1"], "apply to --kubernetes-manifest-format only"),
    ):
        result = runner.invoke(app, ["compile", "--out", out, *IMAGES, *extra])
        assert result.exit_code == 2 and fragment in result.stderr, result.output
