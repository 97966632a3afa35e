#!/usr/bin/env bash
# Journal micro-benchmark: durable 1 KiB appends/s and fsyncs/s for 1 and 8
# concurrent appenders, the group-commit ratio (appends per fdatasync), and
# the raw write+fdatasync rate of the same disk for comparison.
#
#   bench/journal.sh [--dir DIR] [--appends N] [--appenders 1,8,32] [--reps 3]
#
# DIR defaults to $TMPDIR (/tmp): point it at the disk the broker will use.
# Each configuration runs --reps times interleaved with a raw fdatasync probe
# of the same directory; the table shows medians.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p amq-broker --example journal_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/journal_bench" "$@"
