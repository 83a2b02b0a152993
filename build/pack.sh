#!/usr/bin/env bash
# Packs Microsoft.ML.Bone.Core and Microsoft.ML.Bone (and, with --tool, the bone tool for this machine's platform) into
# artifacts/packages, as a local NuGet feed the samples and any project can use. Each run gets a new prerelease
# version (0.1.0-local.<UTC time>), so NuGet's package cache never serves an older build under the same number.
#   build/pack.sh [--tool] [--version VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
version="0.1.0-local.$(date -u +%Y%m%d%H%M%S)"
tool=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tool) tool=1 ;;
    --version) version="$2"; shift ;;
    *) echo "usage: build/pack.sh [--tool] [--version VERSION]" >&2; exit 2 ;;
  esac
  shift
done
out=artifacts/packages
mkdir -p "$out"
for project in src/Microsoft.ML.Bone.Core/Microsoft.ML.Bone.Core.csproj src/Microsoft.ML.Bone/Microsoft.ML.Bone.csproj; do
  dotnet pack "$project" -c Release -o "$out" -p:Version="$version" --nologo
done
if [ "$tool" = 1 ]; then
  rid=$(dotnet --info | sed -n 's/^ *RID: *//p' | head -n 1)
  dotnet pack src/Microsoft.ML.Bone.Cli/Microsoft.ML.Bone.Cli.csproj -c Release -o "$out" -p:Version="$version" -p:RuntimeIdentifiers="$rid" -p:ToolPackageRuntimeIdentifiers="$rid" --nologo
fi
echo "packed $version into $out"
