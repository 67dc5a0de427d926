#!/usr/bin/env bash
# The generalization grid: python -m scripts.launch.sweep generalization [options] [-- training flags]; --help lists the options.
exec env PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python}" -m scripts.launch.sweep generalization "$@"
