#!/usr/bin/env bash
# Measure package sigma (issue #9): load every Windows rule of the corpus, then run them over a large
# generated event log (bench/sigmabench: a Windows triage mix of Security, Sysmon and PowerShell
# events, written with evtx/evtxwriter) at two sizes. For each size it prints the evaluation rate of
# the routed and prefiltered RuleSet and of naive evaluation (every rule on every event, on a
# sample), the parse and parse+evaluate rates, and the peak Go heap and RSS: memory must not grow
# with the input. Usage: bench/sigma.sh [SMALL=200000] [LARGE=1000000] (events).
# Logs are cached under $BENCH_DIR; $RULES is the rule folder. GOGC=400 bench/sigma.sh measures with the
# collector setting `quarry parse` uses (the default collects often, marking the rule set each time).
set -euo pipefail
SMALL=${1:-200000}
LARGE=${2:-1000000}
BENCH_DIR=${BENCH_DIR:-/tmp/quarry-bench}
here=$(cd "$(dirname "$0")/.." && pwd)
RULES=${RULES:-$here/../shared/corpus/sigma/rules/windows}
NAIVE=${NAIVE:-5000}
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing: apt-get install time" >&2; exit 1; }
[ -d "$RULES" ] || { echo "rules folder $RULES missing (set RULES)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
cd "$here"
go build -o "$BENCH_DIR/sigmabench" ./bench/sigmabench

for n in "$SMALL" "$LARGE"; do
	log="$BENCH_DIR/sigma-mix-$n.evtx"
	if [ ! -f "$log" ]; then
		"$BENCH_DIR/sigmabench" -gen "$log.tmp" -events "$n" >"$BENCH_DIR/gen.txt"
		mv "$log.tmp" "$log"
	fi
	/usr/bin/time -f '%M' -o "$BENCH_DIR/time.txt" \
		"$BENCH_DIR/sigmabench" -rules "$RULES" -evtx "$log" -naive "$NAIVE" >"$BENCH_DIR/out.txt"
	echo "$(cat "$BENCH_DIR/out.txt") peak_rss_mb=$(( $(tail -1 "$BENCH_DIR/time.txt") / 1024 )) file_mb=$(( $(stat -c %s "$log") >> 20 ))"
done
