#!/usr/bin/env bash
# make demo: the worker with its embedded NATS server and APIOps simulator, the
# rotation scenario submitted to it and its results table printed, once for each way
# APIOps's documentation shows its answers (--demo-dialect; DIALECTS to choose). The
# tables are the same: the worker reads every documented shape alike.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/demo-worker.sh

status=0
for dialect in ${DIALECTS:-seed docs openapi mixed}; do
	start_worker --demo-dialect "$dialect"
	echo "== testdata/rotation.jsonl, in order, to the worker (embedded NATS at $nats), APIOps answering in the $dialect dialect"
	bin/apiopsctl submit --sequential --nats-url "$nats" testdata/rotation.jsonl || status=$?
	if [ "$status" != 0 ]; then
		stop_worker log
		exit "$status"
	fi
	stop_worker
done
