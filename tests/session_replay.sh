#!/bin/sh
# Replays the example session in sessions/ on the real model. The cache is
# calibrated here with 4096 tokens, windows of 256 and the default seed, so it is
# the same on every run. The numbers must match values recorded from a run,
# replaying twice or through the journal must print the same bytes, and the sites
# must agree with catscope report for the same transform and quantizer.
. "$srcdir/tests/lib.sh"
require_data

example="$srcdir/sessions/stories260K-cat.json"
cache="$scratch/stories260K-4096.cache"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$cache" --tokens 4096 --ctx 256 \
	>/dev/null 2>&1 || fail "calibrate failed"

# The session names its model relative to itself (../../shared/data), which is
# right only in a checkout beside the shared data, so the test passes both files.
replay() {
	"$CATSCOPE" replay "$example" --batch --model "$MODEL" --calib "$cache" "$@"
}
replay --format csv >"$scratch/a.csv" 2>"$scratch/a.err" || fail "replay failed: $(cat "$scratch/a.err")"
[ -s "$scratch/a.err" ] && fail "replay printed to stderr: $(cat "$scratch/a.err")"
[ "$(grep -c ',ok,' "$scratch/a.csv")" -eq 20 ] || fail "expected 20 computed sites"

# Measured SQNR (dB) recorded from a run of this build; 0.01 dB is far below any
# change of transform, quantizer or calibration.
check() {
	got=$(awk -F, -v b="$1" -v s="$2" '$1 == b && $2 == s { print $4, $16 }' "$scratch/a.csv")
	echo "$got" | awk -v t="$3" -v want="$4" '{ exit !($1 == t && $2 - want < 0.01 && want - $2 < 0.01) }' ||
		fail "blk.$1.$2: expected $3 with $4 dB, got '$got'"
}
check 0 attn_in hadamard 26.779574
check 0 ffn_down cat 21.169607
check 2 ffn_down cat 21.703519
check 4 ffn_down cat 20.979556
check 1 ffn_in none 18.358802
check 4 attn_out none 19.173614

# Deterministic: the same session twice gives the same bytes, and the journal
# (with its undo) reaches the same state as the saved final state.
replay --format csv >"$scratch/b.csv" || fail "second replay failed"
cmp -s "$scratch/a.csv" "$scratch/b.csv" || fail "two replays of one session differ"
replay --format csv --from-journal >"$scratch/j.csv" 2>"$scratch/j.err" || fail "replay --from-journal failed"
[ -s "$scratch/j.err" ] && fail "--from-journal warned: $(cat "$scratch/j.err")"
cmp -s "$scratch/a.csv" "$scratch/j.csv" || fail "--from-journal and the final state differ"

# The same numbers as catscope report for the sites that share its settings.
"$CATSCOPE" report "$MODEL" --calib "$cache" --transform cat --weights 4 --acts 8 --format csv \
	>"$scratch/report.csv" || fail "report failed"
grep ',ffn_down,' "$scratch/report.csv" >"$scratch/report.rows"
grep ',ffn_down,' "$scratch/a.csv" >"$scratch/replay.rows"
cmp -s "$scratch/report.rows" "$scratch/replay.rows" || fail "replay and report disagree on the ffn_down rows"

# The table and JSON formats carry the same value.
replay >"$scratch/a.txt" || fail "replay --format table failed"
grep '^blk.0.ffn_down ' "$scratch/a.txt" | grep -q ' 21.17 ' || fail "table lacks 21.17 for blk.0.ffn_down"
# The session mixes transforms, so its summary is labelled mixed and counts each one.
# A report of one transform keeps the label of that transform and no counts.
grep -q '^summary mixed      sites 20  mean measured SQNR [0-9.]* dB  worst [0-9.]* dB at blk\.[0-9]\.[a-z_]*  transforms hadamard 1, none 14, cat 5$' \
	"$scratch/a.txt" || fail "summary of a mixed session: $(grep '^summary' "$scratch/a.txt")"
"$CATSCOPE" report "$MODEL" --calib "$cache" --transform cat >"$scratch/report.txt" || fail "report failed"
grep -q '^summary cat        sites 20  mean measured SQNR [0-9.]* dB  worst [0-9.]* dB at blk\.[0-9]\.[a-z_]*$' \
	"$scratch/report.txt" || fail "summary of one transform: $(grep '^summary' "$scratch/report.txt")"
replay --format json >"$scratch/a.json" || fail "replay --format json failed"
grep -q '"meas_db"' "$scratch/a.json" || fail "JSON has no meas_db"

# A cache calibrated on fewer tokens has other statistics: rejected with both
# provenance hashes, unless --force.
other="$scratch/other.cache"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$other" --tokens 2048 --ctx 256 \
	>/dev/null 2>&1 || fail "calibrate of the second cache failed"
"$CATSCOPE" replay "$example" --batch --model "$MODEL" --calib "$other" >/dev/null 2>"$scratch/err"
[ $? -eq 1 ] || fail "a cache with other provenance was accepted"
grep -q "stories260K-cat.json: the calibration cache .*other.cache has provenance hash [0-9a-f]\{16\}, but the session was saved with a cache of provenance hash f10146a6c4918f35 .*; use --force to replay anyway" \
	"$scratch/err" || fail "cache mismatch message: $(cat "$scratch/err")"
"$CATSCOPE" replay "$example" --batch --model "$MODEL" --calib "$other" --force >/dev/null 2>"$scratch/err" ||
	fail "--force did not override the cache mismatch"
grep -q "^catscope: warning: .*provenance hash" "$scratch/err" || fail "--force printed no warning: $(cat "$scratch/err")"
grep -q -e "use --force" "$scratch/err" && fail "the warning advises --force although it was given: $(cat "$scratch/err")"

# catscope replay without --batch and catscope --replay need a terminal; --format
# without --batch is a usage error.
"$CATSCOPE" replay "$example" --format csv >/dev/null 2>&1
[ $? -eq 2 ] || fail "--format without --batch is not a usage error"
echo "session replay: all checks passed"
