#!/usr/bin/env bash
# make demo-plan / demo-plan-fail: the worker with its embedded NATS server and APIOps
# simulator, a rotation plan (testdata/plans/rotation.json, or PLAN) submitted to it
# with apiopsctl plan --json, the steps' table printed, the worker stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
plan=${PLAN:-testdata/plans/rotation.json}
. scripts/demo-worker.sh
start_worker

echo "== submitting the plan $plan to the worker (embedded NATS at $nats, APIOps simulator)"
status=0
bin/apiopsctl plan --json --nats-url "$nats" "$plan" || status=$?
stop_worker log
echo "== apiopsctl plan exited $status (0: the plan succeeded, 2: it did not)"
if [ -n "${EXPECT_STATUS:-}" ]; then
	[ "$status" = "$EXPECT_STATUS" ] && exit 0
	echo "demo: expected exit $EXPECT_STATUS" >&2
	exit 1
fi
exit "$status"
