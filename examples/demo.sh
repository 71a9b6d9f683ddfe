#!/usr/bin/env bash
# Sieve end to end on the bundled LeNet-5: export, compile, simulate, check against the
# integer reference interpreter, round-trip the binary through assembly, and run it on four cores.
set -euo pipefail
OUT=demo-out
mkdir -p "$OUT"
cd "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "sieve zoo list"
sieve zoo list
step "sieve zoo export lenet5 -o lenet5.sv"
sieve zoo export lenet5 -o lenet5.sv
step "sample inputs from sklearn's bundled digits"
python ../examples/digits_data.py .
step "sieve compile lenet5.sv --arch default --calibrate calib.npy -o lenet5.sieve"
sieve compile lenet5.sv --arch default --calibrate calib.npy -o lenet5.sieve
step "sieve run lenet5.sieve --input digit.npy --output out.npz --stats stats.json"
sieve run lenet5.sieve --input digit.npy --output out.npz --stats stats.json
step "sieve interpret lenet5.sv --input digit.npy --calibrate calib.npy --output ref.npz"
sieve interpret lenet5.sv --input digit.npy --calibrate calib.npy --output ref.npz
python - <<'PY'
import numpy as np
out, ref = np.load("out.npz"), np.load("ref.npz")
same = all(np.array_equal(out[k], ref[k]) for k in ref.files)
print("simulator == integer reference, bit for bit:", same)
raise SystemExit(0 if same else 1)
PY
step "sieve disasm lenet5.sieve > lenet5.s; sieve asm lenet5.s -o again.sieve"
sieve disasm lenet5.sieve > lenet5.s
head -n 12 lenet5.s | cut -c1-150
sieve asm lenet5.s -o again.sieve
cmp lenet5.sieve again.sieve && echo "again.sieve is byte-identical to lenet5.sieve"
step "the same binary with a narrower DRAM (same core, so no recompile): timing only"
sieve run lenet5.sieve --arch ../examples/default_narrow_dram.toml --timing-only -q
step "the same binary on the edge preset (a different core): refused with one clear error"
sieve run lenet5.sieve --arch edge --timing-only -q || echo "(refused, exit code $?)"
step "four cores sharing a 1 MiB L2: compile, run bit-exact with a Perfetto trace"
sieve compile lenet5.sv --arch multicore --calibrate calib.npy -q -o lenet5mc.sieve
sieve run lenet5mc.sieve --input digit.npy --output outmc.npz --trace lenet5mc.json -q
python -c "import numpy as n; a, b = n.load('outmc.npz'), n.load('ref.npz'); assert all((a[k] == b[k]).all() for k in b); print('4 cores == integer reference, bit for bit; open lenet5mc.json at ui.perfetto.dev')"
