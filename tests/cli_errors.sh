#!/bin/sh
# Hostile command lines: repeated or conflicting options, bad output paths, bad
# text inputs and signals. Each must fail fast with the documented exit status and
# one message that names the option or file, never crash or keep computing.
. "$srcdir/tests/lib.sh"
require_data

text="$DATA/tinystories_train_sample.txt"

# Runs catscope with the given arguments and expects the exit status $1 and the
# text $2 somewhere on stderr. Sets $err to the file holding stderr.
expect_status() {
	want=$1 needle=$2
	shift 2
	err="$scratch/err"
	status=0
	"$CATSCOPE" "$@" >"$scratch/out" 2>"$err" || status=$?
	[ "$status" -eq "$want" ] || fail "catscope $*: exit status $status, expected $want: $(cat "$err")"
	grep -q -F -- "$needle" "$err" || fail "catscope $*: stderr lacks '$needle': $(cat "$err")"
}

# A usage error prints exactly one message line and the --help hint.
expect_usage() {
	expect_status 2 "$@"
	[ "$(wc -l <"$err")" -eq 2 ] || fail "catscope $*: expected one message and the hint, got: $(cat "$err")"
}

# --- Quantizer options: a repeat or a conflict is rejected, naming both values.
expect_usage 'sets the group size twice (g2 and g3)' report "$MODEL" --weights 4:g2:g3
expect_usage 'sets the mode twice (sym and asym)' report "$MODEL" --acts 8:sym:asym
expect_usage 'sets the clip ratio twice (clip=0.9 and clip=0.8)' report "$MODEL" --weights 4:clip=0.9:clip=0.8
expect_usage "--wbits '4' and --weights '8' both set the weight bit width" report "$MODEL" --wbits 4 --weights 8
expect_usage "--acts '8' and --abits '4' both set the activation bit width" report "$MODEL" --acts 8 --abits 4
expect_usage "--weights given twice ('4' and '4:g64')" report "$MODEL" --weights 4 --weights 4:g64
expect_usage "--abits given twice ('3' and '5')" eval "$MODEL" "$text" --abits 3 --abits 5
expect_usage "--transform given twice ('cat' and 'none')" eval "$MODEL" "$text" --transform cat --transform none
expect_usage "--wbits given twice ('4' and '8')" export "$MODEL" --calib x --wbits 4 --wbits 8 -o "$scratch/never"
[ ! -e "$scratch/never" ] || fail "a rejected export left $scratch/never"
# The same options once each still work.
"$CATSCOPE" report "$MODEL" --wbits 4 --acts 8:asym:g16:clip=0.9 --format csv >/dev/null 2>"$scratch/err" ||
	fail "report with one of each quantizer option failed: $(cat "$scratch/err")"

# --- A missing option value or an unknown option: one message, not getopt's as well.
expect_usage "catscope report: --format needs a value" report "$MODEL" --format
expect_usage "catscope calibrate: -o needs a value" calibrate "$MODEL" "$text" -o
expect_usage "catscope generate: -n needs a value" generate "$MODEL" -n
expect_usage "catscope eval: --ctx needs a value" eval "$MODEL" "$text" --ctx
expect_usage "catscope export: unknown or ambiguous option '--colour'" export "$MODEL" --colour=1
expect_usage "catscope info: unknown option '-x'" info -x
expect_usage "catscope replay: unknown or ambiguous option '--f'" replay x --f

# --- Output paths are checked before any work. Calibrating the whole text takes far
# longer than the timeout, so a check that only ran at the end would hit it.
mkdir "$scratch/outdir"
mkfifo "$scratch/fifo"
# A name that fits the file system but leaves no room for the temporary name beside it.
long_name="$scratch/$(printf '%0250d' 0)"
for bad in "" "$scratch/missing/x.cache" "$scratch/outdir" "$scratch/outdir/" "$long_name" /dev/null \
	"$scratch/fifo"; do
	status=0
	timeout 10 "$CATSCOPE" calibrate "$MODEL" "$text" -o "$bad" >/dev/null 2>"$scratch/err" || status=$?
	[ "$status" -eq 1 ] || fail "calibrate -o '$bad': exit status $status, expected 1 at once: $(cat "$scratch/err")"
	[ "$(wc -l <"$scratch/err")" -eq 1 ] || fail "calibrate -o '$bad': expected one line, got: $(cat "$scratch/err")"
	grep -q -F -- "-o: $bad" "$scratch/err" || fail "calibrate -o '$bad': the message does not name -o and the path: $(cat "$scratch/err")"
done
grep -q "not a regular file" "$scratch/err" || fail "calibrate -o FIFO: $(cat "$scratch/err")"
[ -p "$scratch/fifo" ] || fail "calibrate -o FIFO replaced the FIFO"
[ -z "$(ls -A "$scratch/outdir")" ] || fail "calibrate -o DIR wrote into the directory"
expect_status 1 "-o: $long_name: the name is 250 bytes long, but at most" \
	calibrate "$MODEL" "$text" -o "$long_name"
# Root ignores directory permissions, so as root this case runs as the user nobody.
as_user=""
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	chmod 755 "$scratch"
	nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
	# Only where nobody can run catscope and read its inputs (not in a clone under /root).
	if $nobody test -x "$CATSCOPE" && $nobody test -r "$MODEL" && $nobody test -r "$text" &&
	   $nobody test -x "$scratch"; then
		as_user=$nobody
	fi
fi
if [ "$(id -u)" -ne 0 ] || [ -n "$as_user" ]; then
	mkdir "$scratch/readonly"
	chmod 555 "$scratch/readonly"
	status=0
	timeout 10 $as_user "$CATSCOPE" calibrate "$MODEL" "$text" -o "$scratch/readonly/x.cache" >/dev/null 2>"$scratch/err" || status=$?
	chmod 755 "$scratch/readonly"
	[ "$status" -eq 1 ] || fail "calibrate into a read-only directory: exit status $status, expected 1"
	grep -q "cannot create files" "$scratch/err" || fail "calibrate into a read-only directory: $(cat "$scratch/err")"
fi
for bad in "" "$scratch/missing/export" "$scratch/outdir/" "$long_name"; do
	expect_status 1 "-o: " export "$MODEL" --calib "$scratch/no.cache" -o "$bad"
	grep -q -F "no.cache" "$err" && fail "export -o '$bad' opened the cache before checking -o"
done

# --- Text that does not fill one window, a --ctx beyond the model and a prompt
# beyond it: the message names the file, option or prompt and what to use instead.
printf 'Once upon a time' >"$scratch/short.txt"
: >"$scratch/empty.txt"
expect_status 1 "short.txt: the text has 5 tokens, fewer than one window of 512; use --ctx 5 or less" \
	eval "$MODEL" "$scratch/short.txt"
expect_status 1 "short.txt and 1 other text file: the text has 5 tokens, fewer than one window of 64" \
	eval "$MODEL" "$scratch/short.txt" "$scratch/empty.txt" --ctx 64
expect_status 1 "empty.txt: the text has 1 token, fewer than one window of 512; pass a longer text" \
	eval "$MODEL" "$scratch/empty.txt"
expect_status 1 "short.txt: the text has 5 tokens, fewer than one window of 512; use --ctx 5 or less" \
	calibrate "$MODEL" "$scratch/short.txt" -o "$scratch/short.cache"
expect_status 1 "--ctx 4096 is longer than the model's context of 2048 tokens; use --ctx 2048 or less" \
	eval "$MODEL" "$scratch/short.txt" --ctx 4096
expect_status 1 "--ctx 4096 is longer than the model's context of 2048 tokens; use --ctx 2048 or less" \
	calibrate "$MODEL" "$scratch/short.txt" --ctx 4096 -o "$scratch/short.cache"
expect_status 1 "--tokens 100 is less than one window of 256 tokens; raise --tokens or lower --ctx" \
	calibrate "$MODEL" "$text" --ctx 256 --tokens 100 -o "$scratch/short.cache"
[ ! -e "$scratch/short.cache" ] || fail "a failed calibrate wrote $scratch/short.cache"
head -c 20000 "$text" >"$scratch/long-prompt.txt"
expect_status 1 "--prompt: the prompt has " generate "$MODEL" --prompt "$(cat "$scratch/long-prompt.txt")" -n 1
grep -q "has a context of 2048; shorten the prompt to at most 2047 tokens" "$err" ||
	fail "generate with a long prompt: $(cat "$err")"
# A prompt that leaves room for a few tokens only: generation stops at the context,
# prints a message and exits with status 0.
head -c 4240 "$text" >"$scratch/near-full-prompt.txt"
expect_status 0 "tokens at the end of the context of $MODEL (2048 tokens with the prompt)" \
	generate "$MODEL" --prompt "$(cat "$scratch/near-full-prompt.txt")" -n 100
grep -q "stopped after [0-9]* of 100 tokens" "$err" ||
	fail "generate up to the context: $(cat "$err")"
"$CATSCOPE" eval "$MODEL" "$scratch/short.txt" --ctx 5 >/dev/null 2>"$scratch/err" ||
	fail "eval of one exact window failed: $(cat "$scratch/err")"

# A small cache for the commands that need one.
cache="$scratch/small.cache"
"$CATSCOPE" calibrate "$MODEL" "$text" -o "$cache" --tokens 1024 --ctx 256 >/dev/null 2>"$scratch/err" ||
	fail "calibrate of the small cache failed: $(cat "$scratch/err")"

# --- export --site: a second transform for the same site is rejected, not last-wins.
expect_usage "--site blk.1.ffn_down given twice ('cat:64' and 'hadamard')" \
	export "$MODEL" --calib "$cache" --site blk.1.ffn_down=cat:64 --site blk.0.attn_in=hadamard \
	--site blk.1.ffn_down=hadamard -o "$scratch/twice"
[ ! -e "$scratch/twice" ] || fail "export with a repeated --site left $scratch/twice"
"$CATSCOPE" export "$MODEL" --calib "$cache" --site blk.1.ffn_down=cat:64 --site blk.1.ffn_in=hadamard \
	-o "$scratch/sites" >/dev/null 2>"$scratch/err" || fail "export with two different --site failed: $(cat "$scratch/err")"

# --- calibrate -o replaces only an earlier cache (or an empty file), never a text, a
# model or a file that a link points to, and it reports the problem before any work.
cp "$scratch/short.txt" "$scratch/notes.txt"
cp "$MODEL" "$scratch/model.gguf"
ln -s notes.txt "$scratch/notes-link.cache"
for kept in notes.txt model.gguf notes-link.cache; do
	expect_status 1 "-o: $scratch/$kept: exists and is not a calibration cache" \
		calibrate "$MODEL" "$text" -o "$scratch/$kept"
	[ "$(wc -l <"$err")" -eq 1 ] || fail "calibrate -o $kept: expected one line, got: $(cat "$err")"
done
cmp -s "$scratch/short.txt" "$scratch/notes.txt" || fail "calibrate -o replaced a text file"
cmp -s "$MODEL" "$scratch/model.gguf" || fail "calibrate -o replaced a model"
[ -L "$scratch/notes-link.cache" ] || fail "calibrate -o replaced a symbolic link"
: >"$scratch/empty.cache"
cp "$cache" "$scratch/earlier.cache"
for replaced in empty.cache earlier.cache; do
	"$CATSCOPE" calibrate "$MODEL" "$text" -o "$scratch/$replaced" --tokens 256 --ctx 256 >/dev/null \
		2>"$scratch/err" || fail "calibrate -o $replaced failed: $(cat "$scratch/err")"
	"$CATSCOPE" info "$scratch/$replaced" >/dev/null 2>"$scratch/err" ||
		fail "calibrate -o $replaced wrote no cache: $(cat "$scratch/err")"
done

# --- An export runs only under eval and generate, which apply its transforms. The
# other commands would read its weights without them and measure another model.
session="$srcdir/sessions/stories260K-cat.json"
for command in "calibrate $scratch/sites $text -o $scratch/of-export.cache" "report $scratch/sites" \
	"export $scratch/sites --calib $cache -o $scratch/export-of-export" \
	"replay $session --batch --model $scratch/sites --calib $cache"; do
	# shellcheck disable=SC2086 # the command is split into words on purpose
	expect_status 1 "$scratch/sites: the directory is a catscope export" $command
	[ "$(wc -l <"$err")" -eq 1 ] || fail "catscope $command: expected one line, got: $(cat "$err")"
done
[ ! -e "$scratch/of-export.cache" ] || fail "calibrate of an export wrote a cache"
[ ! -e "$scratch/export-of-export" ] || fail "export of an export wrote a directory"

# --- A write past the file size limit (ulimit -f, which fails like a full disk) ends
# with a message, removes the temporary file or directory and keeps the earlier output.
mkdir "$scratch/limit"
cp "$cache" "$scratch/limit/old.cache"
"$CATSCOPE" export "$MODEL" --calib "$cache" -o "$scratch/limit/old-export" >/dev/null 2>"$scratch/err" ||
	fail "export before the size limit failed: $(cat "$scratch/err")"
cp "$scratch/limit/old-export/model.safetensors" "$scratch/old-weights"
for command in "calibrate $MODEL $text -o $scratch/limit/old.cache --tokens 512 --ctx 128" \
	"export $MODEL --calib $cache -o $scratch/limit/old-export --force"; do
	status=0
	# shellcheck disable=SC2086 # the command is split into words on purpose
	(ulimit -f 100 && exec "$CATSCOPE" $command) >/dev/null 2>"$scratch/err" || status=$?
	[ "$status" -eq 1 ] || fail "catscope $command past the size limit: exit status $status, expected 1: $(cat "$scratch/err")"
	grep -q "writing failed: File too large" "$scratch/err" ||
		fail "catscope $command past the size limit: $(cat "$scratch/err")"
	[ "$(ls -A "$scratch/limit" | tr '\n' ' ')" = "old-export old.cache " ] ||
		fail "catscope $command past the size limit left: $(ls -A "$scratch/limit")"
done
cmp -s "$cache" "$scratch/limit/old.cache" || fail "calibrate past the size limit changed the earlier cache"
cmp -s "$scratch/old-weights" "$scratch/limit/old-export/model.safetensors" ||
	fail "export past the size limit changed the earlier export"

# --- Signals: a long command stops, removes what it started to write, leaves the
# previous output as it was and exits 128 plus the signal number.
# Starts catscope with the arguments after $2, sends it the signal $1 two seconds
# later, while it computes, and expects the exit status $2.
interrupt() {
	signal=$1 want=$2
	shift 2
	"$CATSCOPE" "$@" >/dev/null 2>"$scratch/err" &
	pid=$!
	sleep 2
	kill -"$signal" "$pid" 2>/dev/null || fail "catscope $* ended before SIG$signal was sent: $(cat "$scratch/err")"
	status=0
	wait "$pid" || status=$?
	[ "$status" -eq "$want" ] || fail "catscope $* after SIG$signal: exit status $status, expected $want: $(cat "$scratch/err")"
}
mkdir "$scratch/signal"
cp "$cache" "$scratch/signal/old.cache"
for case in INT:130 TERM:143; do
	interrupt "${case%:*}" "${case#*:}" calibrate "$MODEL" "$text" -o "$scratch/signal/old.cache" --tokens 400000
	grep -q "calibration interrupted" "$scratch/err" || fail "calibrate after SIG${case%:*}: $(cat "$scratch/err")"
	[ "$(ls -A "$scratch/signal")" = old.cache ] || fail "calibrate after SIG${case%:*} left: $(ls -A "$scratch/signal")"
	cmp -s "$cache" "$scratch/signal/old.cache" || fail "calibrate after SIG${case%:*} changed the previous cache"
done
interrupt INT 130 eval "$MODEL" "$text"

exit 0
