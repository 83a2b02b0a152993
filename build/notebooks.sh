#!/usr/bin/env bash
# Runs every notebook in samples/notebooks headless with the dotnet-repl pinned in .config/dotnet-tools.json, against
# packages packed fresh into the local feed (the notebooks reference Microsoft.ML.Bone as a user would). Fails when any
# cell fails: dotnet-repl exits 2 then, and the executed copy is checked for error outputs too, because cells after a
# failing one still run. Executed copies (with their outputs) are written to artifacts/notebooks.
#   build/notebooks.sh [--update]     --update: copy the executed notebooks over the committed ones (needs python3)
set -uo pipefail
cd "$(dirname "$0")/.."
update=0
case "${1:-}" in
  --update) update=1 ;;
  "") ;;
  *) echo "usage: build/notebooks.sh [--update]" >&2; exit 2 ;;
esac

build/pack.sh > artifacts/pack.log 2>&1 || { echo "error: build/pack.sh failed:" >&2; tail -n 20 artifacts/pack.log >&2; exit 1; }
# A build output of a project on the package holds the patched libLibTorchSharp.so that the notebooks' setup cell loads.
dotnet build samples/TextClassification -c Release --nologo > artifacts/notebooks-sample-build.log 2>&1 \
  || { echo "error: building samples/TextClassification failed:" >&2; tail -n 20 artifacts/notebooks-sample-build.log >&2; exit 1; }
dotnet tool restore > /dev/null || { echo "error: dotnet tool restore failed" >&2; exit 1; }

out=artifacts/notebooks
rm -rf "$out"; mkdir -p "$out"
failed=0
for notebook in samples/notebooks/*.ipynb; do
  name=$(basename "$notebook" .ipynb)
  start=$(date +%s)
  # Run from the notebook's folder, as an editor does: relative paths and samples/NuGet.config apply.
  (cd samples/notebooks && dotnet tool run dotnet-repl --run "$name.ipynb" --exit-after-run --output-path "../../$out/$name.ipynb") > "$out/$name.log" 2>&1
  rc=$?
  errors=$(grep -c '"output_type": "error"' "$out/$name.ipynb" 2>/dev/null || true)
  if [ "$rc" -ne 0 ] || [ ! -s "$out/$name.ipynb" ] || [ "${errors:-0}" -ne 0 ]; then
    echo "error: notebook $name failed (dotnet-repl exit $rc, ${errors:-?} failing cells); executed copy: $out/$name.ipynb" >&2
    grep -A3 '"output_type": "error"' "$out/$name.ipynb" 2>/dev/null | head -n 20 >&2
    tail -n 20 "$out/$name.log" >&2
    failed=1
  else
    echo "notebook $name: ok in $(( $(date +%s) - start )) s"
  fi
done
[ "$failed" -eq 0 ] || exit 1

if [ "$update" -eq 1 ]; then
  for executed in "$out"/*.ipynb; do
    python3 build/notebook_outputs.py "$executed" "samples/notebooks/$(basename "$executed")" || exit 1
  done
  echo "updated the committed notebooks' outputs"
fi
