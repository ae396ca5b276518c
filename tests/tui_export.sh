#!/bin/sh
# Drives the explorer's p (end-to-end perplexity) and E (export) keys under tmux on
# the real model, and checks them against catscope eval of the same settings and of
# the exported directory. Uses a private tmux server (-L) and kills only that server.
. "$srcdir/tests/lib.sh"

tmux_name=keys
. "$srcdir/tests/tmux_lib.sh"
require_data

# Waits up to 60 s until the title shows a perplexity that is not stale, and
# prints its value.
wait_perplexity() {
	i=0
	while ! screen | head -n 1 | grep 'PPL [0-9.]* (FP' | grep -v -q stale; do
		i=$((i + 1))
		if [ "$i" -ge 600 ]; then
			screen >&2
			fail "timed out waiting for a current perplexity in the title"
		fi
		sleep 0.1
	done
	screen | head -n 1 | sed 's/.*PPL \([0-9.]*\) (FP.*/\1/'
}

# Prints the perplexity line's value of catscope eval with the given arguments.
eval_perplexity() {
	"$CATSCOPE" eval "$@" 2>/dev/null | awk '$1 == "perplexity" { print $2 }'
}

# Waits up to 60 s for the explorer to write its exit status.
wait_exit() {
	i=0
	while [ ! -s "$scratch/exit" ]; do
		i=$((i + 1))
		[ "$i" -lt 600 ] || fail "the explorer did not exit"
		sleep 0.1
	done
	[ "$(cat "$scratch/exit")" = 0 ] || fail "the explorer exited with $(cat "$scratch/exit")"
}

start() {
	rm -f "$scratch/exit"
	tm new-session -d -s explorer -x 100 -y 24 \
		"$CATSCOPE '$MODEL' $1; echo \$? >'$scratch/exit'; sleep 30" ||
		fail "tmux could not start a session"
}

ctx=128
cache="$scratch/stories.cache"
heldout="$scratch/heldout.txt"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$cache" --tokens 4096 --ctx 256 \
	>/dev/null 2>&1 || fail "calibrate failed"
tail -c 20000 "$DATA/tinystories_train_sample.txt" >"$heldout"
expected_none=$(eval_perplexity "$MODEL" "$heldout" --ctx $ctx --calib "$cache" --transform none)
expected_cat=$(eval_perplexity "$MODEL" "$heldout" --ctx $ctx --calib "$cache" --transform cat)
expected_cat_kv=$(eval_perplexity "$MODEL" "$heldout" --ctx $ctx --calib "$cache" --transform cat --kv-bits 4)
expected_fp=$(eval_perplexity "$MODEL" "$heldout" --ctx $ctx)
[ -n "$expected_none" ] && [ -n "$expected_cat" ] && [ -n "$expected_fp" ] ||
	fail "catscope eval printed no perplexity"

# A session that keeps the private server alive between explorer sessions.
tm new-session -d -s keeper -x 80 -y 24 "sleep 600" || fail "tmux could not start its server"
socket_path=$(tm display-message -p -t keeper '#{socket_path}')

# Without --heldout, p shows a status message naming the missing option.
start "--calib '$cache'"
wait_for 'blk.4.ffn_down'
tm send-keys -t explorer p
wait_for 'p needs held-out text: start with --heldout FILE'
tm send-keys -t explorer Q n
wait_exit
tm kill-session -t explorer

start "--calib '$cache' --heldout '$heldout' --ctx $ctx"
wait_for 'blk.4.ffn_down'

# p on the starting settings (no transform) equals eval --transform none. While it
# runs, the status line separates its progress from the key hints with " | ".
tm send-keys -t explorer p
i=0
while [ "$i" -lt 100 ]; do
	line=$(screen | tail -n 1)
	case "$line" in
	*"perplexity: "*)
		echo "$line" | grep -q 'perplexity: [a-z -]* [0-9]*%\( *$\| | \)' ||
			fail "the perplexity progress runs into the next part of the status line: '$line'"
		;;
	esac
	screen | head -n 1 | grep -q 'PPL [0-9.]* (FP' && break
	i=$((i + 1))
	sleep 0.05
done
shown=$(wait_perplexity)
[ "$shown" = "$expected_none" ] || fail "perplexity without transform: explorer $shown, eval $expected_none"
screen | head -n 1 | grep -q "(FP $expected_fp, " ||
	fail "full-precision perplexity is not $expected_fp: $(screen | head -n 1)"

# CAT on every site: t steps none, smooth, hadamard, cat1, cat on the first site
# and T applies it to all. The old result turns stale; a second p supersedes the
# first, and the result equals eval --transform cat.
tm send-keys -t explorer g t t t t T
wait_for 'transform cat applied to 20 sites'
screen | head -n 1 | grep -q 'PPL [0-9.]* (FP [0-9.]*, [-+][0-9.]*%) stale' ||
	fail "the perplexity is not marked stale after a change: $(screen | head -n 1)"
tm send-keys -t explorer p p
shown=$(wait_perplexity)
[ "$shown" = "$expected_cat" ] || fail "perplexity with cat: explorer $shown, eval $expected_cat"

# E exports the current settings; eval of the export prints the perplexity shown.
tm send-keys -t explorer E
wait_for 'export to directory:'
tm send-keys -t explorer -l "$scratch/export"
tm send-keys -t explorer Enter
wait_for "exported to $scratch/export: "
[ -f "$scratch/export/config.json" ] || fail "the export has no config.json"
exported=$(eval_perplexity "$scratch/export" "$heldout" --ctx $ctx)
[ "$exported" = "$shown" ] || fail "perplexity of the export: eval $exported, explorer $shown"

# An existing destination is kept after n and replaced after y.
touch "$scratch/export/marker"
tm send-keys -t explorer E Enter
wait_for "$scratch/export exists; replace it? y/n"
tm send-keys -t explorer n
wait_for "not exported: $scratch/export exists"
[ -f "$scratch/export/marker" ] || fail "n still replaced the export"
tm send-keys -t explorer E Enter
wait_for "$scratch/export exists; replace it? y/n"
tm send-keys -t explorer y
wait_for "exported to $scratch/export: "
[ ! -e "$scratch/export/marker" ] || fail "y did not replace the export"

# K quantizes the KV cache to 4 bits for p and E: the result turns stale, and p, the
# simulation and an export all agree again.
tm send-keys -t explorer K
wait_for 'KV cache 4-bit'
screen | head -n 1 | grep -q 'stale' || fail "K did not mark the perplexity stale"
tm send-keys -t explorer p
shown=$(wait_perplexity)
[ "$shown" = "$expected_cat_kv" ] || fail "perplexity with a 4-bit KV cache: explorer $shown, eval $expected_cat_kv"
# The prompt offers the last directory (its end, when longer than 40 characters) as
# a default in brackets, and typing replaces it instead of appending to it.
tm send-keys -t explorer E
wait_for "export to directory \[[^]]*/export\]: _ "
tm send-keys -t explorer -l "$scratch/export-kv"
tm send-keys -t explorer Enter
wait_for "exported to $scratch/export-kv: "
exported=$(eval_perplexity "$scratch/export-kv" "$heldout" --ctx $ctx)
[ "$exported" = "$shown" ] || fail "perplexity of the KV export: eval $exported, explorer $shown"

# The help lists both keys.
tm send-keys -t explorer '?'
wait_for 'perplexity on --heldout text'
tm send-keys -t explorer x Q n
wait_exit
echo "explorer keys p and E: all checks passed"
