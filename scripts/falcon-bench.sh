#!/usr/bin/env bash
# Flash decode on the Falcon-7B shape (docs/BENCHMARKS.md, "Falcon-7B shape"): a falcon-7b-relu-shaped
# model (random f16 weights, 14.4 GB; the ReLU variant, since flash runs ReLU models only) at 50% of its
# size, synthetic activity as in scripts/scale-bench.sh, a rank-128 random predictor per layer.
# Methods, each in its own JVM, after the same prewarm: dense (every weight in memory, no budget: the
# reference), all-serial (flash without the look-ahead), all (flash with the look-ahead; the I/O
# backend auto's choice: the thread pool, since 18176-byte bundles are not 4096-aligned); the limits
# measured in the same run. Then, as a second run, all with --io-backend uring (bench-uring.json).
#   scripts/falcon-bench.sh [WORK_DIR]
#     WORK_DIR: where the checkpoint and its bundle go (default /work/synth-out; about 2x the model's
#     size, ~29 GB: check df first)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shape=falcon-7b-relu
work="${1:-/work/synth-out}"
lf="$root/llmflash"
hf="$work/$shape"
b="$work/$shape.bundle"
mkdir -p "$work"
start=$(date +%s)
if [ ! -f "$hf/config.json" ]; then
  "$lf" synth --shape "$shape" --output "$hf"
fi
if [ ! -f "$b/manifest.json" ] || [ "$hf/config.json" -nt "$b/manifest.json" ]; then
  "$lf" convert --input "$hf" --output "$b" --dtype f16 --force
fi
out="$root/docs/figures/$shape"
mkdir -p "$out"
"$lf" bench --model "$b" --memory 50% --methods dense,all-serial,all --activity synthetic \
  --predictor-rank 128 --isolate --prewarm --limits --tokens 32 --warmup 4 --charts "$out" --json > "$out/bench.json"
python3 - "$out/bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{'method':12s} {'backend':9s} {'I/O':>7s} {'overlap':>7s} {'I/O cpu':>7s} {'I/O wait':>9s} {'mem ms':>7s} {'compute':>8s} {'total ms':>9s} {'read/token':>11s} {'alloc/token':>11s}")
for m in d['methods']:
    ov = m.get('overlap')
    print(f"{m['method']:12s} {str(m.get('io_backend', '-'))[:9]:9s} {m.get('io_ms', 0):7.1f} {'-' if ov is None else f'{100*ov:.0f}%':>7s} {m.get('io_cpu_ms', 0):7.1f} "
          f"{m.get('io_wait_ms', 0):9.1f} {m.get('mem_ms', 0):7.1f} {m.get('compute_ms', 0):8.1f} {m['total_ms']:9.1f} {m.get('bytes_read_per_token', 0)/1e6:8.1f} MB {m.get('allocated_bytes_per_token', 0)/1e3:8.1f} kB")
print(json.dumps(d['limits'], indent=1))
PY
echo "bench: all with --io-backend uring ..."
"$lf" bench --model "$b" --memory 50% --methods all --io-backend uring --activity synthetic \
  --predictor-rank 128 --isolate --prewarm --tokens 32 --warmup 4 --json > "$out/bench-uring.json"
python3 - "$out/bench-uring.json" <<'PY'
import json, sys
for m in json.load(open(sys.argv[1]))['methods']:
    print(f"{m['method']} ({m.get('io_backend')}): total {m['total_ms']:.1f} ms, I/O wait {m.get('io_wait_ms', 0):.1f}, compute {m.get('compute_ms', 0):.1f}, I/O cpu {m.get('io_cpu_ms', 0):.1f}")
PY
echo "falcon-bench: $(( $(date +%s) - start )) s in all"
