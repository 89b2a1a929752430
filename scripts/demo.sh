#!/bin/sh
# The main job, end to end, on a private redis-server: seed demo data, start
# digestd with the maildir transport, schedule the daily digest, watch the
# queues empty, print a summary, then drain digestd and stop redis.
#
# Everything lives under ./var (redis/, outbox/, demo.conf, digestd.log);
# whatever this script starts it stops, by pid, on success, error or Ctrl-C.
#
# Usage: scripts/demo.sh        (make demo builds first)
# Knobs: DEMO_GROUPS, DEMO_MEMBERS, DEMO_POSTS, DEMO_SEED, DEMO_WORKERS,
# DEMO_VAR (instead of ./var), BUILD, DIGESTD, DIGESTCTL (binaries)
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build}
case "$BUILD" in
/*) ;;
*) BUILD=$ROOT/$BUILD ;;
esac
DIGESTD=${DIGESTD:-$BUILD/digestd}
DIGESTCTL=${DIGESTCTL:-$BUILD/digestctl}
VAR=${DEMO_VAR:-$ROOT/var}
GROUPS_N=${DEMO_GROUPS:-60}
MEMBERS=${DEMO_MEMBERS:-9000}
POSTS=${DEMO_POSTS:-1500}
SEED=${DEMO_SEED:-42}
WORKERS=${DEMO_WORKERS:-2}

redis_pid=
digestd_pid=

say() { printf '%s\n' "demo: $*"; }
die() { printf '%s\n' "demo: $*" >&2; exit 1; }

# Stop what we started, newest first; digestd gets a drain (SIGTERM).
cleanup() {
	rc=$?
	trap - EXIT INT TERM
	if [ -n "$digestd_pid" ] && kill -0 "$digestd_pid" 2>/dev/null; then
		kill -TERM "$digestd_pid" 2>/dev/null || true
		i=0
		while kill -0 "$digestd_pid" 2>/dev/null && [ $i -lt 300 ]; do
			sleep 0.1; i=$((i + 1))
		done
		kill -KILL "$digestd_pid" 2>/dev/null || true
		wait "$digestd_pid" 2>/dev/null || true
	fi
	if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
		kill -TERM "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ]; then
		echo "demo: failed (exit $rc); logs in $VAR/digestd.log and $VAR/redis/redis.log" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -x "$DIGESTD" ] && [ -x "$DIGESTCTL" ] || die "build first: make"
command -v redis-server >/dev/null || die "redis-server is missing: make deps"

# A free loopback port for digestd's HTTP endpoint.
free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# python3 comes with make deps; curl may not be there on a fresh machine.
http_get() {
	/usr/bin/python3 -c 'import sys, urllib.request
try:
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())
except Exception:
    sys.exit(1)' "http://127.0.0.1:$PORT$1" 2>/dev/null
}

mkdir -p "$VAR"
rm -rf "$VAR/redis" "$VAR/outbox"
mkdir -p "$VAR/redis"

say "starting redis-server on $VAR/redis/redis.sock"
redis-server --port 0 --unixsocket "$VAR/redis/redis.sock" --unixsocketperm 700 \
	--dir "$VAR/redis" --save "" --appendonly no --daemonize no \
	--logfile "$VAR/redis/redis.log" &
redis_pid=$!
i=0
until redis-cli -s "$VAR/redis/redis.sock" ping >/dev/null 2>&1; do
	kill -0 "$redis_pid" 2>/dev/null || die "redis-server exited: see $VAR/redis/redis.log"
	[ $i -lt 100 ] || die "redis-server did not answer in 10s"
	sleep 0.1; i=$((i + 1))
done

PORT=$(free_port)
CONF=$VAR/demo.conf
cat > "$CONF" <<CONF
; Written by scripts/demo.sh: a private redis, two small pools, a maildir.
[supervisor]
listen = 127.0.0.1:$PORT
drain_timeout = 30s
log_level = info

[redis]
socket = redis/redis.sock

[pool.priority]
queue = priority
workers = $WORKERS

[pool.standard]
queue = standard
workers = $WORKERS

[digest]
from = Demo Groups <digest@demo.example>
unsubscribe_url = https://demo.example/unsubscribe
; A demo key only: a real one comes from a secret store.
unsubscribe_secret = demo-unsubscribe-secret-not-for-real-use
large_group_threshold = 1000

[schedule]
priority_threshold = 300

[transport]
type = maildir

[maildir]
path = outbox
CONF

say "seeding demo data"
# No pipelines around commands that may fail: sh has no pipefail.
out=$("$DIGESTCTL" -c "$CONF" seed --groups "$GROUPS_N" --members "$MEMBERS" \
	--posts "$POSTS" --seed "$SEED") || die "seeding failed"
printf '%s\n' "$out" | sed 's/^/  /'

say "starting digestd (HTTP on 127.0.0.1:$PORT, log in $VAR/digestd.log)"
"$DIGESTD" -c "$CONF" >"$VAR/digestd.log" 2>&1 &
digestd_pid=$!
i=0
until http_get /readyz >/dev/null; do
	kill -0 "$digestd_pid" 2>/dev/null || die "digestd exited: see $VAR/digestd.log"
	[ $i -lt 150 ] || die "digestd not ready after 15s: see $VAR/digestd.log"
	sleep 0.1; i=$((i + 1))
done

start=$(date +%s.%N)
say "scheduling the daily digest"
out=$("$DIGESTCTL" -c "$CONF" schedule --period daily) || die "scheduling failed"
printf '%s\n' "$out" | sed 's/^/  /'
say "watching the queues"
"$DIGESTCTL" -c "$CONF" watch --interval 0.5 --timeout 30m
end=$(date +%s.%N)

# The last job's counters reach /metrics within a heartbeat: read twice.
sleep 0.5
metrics=$(http_get /metrics) || die "cannot read /metrics"
sum_metric() {
	printf '%s\n' "$metrics" | awk -v name="$1" -v want="$2" '
		$0 !~ /^#/ && index($0, name "{") == 1 && index($0, want) { s += $NF }
		END { printf "%d", s }'
}
sent=$(sum_metric digest_emails_total 'result="sent"')
files=$(find "$VAR/outbox/new" -type f 2>/dev/null | wc -l)
one=$(find "$VAR/outbox/new" -type f 2>/dev/null | head -n 1)
elapsed=$(echo "$start $end" | awk '{ printf "%.2f", $2 - $1 }')
rate=$(echo "$files $start $end" | awk '{ d = $3 - $2; printf "%.0f", (d > 0 ? $1 / d : 0) }')

echo
echo "== digest demo summary"
echo "emails written:   $files (digestd counted $sent sent)"
echo "skipped:"
for reason in already_sent inactive opted_out no_email nothing_new; do
	printf '  %-14s %s\n' "$reason" \
	    "$(sum_metric digest_recipients_skipped_total "reason=\"$reason\"")"
done
stats=$("$DIGESTCTL" -c "$CONF" stats --json) || die "stats failed"
echo "dead letters:     $(printf '%s\n' "$stats" | awk -F': ' '/"dead_letters"/ { gsub(/,/, "", $2); print $2 }')"
echo "elapsed:          ${elapsed}s (schedule to empty queues)"
echo "emails/s:         $rate"
if [ -n "$one" ]; then
	echo "open one:         $one"
fi
echo

say "draining digestd"
kill -TERM "$digestd_pid"
i=0
while kill -0 "$digestd_pid" 2>/dev/null && [ $i -lt 600 ]; do
	sleep 0.1; i=$((i + 1))
done
if wait "$digestd_pid"; then drc=0; else drc=$?; fi
digestd_pid=
[ "$drc" -eq 0 ] || die "digestd exited $drc after the drain: see $VAR/digestd.log"
kill -TERM "$redis_pid"
wait "$redis_pid" 2>/dev/null || true
redis_pid=
say "done; everything it started is stopped"
