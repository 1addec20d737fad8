#!/usr/bin/env bash
# The documentation site (mkdocs.yml), built with warnings as errors: a docstring or a
# page that does not render, a broken link or anchor, a reference page naming a
# module that moved, each fails the build.  Needs no network.
#
#   docs/build.sh            build into a temporary folder, removed afterwards (CI)
#   docs/build.sh DIR        build into DIR, to look at it (or: mkdocs serve)
#
# Run inside the project's venv (pip install -e ".[test]" installs mkdocs).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then
    exec mkdocs build --strict --site-dir "$1"
fi
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
mkdocs build --strict --site-dir "$site"
