# Sourced by the demo scripts. start_worker starts the worker with its embedded NATS
# server and the APIOps simulator in the background ($pid, log in $log, NATS at $nats),
# with any extra flags given; stop_worker stops it. Whatever still runs is stopped when
# the script exits. The embedded NATS takes DEMO_PORT, or a free port.
data=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$data"' EXIT

start_worker() {
	rm -rf "$data/jetstream"
	log="$data/worker.log"
	bin/apiops-worker --demo --http-addr 127.0.0.1:0 --listen "127.0.0.1:${DEMO_PORT:-0}" --data-dir "$data/jetstream" --log-format console "$@" >"$log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do
		if grep -q "worker started" "$log"; then
			nats=$(grep -o 'nats://127\.0\.0\.1:[0-9]*' "$log" | head -1)
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "demo: the worker exited" >&2; exit 1; }
		sleep 0.1
	done
	cat "$log"
	echo "demo: the worker did not start" >&2
	exit 1
}

# stop_worker stops the worker; with "log" it prints the worker's log.
stop_worker() {
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
	if [ "${1:-}" = log ]; then
		echo "== the worker's log"
		cat "$log"
	fi
}
