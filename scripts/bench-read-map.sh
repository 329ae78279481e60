#!/usr/bin/env bash
# Read+map benchmark (issue: foundation). In one run:
#   1. `cargo bench --bench read_map`: criterion times a plain csv::ByteRecord read and the full read+map
#      pipeline over the same generated 1,000,000-row contacts CSV (target/bench-data/, not committed);
#   2. peak RSS of `savio-sync validate` over that file (GNU time), the whole binary streaming 1M rows.
# Prints a table for BENCHMARKS.md: rows/s, MB/s, the ratio read+map / plain read, and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}

cargo bench --locked --bench read_map -- --noplot >&2
cargo build --release --locked --bin savio-sync >&2

DATA="$TARGET/bench-data"
RSS_KB=$( { /usr/bin/time -f '%M' "$TARGET/release/savio-sync" -q validate "$DATA/contacts-1m.csv" \
  -m "$DATA/contacts-1m.toml" > /dev/null; } 2>&1 | tail -1 )

python3 - "$TARGET/criterion/contacts_1m" "$DATA/contacts-1m.csv" "$RSS_KB" <<'PY'
import json, os, sys
base, csv_path, rss_kb = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows, size = 1_000_000, os.path.getsize(csv_path)
def secs(name):
    with open(os.path.join(base, name, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"] / 1e9
plain, full = secs("plain_byte_record_read"), secs("read_map")
print("| measurement | time (median) | rows/s | MB/s |")
print("|---|---|---|---|")
print(f"| plain `csv::ByteRecord` read | {plain:.3f} s | {rows/plain:,.0f} | {size/plain/1e6:.1f} |")
print(f"| read + map (savio-sync pipeline) | {full:.3f} s | {rows/full:,.0f} | {size/full/1e6:.1f} |")
print()
print(f"read+map / plain read throughput: **{plain/full:.0%}** (goal >= 50%)")
print(f"peak RSS of `savio-sync validate` over the {size/1e6:.0f} MB file: **{rss_kb/1024:.1f} MB** (goal < 64 MB)")
PY
