"""Pipelines and pipeline versions stored on a KFP server, so that runs reference the code they run.

A version is named after the git commit of this checkout (``git-<12 hex>``) or, for a work tree
with uncommitted changes or no git at all, after the compiled spec (``spec-<12 hex of sha256>``).
Uploading is find-or-create: a version of that name is reused, never duplicated. Its description
records the spec's digest, so that a commit's version is not reused for a spec compiled with other
options (other images): that is refused instead of silently running the older spec.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kfp_server_api import ApiException, V2beta1Pipeline

from cdarts.errors import ConfigError
from pipelines.compile import ResourceNames, compile_pipeline
from pipelines.options import PipelineOptions
from pipelines.submit import PipelineVersionRef, SubmitError, client_errors, connect

# The checkout the pipelines are compiled from (an installed copy has no .git: content names).
SOURCE_ROOT = Path(__file__).resolve().parents[1]
DIGEST_MARK = "compiled spec sha256:"
HTTP_CONFLICT = 409


def spec_digest(package: Path) -> str:
    return hashlib.sha256(package.read_bytes()).hexdigest()


def content_version_name(package: Path) -> str:
    return f"spec-{spec_digest(package)[:12]}"


def revision_version_name(revision: str) -> str:
    """The version of a synced git revision, which must be a commit id (a branch moves)."""
    if not re.fullmatch(r"[0-9a-fA-F]{4,64}", revision.strip()):
        raise ConfigError(f"revision {revision!r} is not a git commit id (hex)")
    return f"git-{revision.strip().lower()[:12]}"


def git_version_name(root: Path | None = None) -> str | None:
    """``git-<commit>`` when ``root`` is the top of a git checkout without uncommitted changes to
    tracked files; None otherwise (untracked files are ignored, as ``git describe --dirty`` does)."""
    root = (root or SOURCE_ROOT).resolve()
    try:
        top, commit = _git(root, "rev-parse", "--show-toplevel", "HEAD").split()
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None  # no git, not a checkout, or no commit yet
    if Path(top).resolve() != root or dirty.strip():
        return None
    return revision_version_name(commit)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def default_version_name(package: Path, root: Path | None = None) -> str:
    return git_version_name(root) or content_version_name(package)


def check_package(package: Path, pipeline_name: str) -> None:
    """Refuse a file that is not the compiled IR YAML of ``pipeline_name``."""
    try:
        first = next(yaml.safe_load_all(package.read_text(encoding="utf-8")), None)
    except OSError as error:
        raise ConfigError(f"{package}: cannot read ({error.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError):
        raise ConfigError(f"{package}: not valid UTF-8 YAML") from None
    name = first.get("pipelineInfo", {}).get("name") if isinstance(first, dict) else None
    if name is None:
        raise ConfigError(f"{package}: not a compiled KFP pipeline (IR YAML, as `cdarts compile` writes)")
    if name != pipeline_name:
        raise ConfigError(f"{package} is the pipeline {name}, not {pipeline_name} (see --pipeline)")


@dataclass(frozen=True)
class UploadedVersion:
    ref: PipelineVersionRef
    created: bool  # False: a version of that name existed and is reused


def _by_name(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


class PipelineStore:
    """The pipelines of one KFP server and namespace (None: the shared ones, single-user KFP)."""

    def __init__(self, host: str, namespace: str | None = None, client: Any = None) -> None:
        self.host = host.rstrip("/")
        self.namespace = namespace
        self.client = client if client is not None else connect(host, namespace)

    def find_pipeline(self, name: str) -> str | None:
        # get_pipeline_id, plus the namespace: without it multi-user KFP lists the shared ones only.
        with client_errors(self.host, f"looking up pipeline {name} on"):
            found = self.client.list_pipelines(filter=_by_name(name), namespace=self.namespace, page_size=2)
        pipelines = found.pipelines or []
        if len(pipelines) > 1:
            raise SubmitError(f"{len(pipelines)} pipelines are named {name} on {self.host}; delete all but one")
        return str(pipelines[0].pipeline_id) if pipelines else None

    def create_pipeline(self, name: str) -> str:
        """Find or create the pipeline ``name``; its id. Created empty: ``upload_pipeline`` would
        add a first version named after the pipeline itself, beside the ones named here."""
        existing = self.find_pipeline(name)
        if existing is not None:
            return existing
        with client_errors(self.host, f"creating pipeline {name} on"):
            try:
                created = self.client.pipelines.pipeline_service_create_pipeline(
                    pipeline=V2beta1Pipeline(name=name, display_name=name, namespace=self.namespace)
                )
                return str(created.pipeline_id)
            except ApiException as error:
                if error.status != HTTP_CONFLICT:
                    raise
        return self._pipeline_id(name)  # created by a racing uploader since we looked

    def _pipeline_id(self, name: str) -> str:
        found = self.find_pipeline(name)
        if found is None:
            raise SubmitError(f"there is no pipeline {name} on {self.host}; run `cdarts pipeline upload`")
        return found

    def _find_version(self, pipeline_id: str, name: str) -> Any:
        with client_errors(self.host, f"looking up pipeline version {name} on"):
            found = self.client.list_pipeline_versions(pipeline_id, filter=_by_name(name), page_size=1)
        versions = found.pipeline_versions or []
        return versions[0] if versions else None

    def version(self, pipeline_name: str, version_name: str) -> PipelineVersionRef:
        """The existing version ``version_name`` of ``pipeline_name``."""
        pipeline_id = self._pipeline_id(pipeline_name)
        found = self._find_version(pipeline_id, version_name)
        if found is None:
            raise SubmitError(f"pipeline {pipeline_name} on {self.host} has no version {version_name}")
        return self._ref(pipeline_id, found, version_name)

    def upload(self, pipeline_name: str, package: Path, version_name: str) -> UploadedVersion:
        """Find or create ``pipeline_name`` and its version ``version_name`` holding ``package``."""
        digest = spec_digest(package)
        pipeline_id = self.create_pipeline(pipeline_name)
        found = self._find_version(pipeline_id, version_name)
        if found is None:
            with client_errors(self.host, f"uploading pipeline version {version_name} to"):
                try:
                    created = self.client.upload_pipeline_version(
                        str(package), version_name, pipeline_id=pipeline_id, description=f"{DIGEST_MARK}{digest}"
                    )
                    return UploadedVersion(self._ref(pipeline_id, created, version_name), created=True)
                except ApiException as error:
                    if error.status != HTTP_CONFLICT:
                        raise
            found = self._find_version(pipeline_id, version_name)  # uploaded by a racing trigger
            if found is None:
                raise SubmitError(f"pipeline version {version_name} on {self.host} conflicts but cannot be found")
        stored = str(found.description or "").partition(DIGEST_MARK)[2].strip()
        if stored and stored != digest:
            raise SubmitError(
                f"pipeline version {version_name} of {pipeline_name} holds another spec (sha256 {stored[:12]}, "
                f"this one {digest[:12]}: other images or options?); upload this one under another name"
            )
        return UploadedVersion(self._ref(pipeline_id, found, version_name), created=False)

    @staticmethod
    def _ref(pipeline_id: str, version: Any, name: str) -> PipelineVersionRef:
        return PipelineVersionRef(pipeline_id, str(version.pipeline_version_id), name)


# metadata.name of a Kubernetes resource (a DNS subdomain), which a PipelineVersion resource needs.
_RESOURCE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def compile_version_resources(
    name: str, out_path: Path, options: PipelineOptions, version_name: str | None = None, namespace: str | None = None
) -> list[dict[str, Any]]:
    """Write the Pipeline and PipelineVersion resources of pipeline ``name``, the version named as
    an upload of the same code would be."""
    if version_name is None:
        version_name = git_version_name()
    if version_name is None:
        with tempfile.TemporaryDirectory() as tmp:
            ir = Path(tmp) / "pipeline.yaml"
            compile_pipeline(name, ir, options)
            version_name = content_version_name(ir)
    if not _RESOURCE_NAME.fullmatch(version_name):
        raise ConfigError(
            f"version name {version_name!r} is not a Kubernetes resource name (lowercase letters, digits, '-', '.')"
        )
    return compile_pipeline(name, out_path, options, ResourceNames(version_name, namespace))
