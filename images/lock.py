"""Write the exports of the one lock, ``uv.lock``: every package pinned to one version with the
sha256 of every file it may be installed from.

- ``images/requirements.lock``: the runtime closure of ``cdarts-pipelines[server]``, which both
  images install with ``--require-hashes`` (no resolution in the image build);
- ``requirements-dev.lock``: that plus the ``dev`` extra, which ``make setup`` (the development
  venv and CI) installs with ``pip --require-hashes``;
- ``images/build-tools.lock``: uv alone, the one installer of both images, installed by pip
  with ``--require-hashes`` before anything else.

``uv lock`` resolves ``uv.lock`` from pyproject.toml (network); the exports are derived from it
offline (``uv export --frozen``)::

    .venv/bin/python images/lock.py            # uv lock, then write both exports (make lock)
    .venv/bin/python images/lock.py --check    # exit 1 if an export differs from uv.lock (offline)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORTS = {
    ROOT / "images" / "requirements.lock": ["--extra", "server"],
    ROOT / "requirements-dev.lock": ["--extra", "server", "--extra", "dev"],
}
BUILD_TOOLS = ROOT / "images" / "build-tools.lock"
HEADER = "# Generated from uv.lock by images/lock.py. Do not edit by hand; run `make lock`.\n"


def uv() -> str:
    """The uv next to this Python (the dev extra pins it), else the one on PATH."""
    candidate = Path(sys.executable).parent / "uv"
    return str(candidate) if candidate.exists() else "uv"


def export(extras: list[str]) -> str:
    """``uv export --frozen`` of the given extras: reads uv.lock only, never the network."""
    command = [uv(), "export", "--frozen", "--no-emit-project", "--no-header", "--format", "requirements-txt", *extras]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"lock: uv export failed: {result.stderr.strip()}")
    return HEADER + result.stdout


def only(package: str, exported: str) -> str:
    """The entry of ``package`` (its pin and hashes) from an export."""
    blocks = exported.removeprefix(HEADER).split("\n")
    entry: list[str] = []
    for line in blocks:
        if line.startswith(f"{package}=="):
            entry = [line]
        elif entry and line.startswith("    --hash="):
            entry.append(line)
        elif entry:
            break
    if not entry:
        raise SystemExit(f"lock: {package} is not in the lock")
    return HEADER + "\n".join(entry) + "\n"


def outputs() -> dict[Path, str]:
    """Every export's path and the text uv.lock gives it."""
    texts = {path: export(extras) for path, extras in EXPORTS.items()}
    texts[BUILD_TOOLS] = only("uv", texts[ROOT / "requirements-dev.lock"])
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if an export differs from uv.lock")
    args = parser.parse_args()
    if not args.check:
        subprocess.run([uv(), "lock"], cwd=ROOT, check=True)
    stale = []
    for path, text in outputs().items():
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.relative_to(ROOT).as_posix())
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)} ({sum(line[:1].isalnum() for line in text.splitlines())} packages)")
    if stale:
        print(f"{', '.join(stale)} stale against uv.lock; run `make lock`", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
