#!/usr/bin/env bash
# The check to run once on a machine with a GPU, in at most 10 minutes, with no network:
#
#   1. the test suite (`deno test --allow-all tests/`), at most 150 s;
#   2. the kernel benchmarks (`deno task bench --json`), at most 60 s;
#   3. the train-step benchmarks (`deno task bench --train --json`), at most 60 s;
#   4. a dataset built with the pipeline from the bundled stories (data/pretrain/stories.jsonl.gz:
#      prepare, an 8192-token BPE, 1024-token rows), at most 60 s;
#   5. a training run of 5 minutes (`deno task train-model --max-seconds 300`, the context-1024
#      configuration of the train-step benchmark: 6 layers, 4 heads, width 256, 8 rows a step),
#      or what is left of the 10 minutes.
#
# Every stage has its own time limit; a stage that fails or runs out of time is reported and the
# next one runs. Everything goes to one report file, written as the stages end (so a check that
# is stopped still leaves what it measured):
#
#   bash scripts/gpu-check.sh [FOLDER]    # FOLDER, else $OUT, else gpu-check/
#
# It needs Deno and the project's npm packages already cached (`bash scripts/setup.sh` once,
# with a network). GPU_CHECK_ROWS sets how many stories the dataset takes (default 3000),
# GPU_CHECK_SECONDS the time in all (default 600), and GPU_CHECK_SKIP names stages to leave out
# (e.g. "tests bench-kernels").

set -uo pipefail
cd "$(dirname "$0")/.."

folder="${1:-${OUT:-gpu-check}}"
mkdir -p "$folder"
folder="$(cd "$folder" && pwd)"
report="$folder/gpu-check-report.txt"
work="$folder/work"
rm -rf "$work"
mkdir -p "$work"
rows="${GPU_CHECK_ROWS:-3000}"
total_budget="${GPU_CHECK_SECONDS:-600}"
skip=" ${GPU_CHECK_SKIP:-} "
started=$SECONDS

if ! command -v deno >/dev/null; then
  echo "gpu-check: deno is not installed; run 'bash scripts/setup.sh' first." >&2
  exit 1
fi

say() { printf '%s\n' "$*" | tee -a "$report"; }

# seconds_left: what is left of the 10 minutes.
seconds_left() { echo $((total_budget - (SECONDS - started))); }

# stage NAME LIMIT COMMAND...: runs COMMAND for at most LIMIT seconds (less if the 10 minutes
# run out), keeps its whole output in the work folder and its last lines in the report.
stage() {
  local name="$1" limit="$2"
  shift 2
  if [[ "$skip" == *" $name "* ]]; then
    say "== $name: skipped (GPU_CHECK_SKIP)"
    return 0
  fi
  local left
  left=$(seconds_left)
  if ((left < limit)); then limit=$left; fi
  if ((limit < 5)); then
    say "== $name: skipped, the 10 minutes are spent"
    return 1
  fi
  local log="$work/$name.log" begin=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local status="ok"
  if ((rc == 124 || rc == 137)); then status="stopped at its limit of ${limit} s"; elif ((rc != 0)); then status="FAILED (exit $rc)"; fi
  say ""
  say "== $name: $status, $((SECONDS - begin)) s (${STAGE_WHAT:-$*})"
  tail -n "${TAIL_LINES:-40}" "$log" >>"$report"
  return $rc
}

: >"$report"
say "gpu-check of $(git rev-parse --short HEAD 2>/dev/null || echo 'an unknown commit') on $(hostname), $(date -u '+%Y-%m-%d %H:%M UTC')"
say "$(nproc) CPU cores; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
stage adapter 30 deno run --allow-all bench/adapter.ts

stage tests 150 deno test --allow-all tests/
TAIL_LINES=80 stage bench-kernels 60 deno run --allow-all bench/main.ts --json
TAIL_LINES=80 stage bench-train 60 deno run --allow-all bench/main.ts --train --json

data="$work/data"
# shellcheck disable=SC2016 # the script's variables are its arguments
build_dataset='set -e
  deno run --allow-all pipeline/prepare_dataset.ts --data data/pretrain/stories.jsonl.gz \
    --rows "$1" --out "$2/stories.jsonl" --quiet
  deno run --allow-all pipeline/train_tokenizer.ts --data "$2/stories.jsonl" \
    --vocab-size 8192 --out "$2/tokenizer" --quiet
  deno run --allow-all pipeline/tokenize_dataset.ts --data "$2/stories.jsonl" \
    --tokenizer "$2/tokenizer" --context 1024 --out "$2/tokenized" --quiet'
batch=8
if STAGE_WHAT="prepare, tokenizer, tokenize: $rows stories" stage dataset 60 bash -c "$build_dataset" build-dataset "$rows" "$data"; then
  # The training stops itself after the step during which its seconds run out; the stage's own
  # limit leaves it 30 s more to finish that step and save its checkpoint.
  train_seconds=$(($(seconds_left) - 30))
  if ((train_seconds > 300)); then train_seconds=300; fi
  if ((train_seconds >= 10)); then
    stage train $((train_seconds + 30)) deno run --allow-all pipeline/train_model.ts \
      --data "$data/tokenized" --out "$work/run" --layers 6 --heads 4 --embd 256 \
      --batch-size "$batch" --steps 100000 --max-seconds "$train_seconds" --checkpoint-every 100 \
      --fresh --quiet
    # The log's last steps: tokens per second from each step's wall time.
    if [[ -s "$work/run/log.jsonl" ]]; then
      summary=$(deno eval '
        const lines = Deno.readTextFileSync(Deno.args[0]).trim().split("\n").map((l) => JSON.parse(l));
        const last = lines.slice(-20), ms = last.reduce((s, r) => s + r.ms, 0) / last.length;
        const val = lines.filter((r) => r.valLoss !== undefined).at(-1)?.valLoss;
        console.log(`training: ${lines.length} steps; the last ${last.length}: ${ms.toFixed(1)} ms a step, ` +
          `${(Number(Deno.args[1]) / ms * 1000).toFixed(0)} tokens/s; loss ${lines[0].loss.toFixed(3)} -> ` +
          `${lines.at(-1).loss.toFixed(3)}` + (val === undefined ? "" : `; validation ${val.toFixed(3)}`));
      ' "$work/run/log.jsonl" $((batch * 1024)) 2>&1)
      say "$summary"
    fi
  else
    say "== train: skipped, under 10 s left of the 10 minutes"
  fi
fi

say ""
say "gpu-check done in $((SECONDS - started)) s; whole logs in $work"
