#!/usr/bin/env python3
"""Set up a virtual environment and run one of the project's jobs.

Needs only Python 3.11+ and the network to PyPI, so it works where `make` is missing:

    python3 dev.py demo     # the gateway serving the sample county, with a real Redis
    python3 dev.py test     # lint, type check and the test suite (what CI runs)
    python3 dev.py bench    # the quick benchmarks
    python3 dev.py serve    # the gateway alone on 127.0.0.1:8080

The environment lives in `.venv/`; it is reinstalled when `pyproject.toml` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("WARNGATE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".warngate-installed"


def _ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"dev.py: creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing warngate and its dependencies", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev,bench]"], check=True)
    STAMP.write_text(wanted)


def _run(*argv: str) -> int:
    print("$ " + " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    job = argv[0] if argv else "help"
    rest = argv[1:]
    if job not in {"demo", "test", "bench", "serve", "lint"}:
        print(__doc__)
        return 0 if job == "help" else 2
    _ensure_venv()
    py = str(BIN / "python")
    if job == "demo":
        return _run(str(BIN / "warngate"), "demo", "--config", str(ROOT / "config"), *rest)
    if job == "serve":
        return _run(str(BIN / "warngate"), "serve", "--config", str(ROOT / "config"), *rest)
    if job == "bench":
        return _run(py, "-m", "benchmarks", "--quick", *rest)
    for step in (
        [py, "-m", "ruff", "check", "."],
        [py, "-m", "ruff", "format", "--check", "."],
        [py, "-m", "mypy"],
    ):
        if code := _run(*step):
            return code
    if job == "lint":
        return 0
    return _run(py, "-m", "pytest", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
