#!/usr/bin/env bash
# gap_jax entry point. Sets up .venv on first use, then runs a command:
#   ./launch.sh                 the main job: why_gap_works, every claim's experiment in one report (~12 min
#                               on 2 CPU cores): results/why_gap_works/report.md
#   ./launch.sh fashion         NiN + GAP on Fashion-MNIST (89% test accuracy in ~7 min on 2 CPU cores)
#   ./launch.sh train --config gap_jax/configs/<name>.py --workdir <dir> [--config.<field>=<value> ...]
#   ./launch.sh analyze --workdir <dir>     class maps, sparsity, receptive fields, localization of a run:
#                                           writes <dir>/analysis.json and PNG figures
#   ./launch.sh experiment <name> [--quick] [--seeds N]   a hypothesis experiment: results/<name>/report.md
#   ./launch.sh reproduce <table> [--seeds N]            rows of a paper table: results/reproduce/<table>.md
#   ./launch.sh test [--fast] [pytest args]   the suite (what CI runs); --fast leaves out the slow runs
#   ./launch.sh bench [--quick] [--parts ...]   training images/s, ours beside PyTorch (benchmarks/README.md)
#   ./launch.sh bench-seeds                 seeds trained together (jax.vmap) vs one after another
#   ./launch.sh bench-workers               one process over every core vs one process per core (--workers)
#   ./launch.sh bench-conv                  every NiN convolution alone: XLA, oneDNN, PyTorch
#   ./launch.sh setup [--cuda12|--cuda13|--tpu]   only create/update .venv (run once before a multi-host
#                                           job); the flag installs jax for that accelerator, and is remembered
#   ./launch.sh distributed <train args>    one process of a multi-host run: the same command on every
#                                           host (srun, or gcloud ... tpu-vm ssh --worker=all); see README
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY="$VENV/bin/python"
FASHION_MNIST=/usr/share/datasets/fashion-mnist

setup() {
  # The accelerator extra: the one asked for now, else the one installed last time, else none (CPU).
  local installed accelerator
  installed="$(cat "$VENV/.accelerator" 2>/dev/null || echo cpu)"
  accelerator="${1:-$installed}"
  # (Re)install when the venv is new, pyproject.toml changed since the last install, or the extra changed.
  if [ ! -x "$PY" ] || [ pyproject.toml -nt "$VENV/.installed" ] || [ "$accelerator" != "$installed" ]; then
    echo "setting up $VENV for $accelerator (first use: a few minutes)..."
    python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    # The cpu extra (oneDNN kernels) is kept with an accelerator too: it only serves the CPU backend.
    local extras="test,cpu"
    [ "$accelerator" = cpu ] || extras="$extras,$accelerator"
    "$PY" -m pip install --quiet -e ".[$extras]"
    echo "$accelerator" > "$VENV/.accelerator"
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
    exec "$PY" -m experiments why_gap_works "$@" ;;
  fashion)
    setup; install_data
    exec "$PY" -m gap_jax.main --config gap_jax/configs/nin_fashion_mnist.py \
      --workdir "${WORKDIR:-runs/nin_fashion_mnist}" "$@" ;;
  train)
    setup; install_data
    exec "$PY" -m gap_jax.main "$@" ;;
  analyze)
    setup; install_data
    exec "$PY" -m gap_jax.analysis "$@" ;;
  experiment)
    setup; install_data
    exec "$PY" -m experiments "$@" ;;
  reproduce)
    setup; install_data
    exec "$PY" -m experiments.reproduce "$@" ;;
  test)
    # The data too: the experiments' end-to-end tests train on small slices of the real Fashion-MNIST.
    setup; install_data
    # --fast: every module's tests without the slow ones (several trainings, process starts, native builds),
    # for the edit-test loop. Both on two pytest workers: most of a tiny test is single-threaded compiling, so
    # the full suite (CI) takes two thirds of its one-process time (docs/tests.md).
    if [ "${1:-}" = --fast ]; then shift; exec "$PY" -m pytest -q -n 2 -m "not slow" "$@"; fi
    exec "$PY" -m pytest -q -n 2 "$@" ;;
  bench)
    setup
    exec "$PY" benchmarks/train_step.py "$@" ;;
  bench-seeds)
    setup
    exec "$PY" benchmarks/seeds_vmap.py "$@" ;;
  bench-workers)
    setup
    exec "$PY" benchmarks/workers.py "$@" ;;
  bench-conv)
    setup
    exec "$PY" benchmarks/conv_layers.py "$@" ;;
  setup)
    case "${1:-}" in
      "") setup ;;
      --cuda12|--cuda13|--tpu) setup "${1#--}" ;;
      *) echo "unknown setup flag '$1': use --cuda12 (CUDA 12 driver), --cuda13 or --tpu, or none for CPU" >&2
         exit 2 ;;
    esac
    install_data ;;
  distributed)
    # No set-up here: many hosts installing into one shared .venv at once would race.
    [ -x "$PY" ] || { echo "run './launch.sh setup' once first" >&2; exit 2; }
    GAP_JAX_DISTRIBUTED=1 exec "$PY" -m gap_jax.main "$@" ;;
  *)
    echo "unknown command '$cmd': see the usage at the top of launch.sh and README.md" >&2
    exit 2 ;;
esac
