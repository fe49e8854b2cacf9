# Sourced by the demo scripts: starts the worker with its embedded NATS server and the
# APIOps simulator in the background ($pid, log in $log, NATS on 127.0.0.1:$port) and
# stops it when the script exits.
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

# stop_worker stops the worker and prints its log.
stop_worker() {
	kill -TERM "$pid"
	wait "$pid" || true
	echo "== the worker's log"
	cat "$log"
}
