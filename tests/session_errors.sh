#!/bin/sh
# Bad session files and mismatched models on the command line: each gives exit 1
# and one line on stderr naming the file and the problem, never a crash.
. "$srcdir/tests/lib.sh"
require_data

example="$srcdir/sessions/stories260K-cat.json"
# A session without cache, so that no calibration is needed here.
good="$scratch/good.json"
sed -e '/"calib": {/,/^  },$/c\
  "calib": null,' "$example" >"$good"
"$CATSCOPE" replay "$good" --batch --model "$MODEL" --format csv >/dev/null 2>"$scratch/err" ||
	fail "the valid session was rejected: $(cat "$scratch/err")"

# Runs replay on a copy of the valid file edited by a sed script. It expects exit 1
# and one stderr line that names the file and contains the text.
expect_error() {
	name=$1 script=$2 text=$3
	shift 3
	file="$scratch/$name.json"
	sed -e "$script" "$good" >"$file"
	"$CATSCOPE" replay "$file" --batch --model "$MODEL" "$@" >/dev/null 2>"$scratch/err"
	status=$?
	[ "$status" -eq 1 ] || fail "$name: exit status $status, expected 1"
	[ "$(wc -l <"$scratch/err")" -eq 1 ] || fail "$name: expected one line, got: $(cat "$scratch/err")"
	grep -q -F "$file" "$scratch/err" || fail "$name: the message does not name the file: $(cat "$scratch/err")"
	grep -q -F -- "$text" "$scratch/err" || fail "$name: the message lacks '$text': $(cat "$scratch/err")"
}

head -c 300 "$good" >"$scratch/cut.json"
"$CATSCOPE" replay "$scratch/cut.json" --batch --model "$MODEL" >/dev/null 2>"$scratch/err"
[ $? -eq 1 ] || fail "truncated: expected exit 1"
grep -q "cut.json:[0-9]*:[0-9]*: invalid JSON" "$scratch/err" || fail "truncated: $(cat "$scratch/err")"
[ "$(wc -l <"$scratch/err")" -eq 1 ] || fail "truncated: more than one line"

expect_error wrong-type 's/"reverse": false/"reverse": "no"/' 'ui.reverse: expected true or false, found a string'
expect_error version-type 's/"version": 1/"version": "1"/' 'version: expected an integer, found a string'
expect_error unknown-transform 's/"transform": "hadamard"}/"transform": "fft"}/' 'sites[0].transform: '
expect_error no-such-site 's/"site": "blk.4.ffn_down"/"site": "blk.12.ffn_down"/' \
	'sites[5].site: the model has no site blk.12.ffn_down'
expect_error journal-site 's/"site": "blk.0.attn_in", "transform": "smooth"/"site": "blk.7.attn_in", "transform": "smooth"/' \
	'journal[2].site: the model has no site blk.7.attn_in' --from-journal
expect_error repeated-quant 's/"quant": "w4,a8,rtn",/"quant": "w4,a8,w8,rtn",/' \
	'sets the weight quantizer twice (w4 and w8)'
expect_error infinite-damp 's/"quant": "w4,a8,rtn",/"quant": "w4,a8,gptq,damp=inf",/' \
	'invalid dampening "inf"'
expect_error nan-damp 's/"quant": "w4,a8,rtn",/"quant": "w4,a8,gptq,damp=nan",/' \
	'expected a fraction of the mean Hessian diagonal in (0, 1]'
# Without --from-journal the journal is checked too, so a session whose journal
# cannot be re-run is not replayed and saved again.
expect_error journal-site-final 's/"site": "blk.0.attn_in", "transform": "smooth"/"site": "blk.7.attn_in", "transform": "smooth"/' \
	'journal[2].site: the model has no site blk.7.attn_in'
expect_error journal-time 's/"t": "2026-12-04T21:10:40Z"/"t": "2026-12-04 21:10:40"/' \
	"journal[4].t: '2026-12-04 21:10:40' is not an ISO 8601 UTC time"
expect_error journal-undo-field 's/"action": "undo"}/"action": "undo", "transform": "cat"}/' \
	"journal[5].transform: 'transform' is not a field of undo actions"
expect_error journal-undo-first 's/"action": "set_transform", "site": "blk.0.ffn_down", "transform": "cat"}/"action": "undo"}/' \
	'journal[0]: undo with nothing left to undo'
expect_error version 's/"version": 1/"version": 2/' 'version: version 2 is not supported'
expect_error fingerprint 's/"fingerprint": "e33b6a3ef879b195"/"fingerprint": "0123456789abcdef"/' \
	'model fingerprint 0123456789abcdef, but'
grep -q -F 'use --force to replay anyway' "$scratch/err" || fail "fingerprint: the message does not offer --force"
grep -q -F 'e33b6a3ef879b195' "$scratch/err" || fail "fingerprint: the message lacks the model's value"

# --force replays anyway, with the mismatch as a warning.
"$CATSCOPE" replay "$scratch/fingerprint.json" --batch --model "$MODEL" --force --format csv \
	>"$scratch/forced.csv" 2>"$scratch/err" || fail "--force did not override the fingerprint"
grep -q '^catscope: warning: .*fingerprint' "$scratch/err" || fail "--force printed no warning"
grep -q -e 'use --force' "$scratch/err" && fail "the warning advises --force although it was given: $(cat "$scratch/err")"
[ "$(grep -c ',ok,' "$scratch/forced.csv")" -eq 20 ] || fail "--force printed no report"

# A missing model file: named with the field, and what to do.
"$CATSCOPE" replay "$good" --batch --model "$scratch/nowhere.gguf" >/dev/null 2>"$scratch/err"
[ $? -eq 1 ] || fail "missing model: expected exit 1"
grep -q 'good.json: model.path: cannot read .*nowhere.gguf: No such file or directory; pass --model' "$scratch/err" ||
	fail "missing model: $(cat "$scratch/err")"
[ "$(wc -l <"$scratch/err")" -eq 1 ] || fail "missing model: more than one line"

# A model path from the session is named as written and as resolved from the
# session's directory, whether it is relative or absolute. The expected absolute
# path comes from the shell, independently of catscope.
mkdir -p "$scratch/sub"
sed -e 's|"path": "../../shared/data/stories260K.gguf"|"path": "../moved.gguf"|' "$good" >"$scratch/sub/moved.json"
"$CATSCOPE" replay "$scratch/sub/moved.json" --batch >/dev/null 2>"$scratch/err"
[ $? -eq 1 ] || fail "moved model: expected exit 1"
resolved="$(cd "$scratch" && pwd -P)/moved.gguf"
grep -q -F "moved.json: model.path: cannot read '../moved.gguf' (resolved to $resolved): No such file or directory; pass --model" \
	"$scratch/err" || fail "moved model: $(cat "$scratch/err")"
[ "$(wc -l <"$scratch/err")" -eq 1 ] || fail "moved model: more than one line"
sed -e "s|\"path\": \"../../shared/data/stories260K.gguf\"|\"path\": \"$scratch/absent/m.gguf\"|" "$good" >"$scratch/absolute.json"
"$CATSCOPE" replay "$scratch/absolute.json" --batch >/dev/null 2>"$scratch/err"
[ $? -eq 1 ] || fail "absolute model: expected exit 1"
grep -q -F "absolute.json: model.path: cannot read '$scratch/absent/m.gguf' (resolved to $scratch/absent/m.gguf)" \
	"$scratch/err" || fail "absolute model: $(cat "$scratch/err")"

# A session that names a model outside its directory (here through ../) is
# accepted, because users keep models elsewhere.
model_abs="$(cd "$(dirname "$MODEL")" && pwd -P)/$(basename "$MODEL")"
to_root=$(cd "$scratch/sub" && pwd -P | sed -e 's|[^/][^/]*|..|g' -e 's|^/||')
sed -e "s|\"path\": \"../../shared/data/stories260K.gguf\"|\"path\": \"$to_root$model_abs\"|" "$good" \
	>"$scratch/sub/outside.json"
"$CATSCOPE" replay "$scratch/sub/outside.json" --batch --format csv >"$scratch/outside.csv" 2>"$scratch/err" ||
	fail "a model path with ../ was rejected: $(cat "$scratch/err")"
[ "$(grep -c ',ok,' "$scratch/outside.csv")" -eq 20 ] || fail "outside model: no report"

# A missing session file.
"$CATSCOPE" replay "$scratch/absent.json" --batch >/dev/null 2>"$scratch/err"
[ $? -eq 1 ] || fail "missing session: expected exit 1"
grep -q 'absent.json: cannot read the session' "$scratch/err" || fail "missing session: $(cat "$scratch/err")"
echo "session errors: all checks passed"
