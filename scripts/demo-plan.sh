#!/usr/bin/env bash
# make demo-plan / demo-plan-fail: the worker with its embedded NATS server and APIOps
# simulator, a rotation plan (testdata/plans/rotation.json, or PLAN) submitted to it
# with apiopsctl plan --json, the steps' table printed, the worker stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
plan=${PLAN:-testdata/plans/rotation.json}
port=${DEMO_PORT:-14222}
data=$(mktemp -d)
log="$data/worker.log"
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

bin/apiops-worker --demo --http-addr 127.0.0.1:0 --listen "127.0.0.1:$port" --data-dir "$data/jetstream" --log-format console >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	grep -q "worker started" "$log" && break
	kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "demo: the worker exited" >&2; exit 1; }
	sleep 0.1
done
grep -q "worker started" "$log" || { cat "$log"; echo "demo: the worker did not start" >&2; exit 1; }

echo "== submitting the plan $plan to the worker (embedded NATS on 127.0.0.1:$port, APIOps simulator)"
status=0
bin/apiopsctl plan --json --nats-url "nats://127.0.0.1:$port" "$plan" || status=$?
kill -TERM "$pid"
wait "$pid" || true
echo "== the worker's log"
cat "$log"
echo "== apiopsctl plan exited $status (0: the plan succeeded, 2: it did not)"
if [ -n "${EXPECT_STATUS:-}" ]; then
	[ "$status" = "$EXPECT_STATUS" ] && exit 0
	echo "demo: expected exit $EXPECT_STATUS" >&2
	exit 1
fi
exit "$status"
