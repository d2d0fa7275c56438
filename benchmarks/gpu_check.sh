#!/usr/bin/env bash
# One-GPU check in under 8 minutes; prints one table.
#   1. UNI-config ViT-L/16 (random weights), bf16: extraction end to end vs bare forward on the
#      same batches (targets: ratio >= 0.9, >= 3,000 patches/s on one H100/H200)
#   2. HAGE: one training epoch at 10k spots (785 genes, 1024-d features, d = 1024)
#   3. AB-MIL: one epoch on 200 bags x 4,000 x 1,024 from h5+LRU vs packed memmap (fp32, fp16)
#   4. Linear probe: embedding throughput of 96 px PCAM-like patches through UNI (bf16)
# Usage: bash benchmarks/gpu_check.sh   (PYTHON=/path/to/python to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')"
status=0
run() {  # name, seconds, command...
  local name=$1 secs=$2; shift 2
  local t0=$SECONDS
  if timeout "$secs" "$@" > "$OUT/$name.out" 2> "$OUT/$name.log"; then
    echo "[$name] ok in $((SECONDS - t0)) s" >&2
  else
    echo "[$name] FAILED or timed out after $((SECONDS - t0)) s; last lines:" >&2; tail -5 "$OUT/$name.log" >&2; status=1
  fi
}
run extract 150 "$PY" benchmarks/extract_speed.py --encoder uni --device cuda --batch-size 256 --n-patches 8192 --repeats 2 --json
run hage 120 "$PY" benchmarks/train_speed.py --device cuda --spots 10000 --epochs 2 --json "$OUT/hage.json"
run abmil 150 "$PY" benchmarks/abmil_speed.py --quick --train --device cuda --epochs 1 --threads 4 --json
run probe 60 "$PY" benchmarks/probe_speed.py --device cuda --encoder uni --n 8192 --batch-size 256 --json
"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    try:
        if name == "hage":  # train_speed.py writes its JSON file itself
            return json.loads((out / "hage.json").read_text())
        text = (out / f"{name}.out").read_text().strip()
        return json.loads(text.splitlines()[-1]) if name in ("extract", "probe") else json.loads(text)
    except (OSError, ValueError, IndexError):
        return None
rows = []
e = load("extract")
if e:
    ok = e["ratio"] >= 0.9 and e["end_to_end_patches_per_s"] >= 3000
    rows += [("UNI ViT-L bf16 extraction, end to end", f"{e['end_to_end_patches_per_s']:,.0f} patches/s", ""),
             ("UNI ViT-L bf16 bare forward (same batches)", f"{e['bare_forward_patches_per_s']:,.0f} patches/s", ""),
             ("end to end / bare", f"{e['ratio']:.3f}", "PASS" if ok else "below target (>= 0.9, >= 3,000/s)"),
             ("peak CUDA memory", f"{e['peak_cuda_mb']:,.0f} MiB", e["device_name"])]
h = load("hage")
if h:
    r = h[0]
    rows.append(("HAGE epoch, 10k spots x 785 genes", f"{statistics.median(r['train_seconds_per_epoch']):.2f} s/epoch",
                 f"{r['spots_per_second']:,.0f} spots/s"))
a = load("abmil")
if a:
    for r in a:
        rows.append((f"AB-MIL epoch, {r['store']}", f"{r['train_epoch_s']:.2f} s", f"read pass {r['read_epoch1_s']:.2f} s"))
p = load("probe")
if p:
    rows.append(("linear-probe embedding (UNI, 96 px h5)", f"{p['images_per_s']:,.0f} images/s", f"{p['n']} images"))
w = max((len(r[0]) for r in rows), default=10)
print(f"{'check':<{w}}  {'figure':>22}  note")
for name, fig, note in rows:
    print(f"{name:<{w}}  {fig:>22}  {note}")
if not rows:
    sys.exit("gpu_check: no results")
PYEOF
exit $status
