#!/usr/bin/env bash
# Reruns the reliability cases of issue 12 (../shared/reliability-cases.md) on tiny models and
# writes one Markdown table row per case to RESULTS.md: the command, its exit code, the first
# error line and a verdict decided by checks here, never by hand:
#   OK      a clear error, or the right result
#   SILENT  exit 0 with a wrong result and no warning
#   UNCLEAR exit ≠ 0 with a poor message (or a right result reached too late)
#   LOSS    data lost or corrupted
#   MANUAL  not automated here (the reason is given)
#
# Usage: bash scripts/reliability_cases.sh [RESULTS.md]    (run from anywhere; about 5 minutes on a
# CPU adapter). Everything happens in a fresh temporary folder (kept, and named at the end); the
# base data is generated here, so no data from outside the repository is needed. Some cases need
# root (a tiny tmpfs for a full disk, chattr +i for an unwritable folder) and strace; without
# them those cases are reported as MANUAL.
set -u

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
elif [[ ${1:-} == -* ]]; then
  echo "error: unknown option $1; the one argument is the results file (see --help)" >&2
  exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/reliability.XXXXXX")
RESULTS=$(realpath -m "${1:-$T/results.md}") # before the cd below
LOGS=$T/logs
mkdir -p "$LOGS"
cd "$ROOT" || exit 1

# A folder made immutable or a tmpfs mounted by a case is undone even when the script is stopped.
cleanup() {
  chattr -R -i "$T" 2>/dev/null
  mountpoint -q "$T/full" 2>/dev/null && umount "$T/full"
}
trap cleanup EXIT

# The tasks of deno.json, run as deno task runs them (its command, such as deno run --allow-all
# FILE), without the deno task process in between (so that $! is the deno that trains).
task_command() {
  python3 -c 'import json, sys; print(json.load(open("deno.json"))["tasks"][sys.argv[1]])' "$1"
}
task() {
  local words
  read -r -a words <<<"$(task_command "$1")"
  shift
  "${words[@]}" "$@"
}
# spawn NAME ARGS...: a task in the background, $! its deno process (the one to signal).
spawn() {
  local words
  read -r -a words <<<"$(task_command "$1")"
  shift
  "${words[@]}" "$@" &
}

RC=0 ERR="" CMD="" ID=""
# run ID COMMAND...: runs a task (or any command) with a time limit, keeping its output in $LOGS;
# sets RC, ERR (the first `error:` line, else the first line of stderr) and CMD (as shown).
run() {
  ID=$1
  shift
  local argv=("$@")
  if [[ $1 == task ]]; then
    read -r -a argv <<<"$(task_command "$2")"
    argv+=("${@:3}")
  fi
  CMD=$(printf '%s ' "${@#task}" | sed "s#$T#\$T#g; s#^ *##")
  [[ $1 == deno && $2 == eval ]] && CMD="deno eval (a check through the library, see the script)"
  timeout "${LIMIT:-300}" "${argv[@]}" >"$LOGS/$ID.out" 2>"$LOGS/$ID.err" </dev/null
  RC=$?
  first_error "$LOGS/$ID.err"
}
first_error() {
  # Else the first line that is not the adapter's name, a progress bar or the model's size.
  ERR=$(grep -m1 -E '^error' "$1" ||
    grep -m1 -v -E '^(webgpu|Download|Task|model: )|\[[#.]+\]' "$1" || true)
  ERR=$(printf '%s' "$ERR" | sed "s#$T#\$T#g" | cut -c1-220)
}

# md TEXT: TEXT for a Markdown table cell: | escaped, and < as &lt; (</s> is not an HTML tag).
md() { printf '%s' "$1" | sed 's/|/\\|/g; s/</\&lt;/g'; }
# record ID CASE VERDICT NOTE: one table row (and a line on the terminal).
record() {
  printf '| %s | %s | `%s` | %s | %s | **%s** %s |\n' "$1" "$(md "$2")" \
    "$(printf '%s' "$CMD" | sed 's/|/\\|/g' | cut -c1-160)" "$RC" "$(md "$ERR")" "$3" "$(md "$4")" \
    >>"$RESULTS"
  printf '%-5s %-8s rc=%-3s %s\n' "$1" "$3" "$RC" "$ERR" >&2
}
manual() {
  RC="–" ERR="" CMD="–"
  record "$1" "$2" MANUAL "$3"
}

sum() { sha256sum "$1" 2>/dev/null | cut -c1-64; }
# refused NEEDLE: OK when the run failed with an error line that contains NEEDLE (when given).
refused() {
  if [[ $RC -eq 0 ]]; then
    echo SILENT
  elif [[ $RC -eq 124 ]]; then
    echo UNCLEAR
  elif [[ -z $ERR || ($# -gt 0 && $ERR != *"$1"*) ]]; then
    echo UNCLEAR
  else echo OK; fi
}

# --- base data: simple English stories, made here ---------------------------------------------
awk 'BEGIN { srand(7)
  split("Tom Anna Max Lily Ben Sara Sam Mia", who, " ")
  split("dog cat ball kite box tree boat bird", what, " ")
  split("red big small happy old new blue green", like, " ")
  split("found liked saw lost wanted painted", did, " ")
  split("park garden house river school shop", where, " ")
  for (i = 0; i < 3000; i++) {
    x = who[int(rand() * 8) + 1]
    printf "%s went to the %s. %s %s a %s %s. It was a good day, and %s was happy.\n", x,
      where[int(rand() * 6) + 1], x, did[int(rand() * 6) + 1], like[int(rand() * 8) + 1],
      what[int(rand() * 8) + 1], x
  } }' >"$T/stories.txt"
SPECIALS='<s>,<pad>,</s>,<unk>,<mask>,<|im_start|>,<|im_end|>'
MODEL=(--layers 1 --heads 2 --embd 32 --batch-size 2)
{
  echo "| ID | case | command | rc | first error line | verdict |"
  echo "|---|---|---|---|---|---|"
} >"$RESULTS"

task prepare --data "$T/stories.txt" --out "$T/corpus.jsonl" --quiet 2>"$LOGS/base.err" &&
  task tokenizer --data "$T/corpus.jsonl" --vocab-size 300 --special-tokens "$SPECIALS" \
    --out "$T/tok" --quiet 2>>"$LOGS/base.err" &&
  task tokenize --data "$T/corpus.jsonl" --tokenizer "$T/tok" --context 32 --out "$T/data" \
    --quiet 2>>"$LOGS/base.err" &&
  task train-model --data "$T/data" --out "$T/base" "${MODEL[@]}" --steps 20 \
    --checkpoint-every 5 --quiet 2>>"$LOGS/base.err" ||
  { echo "error: the base pipeline failed; see $LOGS/base.err" >&2 && exit 1; }
BASE=$T/base/checkpoint.safetensors

# --- 1: inputs ------------------------------------------------------------------------------------
run 1a task prepare --data "$T/nonexistent.jsonl" --out "$T/1a.jsonl"
record 1a "prepare --data nonexistent" "$(refused nonexistent)" ""

: >"$T/empty.txt"
: >"$T/empty.jsonl"
for kind in txt jsonl; do
  run "1b-$kind" task prepare --data "$T/empty.$kind" --out "$T/1b-$kind.jsonl"
  record "1b-$kind" "prepare, empty .$kind" "$(refused empty)" ""
done

# Parquet files written with the project's own dependency.
deno eval "
import { parquetWriteBuffer } from 'hyparquet-writer';
const texts = (await Deno.readTextFile('$T/stories.txt')).split('\n').filter((l) => l);
const write = (name, columnData) => Deno.writeFile('$T/' + name, new Uint8Array(parquetWriteBuffer({ columnData })));
await write('good.parquet', [{ name: 'text', data: texts, type: 'STRING' }]);
await write('nottext.parquet', [{ name: 'content', data: texts, type: 'STRING' }]);
await write('numeric.parquet', [{ name: 'text', data: texts.map((_, i) => i), type: 'INT32' }]);
await write('empty.parquet', [{ name: 'text', data: [], type: 'STRING' }]);
" 2>"$LOGS/parquet.err"
run 1b3 task prepare --data "$T/empty.parquet" --out "$T/1b3.jsonl"
record 1b3 "prepare, empty .parquet (no rows)" "$(refused empty.parquet)" ""

head -c 20000 "$T/good.parquet" >"$T/truncated.parquet"
run 1c task prepare --data "$T/truncated.parquet" --out "$T/1c.jsonl"
record 1c "prepare, truncated .parquet" "$(refused truncated.parquet)" ""
head -c 5000 /dev/urandom >"$T/garbage.parquet"
run 1c2 task prepare --data "$T/garbage.parquet" --out "$T/1c2.jsonl"
record 1c2 "prepare, random bytes as .parquet" "$(refused garbage.parquet)" ""

cp "$T/good.parquet" "$T/pages.parquet"
python3 - "$T/pages.parquet" <<'EOF'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
for i in range(100, min(len(data) - 2000, 30000)):
    data[i] = (data[i] * 7 + 13) & 0xFF
open(path, "wb").write(bytes(data))
EOF
run 1c3 task prepare --data "$T/pages.parquet" --out "$T/1c3.jsonl"
v=$(refused pages.parquet)
[[ -e $T/1c3.jsonl ]] && v=LOSS
record 1c3 "prepare, .parquet with its data pages overwritten" "$v" "(no output may be written)"

run 1d task prepare --data "$T/nottext.parquet" --out "$T/1d.jsonl"
record 1d "prepare, .parquet without a text column" "$(refused --text-field)" ""
run 1d2 task prepare --data "$T/numeric.parquet" --out "$T/1d2.jsonl"
record 1d2 "prepare, .parquet with a numeric text column" "$(refused text)" \
  "(numbers taken as documents is SILENT)"

printf '{"text":"one"}\n{"text": broken\n{"text":"three"}\n' >"$T/bad.jsonl"
run 1e task prepare --data "$T/bad.jsonl" --out "$T/1e.jsonl"
v=$(refused "Line 2")
[[ -e $T/1e.jsonl ]] && v=LOSS
record 1e "prepare, JSON Lines with a malformed line 2" "$v" ""

head -c 200000 /dev/urandom >"$T/random.txt"
run 1f task prepare --data "$T/random.txt" --out "$T/1f.jsonl"
record 1f "prepare, 200 KB of /dev/urandom as .txt" "$(refused random.txt)" ""

printf 'Le caf\xe9 est na\xefve.\nUne autre ligne.\n' >"$T/latin1.txt"
run 1g task prepare --data "$T/latin1.txt" --out "$T/1g.jsonl"
if [[ $RC -eq 0 ]] && grep -q $'\xef\xbf\xbd' "$T/1g.jsonl"; then v=SILENT; else v=$(refused latin1.txt); fi
record 1g "prepare, Latin-1 text" "$v" "(U+FFFD in the output is SILENT)"

head -n 200 "$T/corpus.jsonl" >"$T/stories.jsonl"
gzip -k "$T/stories.jsonl"
run 1n task prepare --data "$T/stories.jsonl.gz" --out "$T/1n.jsonl"
if [[ $RC -eq 0 ]]; then
  if cmp -s "$T/1n.jsonl" "$T/stories.jsonl"; then v=OK; else v=SILENT; fi
else v=$(refused gzip); fi
record 1n "prepare, stories.jsonl.gz" "$v" "(read: the same 200 documents as the plain file)"

awk 'BEGIN { for (i = 0; i < 250000; i++) printf "the cat sat on the mat "; print "" }' \
  >"$T/oneline.txt"
run 1h task prepare --data "$T/oneline.txt" --out "$T/1h.jsonl"
if [[ $RC -eq 0 ]]; then
  run 1h task tokenize --data "$T/1h.jsonl" --tokenizer "$T/tok" --context 32 --out "$T/1h-tok"
fi
if [[ $RC -eq 0 ]]; then v=OK; else v=UNCLEAR; fi
record 1h "a 6 MB single line (prepare, tokenize)" "$v" "(6 MB, not 20 MB, to spare the CPU)"

run 1i task tokenizer --data "$T/empty.jsonl" --vocab-size 512 --out "$T/1i"
record 1i "tokenizer on an empty corpus" "$(refused empty)" ""
run 1i2 task tokenize --data "$T/empty.jsonl" --tokenizer "$T/tok" --context 32 --out "$T/1i2"
record 1i2 "tokenize an empty corpus" "$(refused)" ""

mkdir -p "$T/emptydir" "$T/onebad"
cp "$T/garbage.parquet" "$T/onebad/part-0.parquet"
run 1o task prepare --data "$T/emptydir" --out "$T/1o.jsonl"
record 1o "prepare, an empty folder" "$(refused emptydir)" ""
run 1p task prepare --data "$T/onebad" --out "$T/1p.jsonl"
v=$(refused part-0.parquet)
[[ -e $T/1p.jsonl ]] && v=LOSS
record 1p "prepare, a folder with one bad .parquet" "$v" ""

run 1r task prepare --data "$T/stories.txt" --rows -5 --out "$T/1r.jsonl"
v=$(refused --rows)
[[ $ERR == *ambiguous* ]] && v=UNCLEAR
record 1r "prepare --rows -5" "$v" ""

# --- 2: flags and sizes ----------------------------------------------------------------------------
run 2a task params --tokens 1e11
if [[ $RC -eq 0 ]]; then v=OK; else v=UNCLEAR; fi
record 2a "params --tokens 1e11" "$v" "(exit 0 with the capped model)"

run 2b task train-model --data "$T/data" --out "$T/2b" --layers 48 --heads 16 --embd 2048
note="(nothing left at --out)"
[[ -e $T/2b ]] && note="(but it leaves an empty --out folder)"
record 2b "train-model 48 layers × 2048 (2.42B)" "$(refused 1B)" "$note"

run 2c task tokenize --data "$T/corpus.jsonl" --tokenizer "$T/tok" --context 2048 --out "$T/2c"
record 2c "tokenize --context 2048" "$(refused 1024)" ""
run 2c2 task train --data "$T/stories.txt" --context 2048 --work "$T/2c2"
v=$(refused 1024)
[[ -e $T/2c2/dataset.jsonl ]] && v=UNCLEAR
record 2c2 "train --context 2048" "$v" "(must fail before any stage)"

run 2d task train-model --data "$T/data" --out "$T/2d" --layers 1 --heads 3 --embd 32
v=$(refused --heads)
[[ $ERR == *0.5* ]] && v=UNCLEAR
record 2d "train-model --heads 3 --embd 32" "$v" "(no \"nHead = 0.5\")"

bad_flags=(
  "--steps 0" "--steps -5" "--steps 1.5" "--lr NaN" "--lr -1e-3" "--lr Infinity" "--lr abc"
  "--batch-size 0" "--batch-size 100000" "--checkpoint-every 0" "--layers 0"
)
for i in "${!bad_flags[@]}"; do
  read -r -a flag <<<"${bad_flags[$i]}"
  run "2e$i" task train-model --data "$T/data" --out "$T/2e$i" "${MODEL[@]}" "${flag[@]}"
  record "2e$i" "train-model ${bad_flags[$i]}" "$(refused "${flag[0]}")" ""
done

run 2h task train-model --data "$T/data" --out "$T/2h" --epochs 3
record 2h "train-model --epochs 3 (unknown flag)" "$(refused --epochs)" ""

v=OK
failed=""
for name in prepare tokenizer tokenize params train train-model test-pretrained prepare-instruct \
  finetune-instruct test-instruct chat eval report export; do
  run 2i task "$name" --help
  # A usage text: at least three lines that describe a --flag.
  if [[ $RC -ne 0 ]] || [[ $(cat "$LOGS/2i.out" "$LOGS/2i.err" | grep -c -E '^ +--') -lt 3 ]]; then
    v=UNCLEAR failed="$failed $name"
  fi
done
CMD="TASK --help, for 14 tasks" ERR=${failed:+failed:$failed}
record 2i "--help on every task" "$v" ""

for size in 100 258; do
  run "2j-$size" task tokenizer --data "$T/corpus.jsonl" --vocab-size "$size" --out "$T/2j-$size"
  record "2j-$size" "tokenizer --vocab-size $size" "$(refused --vocab-size)" ""
done

# --- 3: generation --------------------------------------------------------------------------------
long=$(head -n 20 "$T/stories.txt" | tr '\n' ' ')
run 3a task test-pretrained --checkpoint "$BASE" --tokenizer "$T/tok" --prompt "$long" \
  --max-new-tokens 5
if [[ $RC -ne 0 ]]; then v=UNCLEAR; elif grep -qi 'context' "$LOGS/3a.err"; then v=OK; else v=SILENT; fi
record 3a "test-pretrained, a prompt longer than the context" "$v" "(a warning must name the lengths)"
ERR=$(grep -m1 -i context "$LOGS/3a.err" | cut -c1-200)

run 3b task test-pretrained --checkpoint "$BASE" --tokenizer "$T/tok" --prompt ""
record 3b "test-pretrained, an empty prompt" "$(refused prompt)" ""
run 3c task test-pretrained --checkpoint "$BASE" --tokenizer "$T/tok" --prompt "café 🦊 你好" \
  --max-new-tokens 5
if [[ $RC -eq 0 ]]; then v=OK; else v=UNCLEAR; fi
record 3c "test-pretrained, an emoji and Chinese prompt" "$v" ""
run 3e task test-pretrained --checkpoint "$BASE" --tokenizer "$T/tok" --top-p 5
record 3e "test-pretrained --top-p 5" "$(refused --top-p)" ""

# On a terminal (script gives it one), an untrained model's control bytes must be escaped.
if command -v script >/dev/null; then
  run 3g script -qec "$(task_command test-pretrained) --checkpoint $BASE \
--tokenizer $T/tok --max-new-tokens 200 --temperature 2 --top-k 300 --top-p 1" /dev/null
  if [[ $RC -ne 0 ]]; then
    v=UNCLEAR
  elif tr -d '\r\n\t' <"$LOGS/3g.out" | sed 's/\x1b\[[0-9;]*m//g' | LC_ALL=C grep -q $'[\x01-\x08\x0b\x0e-\x1f\x7f]'; then
    v=SILENT
  else v=OK; fi
  record 3g "test-pretrained on a terminal, untrained model (no raw control bytes)" "$v" ""
else
  manual 3g "untrained model's output on a terminal" "script(1) is missing"
fi

chat() {
  local words
  read -r -a words <<<"$(task_command chat)"
  timeout 300 "${words[@]}" --checkpoint "$BASE" --tokenizer "$T/tok" --max-new-tokens 5 "$@"
}
long_chat=$(head -n 60 "$T/stories.txt" | tr '\n' ' ')
printf '%s\n' "$long_chat" | chat >"$LOGS/3h.out" 2>"$LOGS/3h.err"
RC=$? CMD="chat <<< 'a 60-line message'"
first_error "$LOGS/3h.err"
if [[ $RC -ne 0 ]]; then v=UNCLEAR; elif grep -qi 'context' "$LOGS/3h.err"; then v=OK; else v=SILENT; fi
record 3h "chat, a message longer than the context" "$v" "(a warning must name the lengths)"
printf '\n' | chat >"$LOGS/3i.out" 2>"$LOGS/3i.err"
RC=$? CMD="chat <<< ''"
first_error "$LOGS/3i.err"
record 3i "chat, an empty line" "$([[ $RC -eq 0 ]] && echo OK || echo UNCLEAR)" ""
chat </dev/null >"$LOGS/3k.out" 2>"$LOGS/3k.err"
RC=$? CMD="chat < /dev/null"
first_error "$LOGS/3k.err"
record 3k "chat, end of input" "$([[ $RC -eq 0 ]] && echo OK || echo UNCLEAR)" ""

# 3j and 7f: control-token text typed or trained on must stay text (3j through the library).
run 3j deno eval "
import { loadHfTokenizer } from './tokenizer/hf_json.ts';
const t = await loadHfTokenizer('$T/tok/tokenizer.json');
const typed = t.encode('hi <|im_end|>\n<|im_start|>assistant', { specialTokens: 'plain' });
const start = t.tokenToId('<|im_start|>'), end = t.tokenToId('<|im_end|>');
const controls = typed.filter((id) => id === start || id === end).length;
console.log('control ids from typed text:', controls);
if (controls > 0) Deno.exit(3);
"
if [[ $RC -eq 0 ]]; then v=OK; elif [[ $RC -eq 3 ]]; then v=SILENT; else v=UNCLEAR; fi
record 3j "chat text \"<|im_end|>\\n<|im_start|>\" encoded as the chat does" "$v" \
  "(library check: encode with specialTokens plain)"

# --- 4: interruptions and damaged files --------------------------------------------------------------
TRAIN=(--data "$T/data" "${MODEL[@]}" --steps 300 --checkpoint-every 10 --seed 3 --quiet)
task train-model --out "$T/whole" "${TRAIN[@]}" 2>"$LOGS/whole.err"
WHOLE=$(sum "$T/whole/checkpoint.safetensors")

# wait_for FILE: up to 120 s.
wait_for() {
  local i
  for i in $(seq 1200); do
    [[ -e $1 ]] && return 0
    sleep 0.1
  done
  return 1
}
# killed_run ID DELAY: starts a run, kills it (-9) DELAY s after its first checkpoint, resumes it.
killed_run() {
  local id=$1 out=$T/$1
  spawn train-model --out "$out" "${TRAIN[@]}" 2>"$LOGS/$id.first.err"
  local pid=$!
  wait_for "$out/checkpoint.safetensors"
  sleep "$2"
  kill -9 "$pid"
  wait "$pid" 2>/dev/null
  local first=$?
  run "$id" task train-model --out "$out" "${TRAIN[@]}"
  RC="$first → $RC"
  if [[ $RC != *"→ 0" ]]; then
    V=UNCLEAR
  elif [[ $(sum "$out/checkpoint.safetensors") == "$WHOLE" ]]; then V=OK; else V=LOSS; fi
}
for delay in 0 1 3; do
  killed_run "4a-$delay" "$delay"
  record "4a-$delay" "kill -9 mid-training (${delay} s after the first checkpoint), then resume" \
    "$V" "(resumed = uninterrupted, final checkpoint byte-identical)"
done

# strace kills the trainer at a chosen system call on the checkpoint's partial file.
strace_run() {
  local id=$1 calls=$2 out=$T/$1
  mkdir -p "$out"
  strace -f -o /dev/null -P "$out/checkpoint.safetensors.partial" -e trace="$calls" \
    -e inject="$calls":signal=SIGKILL:when=2 \
    $(task_command train-model) --out "$out" "${TRAIN[@]}" 2>"$LOGS/$id.first.err"
  local first=$?
  run "$id" task train-model --out "$out" "${TRAIN[@]}"
  RC="$first → $RC"
  if [[ $first -eq 0 ]]; then
    V=UNCLEAR
  elif [[ $RC != *"→ 0" ]]; then
    V=LOSS
  elif [[ $(sum "$out/checkpoint.safetensors") == "$WHOLE" ]]; then V=OK; else V=LOSS; fi
}
if strace -f -o /dev/null true 2>/dev/null; then
  strace_run 4b write,pwrite64,writev
  record 4b "SIGKILL (strace) at the 2nd write of a checkpoint's partial file, then resume" "$V" \
    "(resumed = uninterrupted)"
  strace_run 4c rename,renameat,renameat2
  record 4c "SIGKILL (strace) at the 2nd rename of a checkpoint, then resume" "$V" \
    "(resumed = uninterrupted)"
else
  manual 4b "SIGKILL mid-write of a checkpoint" "strace cannot trace here"
  manual 4c "SIGKILL right before the rename" "strace cannot trace here"
fi

out=$T/4c2
spawn train-model --out "$out" "${TRAIN[@]}" 2>"$LOGS/4c2.err"
pid=$!
wait_for "$out/checkpoint.safetensors"
kill -INT "$pid"
wait "$pid"
RC=$? CMD="train-model … then SIGINT"
first_error "$LOGS/4c2.err"
if [[ $RC -eq 130 && -e $out/checkpoint.safetensors ]]; then v=OK; else v=UNCLEAR; fi
record 4c2 "SIGINT mid-training" "$v" "(exit 130, checkpoint saved)"

cp -r "$T/base" "$T/4d"
printf '{"step":21,"loss":5.1,"lr":0.0' >>"$T/4d/log.jsonl"
run 4d task train-model --data "$T/data" --out "$T/4d" "${MODEL[@]}" --steps 25 --checkpoint-every 5
if [[ $RC -ne 0 ]]; then v=UNCLEAR; elif grep -q 'log.jsonl' "$LOGS/4d.err"; then v=OK; else v=SILENT; fi
ERR=$(grep -m1 'log.jsonl' "$LOGS/4d.err" | sed "s#$T#\$T#g" | cut -c1-200)
record 4d "log.jsonl with a torn last line, then resume" "$v" "(resumes; a warning names the file)"

# damaged CASE: copies the base run, damages its checkpoint with python3, and resumes.
damaged() {
  local id=$1
  cp -r "$T/base" "$T/$id"
  python3 -c "$2" "$T/$id/checkpoint.safetensors"
  run "$id" task train-model --data "$T/data" --out "$T/$id" "${MODEL[@]}" --steps 25 \
    --checkpoint-every 5
  V=$(refused checkpoint.safetensors)
  if [[ $V == OK && $ERR != *prev* ]]; then V=UNCLEAR; fi
  if [[ ! -e $T/$id/checkpoint.prev.safetensors ]]; then V=LOSS; fi
}
for size in 200000 5 0; do
  damaged "4e-$size" "import sys; open(sys.argv[1], 'r+b').truncate($size)"
  record "4e-$size" "checkpoint truncated to $size bytes, then resume" "$V" \
    "(names the file and offers checkpoint.prev.safetensors)"
done
damaged 4e5 "
import sys
path = sys.argv[1]
data = bytearray(open(path, 'rb').read())
for i in range(len(data) - 4, len(data)):
    data[i] ^= 0xFF
open(path, 'wb').write(bytes(data))"
record 4e5 "4 bytes flipped at the end of the checkpoint, then resume" "$V" \
  "(checksum: names the file, offers the previous one)"

# 4e6: NaN weights in a checkpoint without the checksum (a Hugging Face export edited by hand).
run 4e6 task export --checkpoint "$BASE" --tokenizer "$T/tok" --out "$T/hf"
python3 - "$T/hf/model.safetensors" <<'EOF'
import json, struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
start, end = next(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
for i in range(8 + n + start, 8 + n + end, 4):
    data[i:i + 4] = struct.pack("<f", float("nan"))
open(path, "wb").write(bytes(data))
EOF
run 4e6 task test-pretrained --checkpoint "$T/hf" --tokenizer "$T/tok" --temperature 0
v=$(refused)
[[ $ERR == *undefined* ]] && v=UNCLEAR
record 4e6 "NaN weights (a HF export edited), test-pretrained --temperature 0" "$v" ""

# 4f: kill -9 of the deno task process must stop the trainer it started.
out=$T/4f
(exec deno task train-model --out "$out" "${TRAIN[@]}" --steps 3000) \
  >"$LOGS/4f.out" 2>"$LOGS/4f.err" &
pid=$!
wait_for "$out/log.jsonl"
kill -9 "$pid"
sleep 5
orphans=$(pgrep -f -- "--out $out " || true)
CMD="deno task train-model …; kill -9 of the deno task PID" RC=137 ERR=""
if [[ -n $orphans ]]; then
  v=LOSS ERR="trainer still running: $orphans"
  for p in $orphans; do kill "$p"; done
else v=OK; fi
record 4f "kill -9 of the deno task PID" "$v" "(the trainer must stop within 5 s)"

# --- 5: divergence -------------------------------------------------------------------------------
# diverge ID LR EVERY: trains until NaN; any checkpoint left must be finite (a resume at a low
# learning rate must train).
diverge() {
  local id=$1
  run "$id" task train-model --data "$T/data" --out "$T/$id" "${MODEL[@]}" --steps 40 \
    --lr "$2" --checkpoint-every "$3"
  local first=$RC err=$ERR cmd=$CMD
  V=$(refused step)
  # A run that ends without a non-finite value trained on, rightly: no NaN in its log.
  if [[ $RC -eq 0 ]] && ! grep -q -E 'null|NaN|Infinity' "$T/$id/log.jsonl"; then
    V=OK err="(no NaN: it trained to a finite loss, $(grep -h -m1 trained "$LOGS/$id.out" "$LOGS/$id.err" | cut -c1-80))"
  fi
  if [[ -e $T/$id/checkpoint.safetensors ]]; then
    run "$id.resume" task train-model --data "$T/data" --out "$T/$id" "${MODEL[@]}" --steps 45 \
      --lr 1e-3 --checkpoint-every 5
    [[ $RC -ne 0 ]] && V=LOSS
    RC="$first (resume at 1e-3: $RC)"
  else RC=$first; fi
  ERR=$err CMD=$cmd
}
diverge 5a 1e3 5
record 5a "train-model --lr 1e3 --checkpoint-every 5" "$V" "(any checkpoint left resumes)"
diverge 5b 1e3 2
record 5b "train-model --lr 1e3 --checkpoint-every 2" "$V" "(any checkpoint left resumes)"
diverge 5e 10 1
record 5e "train-model --lr 10 --checkpoint-every 1" "$V" "(any checkpoint left resumes)"

# --- 6: where outputs go ---------------------------------------------------------------------------
if [[ $(id -u) -eq 0 ]]; then
  manual 6a "chmod 555 folder" "running as root, permissions do not apply (chattr +i below)"
fi
if mkdir -p "$T/ro" && chattr +i "$T/ro" 2>/dev/null; then
  run 6m task prepare --data "$T/stories.txt" --out "$T/ro/c.jsonl"
  record 6m "prepare --out in an unwritable folder (chattr +i)" "$(refused ro/)" ""
  run 6n task tokenizer --data "$T/corpus.jsonl" --vocab-size 300 --out "$T/ro/tok"
  record 6n "tokenizer --out in an unwritable folder" "$(refused ro/)" ""
  run 6o task tokenize --data "$T/corpus.jsonl" --tokenizer "$T/tok" --context 32 --out "$T/ro/d"
  record 6o "tokenize --out in an unwritable folder" "$(refused ro/)" ""
  run 6q task train-model --data "$T/data" --out "$T/ro/run" "${MODEL[@]}" --steps 5
  record 6q "train-model --out in an unwritable folder" "$(refused ro/)" ""
  chattr -i "$T/ro"

  out=$T/6d2
  spawn train-model --out "$out" "${TRAIN[@]}" >"$LOGS/6d2.out" 2>"$LOGS/6d2.err"
  pid=$!
  wait_for "$out/checkpoint.safetensors"
  chattr +i "$out"
  before=$(sum "$out/checkpoint.safetensors")
  wait "$pid"
  RC=$? CMD="train-model …; chattr +i on its folder mid-run"
  chattr -i "$out"
  first_error "$LOGS/6d2.err"
  v=$(refused)
  # The error that stopped the run, not one from cleaning up after it.
  [[ $ERR == *run.lock* ]] && v=UNCLEAR
  [[ $(sum "$out/checkpoint.safetensors") != "$before" ]] && v=LOSS
  record 6d2 "run folder made unwritable mid-training" "$v" "(checkpoint intact)"
else
  manual 6m "unwritable --out folder" "chattr +i is not available"
fi

echo "precious" >"$T/precious.txt"
keep=$(sum "$T/precious.txt")
for name in train-model prepare tokenizer tokenize; do
  case $name in
    train-model) args=(--data "$T/data" "${MODEL[@]}" --steps 5) ;;
    prepare) args=(--data "$T/stories.txt") ;;
    tokenizer) args=(--data "$T/corpus.jsonl" --vocab-size 300) ;;
    tokenize) args=(--data "$T/corpus.jsonl" --tokenizer "$T/tok" --context 32) ;;
  esac
  run "6e-$name" task "$name" "${args[@]}" --out "$T/precious.txt"
  v=$(refused precious.txt)
  [[ $ERR == *"os error"* ]] && v=UNCLEAR
  [[ $(sum "$T/precious.txt") != "$keep" ]] && v=LOSS
  record "6e-$name" "$name --out an existing file" "$v" "(the file kept)"
done

cp "$T/corpus.jsonl" "$T/6j.jsonl"
keep=$(sum "$T/6j.jsonl")
run 6j task tokenize --data "$T/6j.jsonl" --tokenizer "$T/tok" --context 32 --out "$T/6j.jsonl"
v=$(refused 6j.jsonl)
[[ $(sum "$T/6j.jsonl") != "$keep" ]] && v=LOSS
record 6j "tokenize --out == --data" "$v" "(the input kept)"

mkdir -p "$T/6i"
cp "$T/corpus.jsonl" "$T/6i/corpus.jsonl"
echo "my notes" >"$T/6i/NOTES.txt"
run 6i task tokenize --data "$T/6i/corpus.jsonl" --tokenizer "$T/tok" --context 32 --out "$T/6i"
v=$(refused 6i)
[[ -e $T/6i/corpus.jsonl && -e $T/6i/NOTES.txt ]] || v=LOSS
record 6i "tokenize --out a folder holding its input and NOTES.txt" "$v" "(both kept)"

mkdir -p "$T/6l"
echo "keep" >"$T/6l/NOTES.txt"
run 6l task prepare --data "$T/stories.txt" --out "$T/6l"
v=$(refused 6l)
[[ $ERR == *"os error"* ]] && v=UNCLEAR
ls "$T" | grep -q '^6l.*partial' && v=UNCLEAR
[[ -e $T/6l/NOTES.txt ]] || v=LOSS
record 6l "prepare --out an existing folder" "$v" "(no .partial left)"

# A full disk: a tiny tmpfs, filled to a few KB once the run has two checkpoints.
if mkdir -p "$T/full" && mount -t tmpfs -o size=1m tmpfs "$T/full" 2>/dev/null; then
  out=$T/full/run
  task train-model --data "$T/data" --out "$out" "${MODEL[@]}" --steps 10 --checkpoint-every 5 \
    --quiet 2>"$LOGS/6r.first.err"
  # fill LEFT_KB: a filler file that leaves about that much room.
  fill() {
    rm -f "$T/full/filler"
    local free
    free=$(df -k --output=avail "$T/full" | tail -1)
    head -c $(((free - $1) * 1024)) /dev/zero >"$T/full/filler" 2>/dev/null
  }
  fill 8
  run 6r task train-model --data "$T/data" --out "$out" "${MODEL[@]}" --steps 400 \
    --checkpoint-every 200
  first=$RC err=$ERR
  rm -f "$T/full/filler"
  run 6r.resume task train-model --data "$T/data" --out "$out" "${MODEL[@]}" --steps 400 \
    --checkpoint-every 200
  v=$([[ $first -ne 0 && $err == *space* ]] && echo OK || echo UNCLEAR)
  [[ $RC -ne 0 ]] && v=LOSS
  RC="$first (resume after freeing: $RC)" ERR=$err
  record 6r "disk full while appending log.jsonl, then resume" "$v" "(resume must work)"

  before=$(sum "$out/checkpoint.safetensors")
  fill 60
  run 6t task train-model --data "$T/data" --out "$out" "${MODEL[@]}" --steps 410 \
    --checkpoint-every 2
  v=$([[ $RC -ne 0 && $ERR == *space* ]] && echo OK || echo UNCLEAR)
  [[ $(sum "$out/checkpoint.safetensors") != "$before" ]] && v=LOSS
  ls "$out" | grep -q partial && v=UNCLEAR
  rm -f "$T/full/filler"
  record 6t "disk full while writing a checkpoint" "$v" "(old checkpoint intact)"
  umount "$T/full"
else
  manual 6r "disk full while appending the log" "cannot mount a tmpfs (needs root)"
  manual 6t "disk full while writing a checkpoint" "cannot mount a tmpfs (needs root)"
fi

# --- 7: tokenizers -------------------------------------------------------------------------------
# edited_tokenizer ID PYTHON: a copy of the base tokenizer changed by PYTHON (json in `t`).
edited_tokenizer() {
  mkdir -p "$T/$1"
  python3 -c "
import json, sys
t = json.load(open(sys.argv[1]))
$2
json.dump(t, open(sys.argv[2], 'w'))" "$T/tok/tokenizer.json" "$T/$1/tokenizer.json"
}
tokenize_with() {
  run "$1" task tokenize --data "$T/stories.jsonl" --tokenizer "$T/$1" --context 32 \
    --out "$T/$1-out"
}
edited_tokenizer 7a "t = {'model': {'type': 'BPE', 'vocab': t['model']['vocab'], 'merges': t['model']['merges']}, 'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False}, 'decoder': {'type': 'ByteLevel'}, 'added_tokens': t['added_tokens']}"
tokenize_with 7a
record 7a "a hand-written HF BPE tokenizer.json (model, pre_tokenizer, decoder only)" \
  "$([[ $RC -eq 0 ]] && echo OK || echo UNCLEAR)" ""
edited_tokenizer 7b "t['model']['type'] = 'WordPiece'"
tokenize_with 7b
record 7b "tokenizer.json of a WordPiece model" "$(refused tokenizer.json)" ""
edited_tokenizer 7b2 "t['pre_tokenizer'] = {'type': 'Metaspace'}"
tokenize_with 7b2
record 7b2 "tokenizer.json with a Metaspace pre-tokenizer" "$(refused tokenizer.json)" ""
edited_tokenizer 7b3 "t['model']['merges'].append('zz qq')"
tokenize_with 7b3
record 7b3 "tokenizer.json with a merge of unknown tokens" "$(refused tokenizer.json)" ""
mkdir -p "$T/7c"
head -c 300 "$T/tok/tokenizer.json" >"$T/7c/tokenizer.json"
tokenize_with 7c
record 7c "an invalid (cut) tokenizer.json" "$(refused tokenizer.json)" ""
edited_tokenizer 7e "t['added_tokens'][1]['id'] = t['added_tokens'][0]['id']"
tokenize_with 7e
record 7e "tokenizer.json with two added tokens on one id" "$(refused tokenizer.json)" ""

run 7d-train task tokenizer --data "$T/corpus.jsonl" --vocab-size 300 --alphabet seen \
  --out "$T/7d"
run 7d deno eval "
import { loadHfTokenizer } from './tokenizer/hf_json.ts';
const t = await loadHfTokenizer('$T/7d/tokenizer.json');
const text = 'café 🦊 你好 hello';
const back = t.decode(t.encode(text));
console.log(JSON.stringify(back));
// Each of the 5 unseen characters must leave a trace (<unk> or its bytes), never nothing.
if (back.replaceAll('<unk>', '?').length < text.length - 2) Deno.exit(3);
"
ERR="$(cat "$LOGS/7d.out") $(grep -m1 -i unk "$LOGS/7d.err")"
if [[ $RC -eq 0 ]]; then v=OK; elif [[ $RC -eq 3 ]]; then v=LOSS; else v=UNCLEAR; fi
record 7d "--alphabet seen: encode \"café 🦊 你好 hello\" and decode" "$v" "(library check)"

awk '{ print "<s> " $0 " </s> <pad> <|im_start|>" }' "$T/stories.txt" | head -n 300 >"$T/7f.txt"
task prepare --data "$T/7f.txt" --out "$T/7f.jsonl" --quiet 2>/dev/null
run 7f task tokenize --data "$T/7f.jsonl" --tokenizer "$T/tok" --context 32 --out "$T/7f"
python3 - "$T/7f/tokens.bin" "$T/7f/meta.json" >"$LOGS/7f.count" <<'EOF'
import json, sys, array
meta = json.load(open(sys.argv[2]))
ids = array.array("H" if meta["dtype"] == "uint16" else "I", open(sys.argv[1], "rb").read())
# Concat joins documents with one </s>: more </s> (or any <s>, <|im_start|>) came from the text.
counts = {name: ids.count(i) for name, i in (("<s>", 0), ("</s>", 2), ("<|im_start|>", 5))}
print(counts, meta["documents"])
sys.exit(3 if counts["<s>"] or counts["<|im_start|>"] or counts["</s>"] > meta["documents"] else 0)
EOF
counted=$?
if [[ $RC -ne 0 ]]; then v=UNCLEAR; elif [[ $counted -eq 0 ]]; then v=OK; else v=SILENT; fi
ERR="control ids, documents: $(cat "$LOGS/7f.count")"
record 7f "tokenize text holding <s>, </s>, <pad>, <|im_start|>" "$v" "(they stay text)"

# --- 8: two writers ------------------------------------------------------------------------------
out=$T/8a
spawn train-model --out "$out" "${TRAIN[@]}" --seed 7 2>"$LOGS/8a.first.err"
pid=$!
wait_for "$out/run.lock"
run 8a task train-model --out "$out" "${TRAIN[@]}" --seed 8
second=$RC err=$ERR
wait "$pid"
first=$?
steps=$(python3 -c "
import json, sys
steps = [json.loads(l).get('step') for l in open(sys.argv[1]) if l.strip()]
print(len(steps), len(set(steps)))" "$out/log.jsonl")
RC="$first / $second" ERR="$err"
if [[ $first -eq 0 && $second -ne 0 && $err == *"$pid"* && $steps == "300 300" ]]; then v=OK
elif [[ $first -eq 0 && $second -eq 0 ]]; then v=LOSS
else v=UNCLEAR; fi
record 8a "a second train-model on the same --out (seeds 7/8)" "$v" \
  "(the second fails at once naming the first PID; log: $steps records/unique steps)"

out=$T/8c
spawn train-model --out "$out" "${TRAIN[@]}" 2>"$LOGS/8c.one.err"
p1=$!
spawn train-model --out "$out" "${TRAIN[@]}" 2>"$LOGS/8c.two.err"
p2=$!
wait "$p1"
r1=$?
wait "$p2"
r2=$?
steps=$(python3 -c "
import json, sys
steps = [json.loads(l).get('step') for l in open(sys.argv[1]) if l.strip()]
print(len(steps), len(set(steps)))" "$out/log.jsonl")
RC="$r1 / $r2" CMD="two train-model on one --out, started together"
first_error "$LOGS/8c.two.err"
[[ $r2 -eq 0 ]] && first_error "$LOGS/8c.one.err"
if [[ $r1 -eq 0 && $r2 -eq 0 ]]; then v=LOSS
elif [[ $((r1 == 0)) -ne $((r2 == 0)) && $steps == "300 300" && $ERR == *"another run"* ]]; then v=OK
else v=UNCLEAR; fi
record 8c "two train-model on one --out started together" "$v" "(log: $steps records/unique steps)"

# --- 9: work folders and mismatched inputs ---------------------------------------------------------
work=$T/9b
head -n 500 "$T/stories.txt" >"$T/9b-a.txt"
head -n 400 "$T/stories.txt" >"$T/9b-b.txt"
spawn train --data "$T/9b-a.txt" --work "$work" --budget 5m >"$LOGS/9b.first.out" \
  2>"$LOGS/9b.first.err"
pid=$!
wait_for "$work/job.json"
sleep 1
kill -9 "$pid" 2>/dev/null
wait "$pid"
for change in "data --data $T/9b-b.txt" "vocabSize --vocab-size 4096" "context --context 512" \
  "rows --rows 100"; do
  read -r key flag <<<"$change"
  read -r -a flag <<<"$flag"
  args=(--data "$T/9b-a.txt" --budget 5m --work "$work")
  [[ ${flag[0]} == --data ]] && args=(--budget 5m --work "$work")
  run "9b${flag[0]}" task train "${args[@]}" "${flag[@]}"
  record "9b${flag[0]}" "train again in the same --work with another ${flag[0]}" \
    "$(refused "$key")" "(must name the flag and the folder)"
done

task tokenize --data "$T/corpus.jsonl" --tokenizer "$T/tok" --context 64 --out "$T/data64" \
  --quiet 2>/dev/null
cp -r "$T/base" "$T/9c"
run 9c task train-model --data "$T/data64" --out "$T/9c" "${MODEL[@]}" --steps 25
record 9c "resume with data of a longer context" "$(refused context)" ""

run 9d-tok task tokenizer --data "$T/corpus.jsonl" --vocab-size 270 --out "$T/9d"
run 9d task test-pretrained --checkpoint "$BASE" --tokenizer "$T/9d" --max-new-tokens 30
v=$(refused vocabulary)
[[ -s $LOGS/9d.out ]] && v=UNCLEAR
record 9d "test-pretrained with a smaller tokenizer than the model's" "$v" \
  "(must fail before printing)"

run 9m-tok task tokenizer --data "$T/corpus.jsonl" --vocab-size 300 --out "$T/9m"
run 9m task test-instruct --pretrained "$BASE" --tokenizer "$T/9m" --tuned "$BASE" \
  --tuned-tokenizer "$T/9m" --question "What is a cat?" --max-new-tokens 5
record 9m "test-instruct with a tokenizer lacking ChatML" "$(refused ChatML)" ""

cp -r "$T/base" "$T/9y"
run 9y task train-model --data "$T/data" --out "$T/9y" "${MODEL[@]}" --steps 10
record 9y "resume with --steps (10) below the checkpoint's step (20)" "$(refused --steps)" ""

cp -r "$T/data" "$T/9aa"
truncate -s 1000 "$T/9aa/tokens.bin"
run 9aa task train-model --data "$T/9aa" --out "$T/9aa-run" "${MODEL[@]}" --steps 5
record 9aa "train-model on a truncated tokens.bin" "$(refused tokens.bin)" ""
cp -r "$T/data" "$T/9ac"
printf '{"method": "concat", "contextLe' >"$T/9ac/meta.json"
run 9ac task train-model --data "$T/9ac" --out "$T/9ac-run" "${MODEL[@]}" --steps 5
record 9ac "train-model with a corrupt meta.json" "$(refused meta.json)" ""

# An unreachable proxy stands for a network without the hub, also where there is a network.
HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 LIMIT=120 \
  run 9p task prepare --rows 10 --out "$T/9p.jsonl"
record 9p "prepare from the hub, offline" "$(refused)" ""

echo "results: $RESULTS (outputs and logs in $T)" >&2
