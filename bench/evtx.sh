#!/usr/bin/env bash
# Compare Quarry's EVTX parser (`quarry parse --format jsonl`) with libevtx's evtxexport on the same files:
# a large Security log written by evtx/evtxwriter from realistic events (bench/evtxgen), and the corpus
# logs. Prints records/s of both, the ratio and the peak RSS of each. Usage: bench/evtx.sh [SIZE_MB=200].
# The large log is cached under $BENCH_DIR; $CORPUS is the folder of corpus .evtx files.
set -euo pipefail
SIZE_MB=${1:-200}
BENCH_DIR=${BENCH_DIR:-/tmp/quarry-bench}
here=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${CORPUS:-$here/../shared/corpus/plaso/evtx}
command -v evtxexport >/dev/null || { echo "evtxexport missing: apt-get install libevtx-utils" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing: apt-get install time" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
cd "$here"

go build -o "$BENCH_DIR/evtxgen" ./bench/evtxgen
big="$BENCH_DIR/security-$SIZE_MB.evtx"
if [ ! -f "$big" ] || [ ! -f "$big.gen" ]; then
	"$BENCH_DIR/evtxgen" -out "$big.tmp" -mb "$SIZE_MB" >"$big.gen"
	mv "$big.tmp" "$big"
fi
echo "generated $(basename "$big"): $(cat "$big.gen")"

quarry=
if go build -o "$BENCH_DIR/quarry" ./cmd/quarry 2>"$BENCH_DIR/build.log" &&
	"$BENCH_DIR/quarry" parse --help >/dev/null 2>&1; then
	quarry="$BENCH_DIR/quarry"
else
	echo "quarry parse unavailable (see $BENCH_DIR/build.log): measuring evtxexport only" >&2
fi

# run CMD...: runs CMD with its output discarded; sets T (seconds) and RSS (peak, KiB).
run() {
	if ! /usr/bin/time -f '%e %M' -o "$BENCH_DIR/time.txt" "$@" >/dev/null 2>"$BENCH_DIR/stderr.txt"; then
		echo "failed: $*" >&2
		head -5 "$BENCH_DIR/stderr.txt" >&2
		return 1
	fi
	read -r T RSS < <(tail -1 "$BENCH_DIR/time.txt")
}

# best N CMD...: the shortest of N runs (the machine is shared: one run can be unlucky), and its RSS.
best() {
	local n=$1 bt=999999 brss=0
	shift
	for _ in $(seq "$n"); do
		run "$@"
		if [ "$(echo "$T < $bt" | bc)" = 1 ]; then bt=$T brss=$RSS; fi
	done
	T=$bt RSS=$brss
}

# records FILE: the number of records evtxexport prints (the reference count).
records() { evtxexport "$1" 2>/dev/null | grep -c '^Event number' || true; }

rate() { echo "scale=0; $1 / ($2 + 0.005)" | bc; } # +5 ms: a run of a tiny file may print 0.00 s

printf '%-34s %9s | %12s %8s %8s | %12s %8s %8s | %6s\n' file records "evtxexport/s" seconds "RSS MiB" "quarry/s" seconds "RSS MiB" ratio
bench() { # bench FILE RECORDS RUNS
	local f=$1 n=$2 runs=$3 te re tq rq ratio=-
	cat "$f" >/dev/null # page cache warm for both
	best "$runs" evtxexport "$f"
	te=$T re=$RSS
	tq=- rq=0
	if [ -n "$quarry" ]; then
		best "$runs" "$quarry" parse "$f" --format jsonl
		tq=$T rq=$RSS
		got=$("$quarry" parse "$f" --format jsonl 2>/dev/null | wc -l)
		[ "$got" = "$n" ] || echo "warning: quarry printed $got records from $(basename "$f"), evtxexport $n" >&2
		ratio=$(printf "%.2f" "$(echo "scale=4; ($te + 0.005) / ($tq + 0.005)" | bc)")
	fi
	printf '%-34s %9d | %12s %8s %8d | %12s %8s %8d | %6s\n' "$(basename "$f") ($(($(stat -c %s "$f") >> 20)) MiB)" "$n" \
		"$(rate "$n" "$te")" "$te" $((re >> 10)) "$([ "$tq" = - ] && echo - || rate "$n" "$tq")" "$tq" $((rq >> 10)) "$ratio"
}

bench "$big" "$(sed -E 's/^records ([0-9]+) .*/\1/' "$big.gen")" 1
for f in "$CORPUS"/*.evtx; do
	[ -f "$f" ] || continue
	bench "$f" "$(records "$f")" 3
done
