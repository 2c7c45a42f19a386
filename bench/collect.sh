#!/usr/bin/env bash
# Compare quarry-host's collection engine with `tar | zstd` on the same tree, and measure its peak RSS on a
# bigger tree. Usage: bench/collect.sh [SIZE_MB=500] [BIG_MB=2048]. Trees are cached under $BENCH_DIR.
set -euo pipefail
SIZE_MB=${1:-500}
BIG_MB=${2:-2048}
BENCH_DIR=${BENCH_DIR:-/tmp/quarry-bench}
here=$(cd "$(dirname "$0")/.." && pwd)
command -v zstd >/dev/null || { echo "zstd missing: apt-get install zstd" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing: apt-get install time" >&2; exit 1; }

# gen_tree DIR MB: a Linux-layout tree of realistic mixed files under DIR/var/log: text logs (most of the
# bytes, compressible), random binaries (incompressible), gzip-rotated logs, many small files.
gen_tree() {
	local dir=$1 mb=$2
	[ -f "$dir/.done-$mb" ] && return
	rm -rf "$dir" && mkdir -p "$dir/var/log" "$dir/etc"
	echo "root:x:0:0::/root:/bin/bash" >"$dir/etc/passwd"
	python3 - "$dir/var/log" "$mb" <<'PY'
import os, random, sys, gzip
out, total = sys.argv[1], int(sys.argv[2]) << 20
rnd = random.Random(1)
users = ["alice", "bob", "deploy", "root", "www-data"]
def log_text(n):
    lines, size, i = [], 0, 0
    while size < n:
        l = "Nov %2d %02d:%02d:%02d web-03 sshd[%d]: %s password for %s from 10.%d.%d.%d port %d ssh2\n" % (
            1 + i % 28, i % 24, i % 60, (i * 7) % 60, 1000 + rnd.randrange(30000),
            rnd.choice(["Accepted", "Failed"]), rnd.choice(users),
            rnd.randrange(256), rnd.randrange(256), rnd.randrange(256), 1024 + rnd.randrange(60000))
        lines.append(l); size += len(l); i += 1
    return "".join(lines).encode()
written, k = 0, 0
while written < total:
    k += 1
    kind = k % 10
    d = os.path.join(out, "app%02d" % (k % 17))
    os.makedirs(d, exist_ok=True)
    if kind < 5:      # text log, 64 KB .. 24 MB
        n = rnd.choice([64 << 10, 512 << 10, 4 << 20, 24 << 20])
        data, name = log_text(n), "log%05d.log" % k
    elif kind < 7:    # random binary, 1 .. 16 MB
        n = rnd.choice([1 << 20, 4 << 20, 16 << 20])
        data, name = os.urandom(n), "blob%05d.bin" % k
    elif kind < 8:    # rotated gzip log
        data, name = gzip.compress(log_text(2 << 20), 6), "log%05d.log.1.gz" % k
    else:             # a burst of small files
        for j in range(50):
            p = os.path.join(d, "small%05d_%02d.txt" % (k, j))
            with open(p, "wb") as f:
                f.write(log_text(rnd.randrange(200, 16 << 10)))
        data, name = log_text(4096), "small%05d.log" % k
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    written += len(data)
PY
	touch "$dir/.done-$mb"
}

cd "$here"
CGO_ENABLED=0 go build -o "$BENCH_DIR/collectbench" ./bench/collectbench
tree="$BENCH_DIR/tree-$SIZE_MB"
gen_tree "$tree" "$SIZE_MB"
bytes=$(du -sb "$tree" | cut -f1)
sync
echo "tree: $tree ($((bytes >> 20)) MiB)"

# Warm the page cache once so both runs read from memory and compare CPU work, not the disk (through a
# pipe: GNU tar skips reading when it writes straight to /dev/null).
tar -cf - -C "$tree" . | cat >/dev/null

# Best of two runs each: the machine is shared, a single run can be unlucky.
best() { # best CMD...: runs twice, prints the shorter wall time in seconds
	local b=999999 t0 t
	for _ in 1 2; do
		t0=$(date +%s.%N); "$@"; t=$(echo "$(date +%s.%N) - $t0" | bc)
		b=$(echo "if ($t < $b) $t else $b" | bc)
	done
	echo "$b"
}
tarzstd() { tar -cf - -C "$tree" . | zstd -q -T0 -3 -o "$BENCH_DIR/tar.zst" -f; }
quarry() { /usr/bin/time -v -o "$BENCH_DIR/time-small.txt" "$BENCH_DIR/collectbench" -root "$tree" -os linux -out "$BENCH_DIR/small.zip" >"$BENCH_DIR/collect-small.txt"; }
tz=$(best tarzstd)
tq=$(best quarry)
printf 'tar|zstd -3 -T0 : %6.2f s  %7.1f MiB/s  output %d MiB\n' "$tz" "$(echo "$bytes / 1048576 / $tz" | bc -l)" "$(($(stat -c %s "$BENCH_DIR/tar.zst") >> 20))"
printf 'quarry collector: %6.2f s  %7.1f MiB/s  output %d MiB  (%s)\n' "$tq" "$(echo "$bytes / 1048576 / $tq" | bc -l)" "$(($(stat -c %s "$BENCH_DIR/small.zip") >> 20))" "$(cat "$BENCH_DIR/collect-small.txt")"
grep -E 'Maximum resident|Percent of CPU' "$BENCH_DIR/time-small.txt" | sed 's/^\t*/  collector /'

big="$BENCH_DIR/tree-$BIG_MB"
gen_tree "$big" "$BIG_MB"
/usr/bin/time -v -o "$BENCH_DIR/time-big.txt" "$BENCH_DIR/collectbench" -root "$big" -os linux -out "$BENCH_DIR/big.zip" >"$BENCH_DIR/collect-big.txt"
echo "big tree: $(($(du -sb "$big" | cut -f1) >> 20)) MiB: $(cat "$BENCH_DIR/collect-big.txt")"
grep -E 'Maximum resident|Elapsed' "$BENCH_DIR/time-big.txt" | sed 's/^\t*/  collector /'
rm -f "$BENCH_DIR/small.zip" "$BENCH_DIR/big.zip" "$BENCH_DIR/tar.zst"
