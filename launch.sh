#!/usr/bin/env bash
# gap_jax entry point. Sets up .venv on first use, then runs a command:
#   ./launch.sh                 the main job (NiN + GAP on Fashion-MNIST, CPU)
#   ./launch.sh train --config gap_jax/configs/<name>.py --workdir <dir> [--config.<field>=<value> ...]
#   ./launch.sh test [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY="$VENV/bin/python"
FASHION_MNIST=/usr/share/datasets/fashion-mnist

setup() {
  # (Re)install when the venv is new or pyproject.toml changed since the last install.
  if [ ! -x "$PY" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    echo "setting up $VENV (first use: a few minutes)..."
    python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e ".[test]"
    touch "$VENV/.installed"
  fi
}

install_data() {
  [ -n "${GAP_JAX_DATA_DIR:-}" ] && return 0
  [ -f "$FASHION_MNIST/train-images-idx3-ubyte.gz" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)..."
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null \
      || echo "warning: apt-get could not install dataset-fashion-mnist" >&2
  else
    echo "note: Fashion-MNIST not found; run 'sudo apt-get install dataset-fashion-mnist'" \
         "or set GAP_JAX_DATA_DIR to a folder with its four IDX .gz files" >&2
  fi
}

cmd="${1:-main}"
[ $# -gt 0 ] && shift
case "$cmd" in
  main)
    setup; install_data
    exec "$PY" -m gap_jax.main --config gap_jax/configs/nin_fashion_mnist.py \
      --workdir "${WORKDIR:-runs/nin_fashion_mnist}" "$@" ;;
  train)
    setup; install_data
    exec "$PY" -m gap_jax.main "$@" ;;
  test)
    setup
    exec "$PY" -m pytest -q "$@" ;;
  *)
    echo "unknown command '$cmd': use one of main, train, test (see README.md)" >&2
    exit 2 ;;
esac
