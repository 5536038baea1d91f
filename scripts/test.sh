#!/usr/bin/env bash
# The test command (README, CI): set up the machine, lint, type-check, then run the whole test
# suite including the PostgreSQL leg. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh tests/test_pgserver.py -x
# Stops at the first failing step and names it. "No tests collected" counts as a failure.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() {
    local name=$1
    shift
    printf '\n==> %s\n' "$name"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    if ((rc != 0)); then
        printf '\n*** FAILED: %s (exit %d)\n' "$name" "$rc" >&2
        exit "$rc"
    fi
    printf '==> %s ok (%ds)\n' "$name" $((SECONDS - start))
}

# setup.sh may have installed uv into /usr/local/bin or ~/.local/bin.
export PATH="/usr/local/bin:$HOME/.local/bin:$PATH"

step "setup" bash scripts/setup.sh
step "ruff check" uv run --frozen ruff check .
step "ruff format" uv run --frozen ruff format --check .
step "mypy" uv run --frozen mypy

printf '\n==> pytest\n'
rc=0
uv run --frozen pytest "$@" || rc=$?
case $rc in
    0) printf '\n==> all steps passed\n' ;;
    5) printf '\n*** FAILED: pytest collected no tests (exit 5)\n' >&2 ;;
    *) printf '\n*** FAILED: pytest (exit %d)\n' "$rc" >&2 ;;
esac
exit "$rc"
