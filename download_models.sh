#!/usr/bin/env bash
# Download MetaMusic's model weights into checkpoints/ (see checkpoints/README.md).
# Usage: bash download_models.sh [MODEL ...] [--all] [--list] [--dest DIR] [--mirror URL] [--verify]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if command -v python >/dev/null 2>&1; then
    exec python -m metamusic.download "$@"
fi
exec python3 -m metamusic.download "$@"
