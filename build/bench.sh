#!/usr/bin/env bash
# Runs `bone bench` with its PyTorch eager peer: installs Debian's PyTorch and an optimised BLAS first (the peer is
# never needed by the tests). Debian's torch 1.13 uses whatever libblas.so.3 is installed; the default reference BLAS
# runs at ~5 GFLOP/s, so the OpenMP build of OpenBLAS is installed (the pthread build oversubscribes the cores next to
# torch's own OpenMP threads).   Usage: build/bench.sh [--quick] [--out DIR] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c "import torch" 2>/dev/null || ! dpkg -s libopenblas0-openmp >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-torch python3-numpy libopenblas0-openmp >/dev/null
fi
dotnet build src/Microsoft.ML.Bone.Cli -c Release -nologo -v q
dotnet src/Microsoft.ML.Bone.Cli/bin/Release/net10.0/bone.dll bench --peer require "$@"
