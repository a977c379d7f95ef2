#!/usr/bin/env bash
# Sets up (scripts/setup.sh), runs ruff and mypy, then every test, the root/netns/QEMU ones included.
# Inner loop without VMs: .venv/bin/python -m pytest -m "not vm"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Lint, format and types first (config in pyproject.toml): any finding fails the run, as a test would.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# pytest exits 5 when it collected no test: set -e makes that a failure, as it must be.
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
