#!/usr/bin/env bash
# Writer benchmarks (issue: sync). 20,000 feedback rows end to end through `savio-sync sync` against a local
# HTTP server on 127.0.0.1 (examples/bench_server.rs), in one run, three scenarios:
#   (a) a server answering at once: savio-sync's requests/s next to wrk's against the same server;
#   (b) a server adding 50 ms per request, --concurrency 16: requests/s next to the 320 req/s ideal;
#   (c) --rate 200: the most requests seen in any one-second window, and the achieved rate.
# Every run uses a state file of its own (the journal of a durable run: what users run; a shared one would
# hold the feedback of the run before as created, and skip it); (a) is also run with --no-state to show what
# the journal costs.
# Needs wrk (apt-get install wrk) and python3. Prints a table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-20000}
cargo build --release --locked --bin savio-sync --example bench_server >&2
BIN=$PWD/target/release/savio-sync
SRV=$PWD/target/release/examples/bench_server
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK/in.csv" "$ROWS" <<'PY'
import sys
path, rows = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("Text,Email,Name\n")
    for i in range(rows):
        f.write(f"Feedback number {i}: please add a bulk export,person{i}@example.com,Person {i}\n")
PY
printf '[feedback]\nproblem = "Text"\nperson_email = "Email"\nperson_name = "Name"\n' > "$WORK/m.toml"
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"problem":"Feedback number 1: please add a bulk export","person_email":"person1@example.com","person_name":"Person 1"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Token bench"
LUA

# start_server NAME [args]: starts the server, its stdin held open on fd 9; sets URL.
start_server() {
  local name=$1; shift
  mkfifo "$WORK/$name.ctl"
  "$SRV" "$@" < "$WORK/$name.ctl" > "$WORK/$name.url" &
  SERVER_PID=$!
  exec 9> "$WORK/$name.ctl"
  for _ in $(seq 100); do [ -s "$WORK/$name.url" ] && break; sleep 0.05; done
  URL=$(head -1 "$WORK/$name.url")
}
stop_server() { exec 9>&-; wait "$SERVER_PID" || true; }

run_sync() { # run_sync REPORT_DIR [flags]: prints requests/s from summary.json
  local dir=$1; shift
  local state=(--state "$WORK/$dir.sqlite")
  case " $* " in *" --no-state "*) state=() ;; esac
  SAVIO_API_TOKEN=bench "$BIN" -q sync "$WORK/in.csv" -m "$WORK/m.toml" --base-url "$URL" \
    --report-dir "$WORK/$dir" "${state[@]}" "$@" > /dev/null
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["payloads"]["feedback"]["ok"]==int(sys.argv[2]), s; print("%.0f" % (s["requests"]/s["duration_secs"]))' \
    "$WORK/$dir/summary.json" "$ROWS"
}

echo "== (a) instant server: wrk vs savio-sync, 16 connections" >&2
start_server a
WRK=$(wrk -t2 -c16 -d10s -s "$WORK/post.lua" "${URL}create-feedback/" | awk '/Requests\/sec/ {printf "%.0f", $2}')
SS=$(run_sync a --concurrency 16 --rate 1000000)
SSN=$(run_sync a-nostate --concurrency 16 --rate 1000000 --no-state)
stop_server
echo "wrk: $WRK req/s, savio-sync: $SS req/s (without state: $SSN req/s)" >&2

echo "== (b) 50 ms server, --concurrency 16" >&2
start_server b --delay-ms 50
SSB=$(run_sync b --concurrency 16 --rate 1000000)
stop_server
echo "savio-sync: $SSB req/s (ideal 320)" >&2

echo "== (c) --rate 200" >&2
start_server c --log "$WORK/arrivals.txt"
SSC=$(run_sync c --concurrency 16 --rate 200)
stop_server
read -r MAXWIN ACHIEVED < <(python3 - "$WORK/arrivals.txt" <<'PY'
import sys, bisect
t = sorted(int(x) for x in open(sys.argv[1]))
# Most arrivals in any half-open one-second window [a, a+1s), windows starting at every arrival.
best = max(bisect.bisect_left(t, a + 1_000_000_000) - i for i, a in enumerate(t))
span = (t[-1] - t[0]) / 1e9
print(best, f"{(len(t) - 1) / span:.1f}")
PY
)
echo "max in any 1 s window: $MAXWIN, achieved: $ACHIEVED req/s" >&2

python3 - "$WRK" "$SS" "$SSB" "$MAXWIN" "$ACHIEVED" "$ROWS" "$SSN" <<'PY'
import sys
wrk, ss, ssb, maxwin, achieved, rows, ssn = map(float, sys.argv[1:])
print(f"| scenario | measured | reference | ratio | goal |")
print(f"|---|---|---|---|---|")
print(f"| (a) instant server, {int(rows)} rows, 16 in flight | {ss:.0f} req/s | wrk {wrk:.0f} req/s | {ss/wrk:.0%} | >= 70% |")
print(f"| (a) the same with --no-state | {ssn:.0f} req/s | wrk {wrk:.0f} req/s | {ssn/wrk:.0%} | |")
print(f"| (b) 50 ms server, --concurrency 16 | {ssb:.0f} req/s | ideal 320 req/s | {ssb/320:.0%} | >= 90% |")
print(f"| (c) --rate 200: achieved rate | {achieved:.1f} req/s | 200 req/s | {achieved/200:.1%} | >= 97% |")
print(f"| (c) --rate 200: most requests in any 1 s window | {maxwin:.0f} | 200 | | <= 200 |")
PY
