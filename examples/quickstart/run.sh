#!/usr/bin/env bash
# Starts the quickstart: the demo upstream and Gatehouse with the embedded
# SQLite store. Run from the repository root (make run does).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p data
chmod 700 data
if [ ! -s data/admin.token ]; then
  # 32 random bytes, base64url: the bootstrap admin token.
  umask 077
  head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > data/admin.token
fi
if [ ! -s data/pepper ]; then
  # The pepper API keys are hashed with: 48 random bytes.
  umask 077
  head -c 48 /dev/urandom | base64 | tr -d '\n' > data/pepper
fi
if [ ! -s data/data.key ]; then
  # The data key for encryption at rest: 32 random bytes, base64
  # (the same as: gatehouse keys gen-data-key --out data/data.key).
  umask 077
  head -c 32 /dev/urandom | base64 > data/data.key
fi
if [ ! -s data/audit-signer.key ]; then
  # The key that signs audit checkpoints; verify with data/audit-signer.pub:
  #   bin/gatehouse logs verify examples/quickstart/data/audit --key examples/quickstart/data/audit-signer.pub
  ../../bin/gatehouse logs keygen --name audit-signer --out data >/dev/null
fi
../../bin/demo-upstream -addr 127.0.0.1:9000 &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT INT TERM
echo "admin token: examples/quickstart/data/admin.token"
../../bin/gatehouse serve --config gatehouse.yaml
