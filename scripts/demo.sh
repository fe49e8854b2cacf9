#!/usr/bin/env bash
# make demo: the worker with its embedded NATS server and APIOps simulator, the
# rotation scenario submitted to it, the results table printed, the worker stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/demo-worker.sh

echo "== submitting testdata/rotation.jsonl, in order, to the worker (embedded NATS on 127.0.0.1:$port, APIOps simulator)"
status=0
bin/apiopsctl submit --sequential --nats-url "nats://127.0.0.1:$port" testdata/rotation.jsonl || status=$?
stop_worker
exit "$status"
