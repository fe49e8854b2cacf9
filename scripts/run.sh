#!/usr/bin/env bash
# make run: the worker with its embedded NATS server and the APIOps simulator, in the
# foreground, logging for people. NATS listens on 127.0.0.1:4222 and the metrics on
# 127.0.0.1:9090, or on free ports when those are taken (NATS_PORT and HTTP_ADDR
# choose); the log says where. Extra flags for the worker go in ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."

taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

nats_port=${NATS_PORT:-4222}
if [ -z "${NATS_PORT:-}" ] && taken "$nats_port"; then
	echo "run: 127.0.0.1:$nats_port is taken: NATS gets a free port (see \"embedded NATS server started\" below; NATS_PORT chooses)" >&2
	nats_port=0
fi
http_addr=${HTTP_ADDR:-127.0.0.1:9090}
if [ -z "${HTTP_ADDR:-}" ] && taken "${http_addr##*:}"; then
	echo "run: $http_addr is taken: the metrics get a free port (see \"serving metrics and health\" below; HTTP_ADDR chooses)" >&2
	http_addr=127.0.0.1:0
fi
exec bin/apiops-worker --demo --log-format console --listen "127.0.0.1:$nats_port" --http-addr "$http_addr" "$@"
