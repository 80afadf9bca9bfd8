#!/usr/bin/env bash
# The quantizing converter at scale (docs/BENCHMARKS.md, "Quantized bundles"): the disk's mixed
# read/write throughput measured first (a direct read of a source shard while a direct write runs),
# then `convert --quant Q` of an HF checkpoint from a cold page cache under /usr/bin/time -v: peak RSS,
# (bytes read + written) / s, and their share of the mixed throughput.
#   scripts/quant-convert-bench.sh HF_DIR OUT_BUNDLE [q4|q8]      (run as root: it drops the page cache)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
hf="$1"; out="$2"; q="${3:-q4}"
work="$(dirname "$out")"
shard="$(ls -S "$hf"/*.safetensors | head -1)"
sync; echo 3 > /proc/sys/vm/drop_caches
# Mixed: 4 GiB read (direct) from the largest shard while 2 GiB are written (direct, fsynced) beside it.
t0=$(date +%s.%N)
dd if="$shard" of=/dev/null bs=16M count=256 iflag=direct status=none &
r=$!
dd if=/dev/zero of="$work/.mixed-probe" bs=16M count=128 oflag=direct conv=fsync status=none
wait $r
t1=$(date +%s.%N)
read_bytes=$(( $(stat -c %s "$shard") < 4294967296 ? $(stat -c %s "$shard") : 4294967296 ))
rm -f "$work/.mixed-probe"
mixed=$(python3 -c "print(($read_bytes + 2147483648) / ($t1 - $t0))")
sync; echo 3 > /proc/sys/vm/drop_caches
rm -rf "$out"
/usr/bin/time -v "$root/llmflash" convert --input "$hf" --output "$out" --dtype f16 --quant "$q" --json \
  > "$work/.convert.json" 2> "$work/.convert.time"
python3 - "$work/.convert.json" "$work/.convert.time" "$mixed" "$q" <<'PY'
import json, re, sys
j = json.load(open(sys.argv[1]))
t = open(sys.argv[2]).read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
mixed = float(sys.argv[3])
io = j["io_bytes_per_second"]
print(f"disk mixed read+write (dd direct, concurrent): {mixed/1e6:.0f} MB/s")
print(f"convert --quant {sys.argv[4]}: {j['seconds']:.1f} s, read {j['bytes_read']/1e9:.2f} GB + wrote {j['bytes_written']/1e9:.2f} GB"
      f" = {io/1e6:.0f} MB/s read + written ({100*io/mixed:.0f}% of mixed), peak RSS {rss_kb/1024:.0f} MiB")
PY
rm -f "$work/.convert.json" "$work/.convert.time"
