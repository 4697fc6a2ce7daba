#!/usr/bin/env bash
# Fail with a clear message unless a Docker engine answers: kind runs its nodes as Docker
# containers. The sandbox (`make sandbox-up`, `make test`) needs no Docker.
set -euo pipefail
if ! command -v docker >/dev/null 2>&1; then
  echo "error: the kind targets need Docker, and no docker command is on PATH." >&2
  echo "       Without Docker use the sandbox instead: make sandbox-up, make demo, make test." >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "error: the kind targets need Docker, and the Docker engine does not answer (docker info failed)." >&2
  echo "       Start it, or use the sandbox instead: make sandbox-up, make demo, make test." >&2
  exit 1
fi
