#!/bin/sh
# makespan.sh runs issue #6's launch benchmark (scheduler.TestMakespan): 1,000 hosts acquired at
# once against the Defender emulator at a high TimeScale, reporting the launch makespan against
# the lower bound the limits allow. QUARRY_BENCH_HOSTS and QUARRY_BENCH_SCALE override 1000 and 30
# (see scheduler/bench_test.go for why not faster). It takes about 3.5 minutes; run it on an idle machine.
set -eu
cd "$(dirname "$0")/.."
QUARRY_BENCH_MAKESPAN=1 go test -count=1 -run '^TestMakespan$' -v -timeout 20m ./scheduler/ |
	grep -E 'makespan_ratio=|hosts=|emulator:|limiter:|slack|FAIL|ok|---' 
