#!/usr/bin/env bash
# The kalpha grid: python -m scripts.launch.sweep kalpha [options] [-- training flags]; --help lists the options.
exec env PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python}" -m scripts.launch.sweep kalpha "$@"
