#!/bin/sh
# Saves a session from the explorer under tmux and replays it: F2 with a typed
# name writes sessions/NAME.json, quitting with unsaved changes prompts first, the
# replayed explorer shows the saved state, and replay --batch prints the SQNR the
# screen showed. Uses a private tmux server (-L) and kills only that server.
. "$srcdir/tests/lib.sh"

tmux_name=sess
. "$srcdir/tests/tmux_lib.sh"
require_data

# The table rows: lines that start with a site name, above the status line (which
# can start with one too).
rows() {
	screen | sed '$d' | grep '^blk\.'
}

# Starts the explorer in the scratch directory (where sessions/ is created) with
# the arguments after catscope.
start() {
	rm -f "$scratch/exit"
	tm new-session -d -s explorer -x 80 -y 24 -c "$scratch" \
		"$CATSCOPE $1; echo \$? >'$scratch/exit'; sleep 30" || fail "tmux could not start a session"
}

wait_exit() {
	i=0
	while [ ! -s "$scratch/exit" ]; do
		i=$((i + 1))
		[ "$i" -lt 100 ] || { screen >&2; fail "the explorer did not exit"; }
		sleep 0.1
	done
	[ "$(cat "$scratch/exit")" = 0 ] || fail "the explorer exited with $(cat "$scratch/exit")"
	tm kill-session -t explorer
}

tm new-session -d -s keeper -x 80 -y 24 "sleep 600" || fail "tmux could not start its server"
socket_path=$(tm display-message -p -t keeper '#{socket_path}')

cache="$scratch/stories.cache"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$cache" --tokens 4096 --ctx 256 \
	>/dev/null 2>&1 || fail "calibrate failed"

# CAT on blk.0.ffn_down (t steps none, smooth, hadamard, cat1, cat), 5 weight bits.
start "'$MODEL' --calib '$cache'"
wait_for 'blk.4.ffn_down'
wait_idle
keys j j j t t t t W
wait_idle
row=$(rows | grep '^blk.0.ffn_down ')
echo "$row" | awk '{ exit !($3 == "cat") }' || fail "blk.0.ffn_down is not cat: $row"
shown=$(echo "$row" | awk '{ print $9 }')
screen | head -n 1 | grep -q 'W 5 ' || fail "W did not raise the weight bits: $(screen | head -n 1)"
# A filter that keeps blk.0.ffn_down first, so the selection stays on it.
keys / f f n _ d o w n Enter
[ "$(rows | wc -l)" -eq 5 ] || { screen >&2; fail "filter ffn_down shows $(rows | wc -l) rows, expected 5"; }

# F2 prompts for a name; a bare name goes into sessions/ with .json added.
keys F2
wait_for 'save session as: _ '
keys r o u n d Enter
wait_for 'session saved to sessions/round.json (5 actions in the journal)'
session="$scratch/sessions/round.json"
[ -s "$session" ] || fail "F2 wrote no sessions/round.json"
grep -q '"site": "blk.0.ffn_down", "transform": "cat"' "$session" || fail "the session lacks cat on blk.0.ffn_down"
[ "$(grep -c '"action": "set_transform"' "$session")" -eq 4 ] || fail "the journal lacks the four t presses"
grep -q '"action": "set_quant", "quant": "w5,a4,rtn"' "$session" || fail "the journal lacks the W press"
grep -q '"selected": "blk.0.ffn_down"' "$session" || fail "the session lacks the selected site"
grep -q '"filter": "ffn_down"' "$session" || fail "the session lacks the filter"
grep -q '"path": "../stories.cache"' "$session" || fail "the cache path is not relative to the session"

# Nothing changed since saving: q quits at once.
keys q
wait_exit

# The headless replay prints the SQNR the screen showed.
batch=$("$CATSCOPE" replay "$session" --batch --format csv |
	awk -F, '$1 == 0 && $2 == "ffn_down" { printf "%.1f", $16 }')
[ "$batch" = "$shown" ] || fail "measured SQNR of blk.0.ffn_down: screen $shown, replay --batch $batch"

# catscope --replay opens the explorer in the saved state.
start "--replay sessions/round.json"
wait_for 'blk.4.ffn_down'
wait_idle
screen | head -n 1 | grep -q 'W 5 ' || fail "the replayed explorer lost the weight bits: $(screen | head -n 1)"
row=$(rows | grep '^blk.0.ffn_down ')
echo "$row" | awk -v m="$shown" '{ exit !($3 == "cat" && $9 == m) }' ||
	fail "replayed blk.0.ffn_down: $row, expected cat with $shown"
[ "$(rows | wc -l)" -eq 5 ] || fail "the replayed explorer lost the filter: $(rows | wc -l) rows"
[ "$(rows | awk '$3 != "none"' | wc -l)" -eq 1 ] || fail "the replay changed other sites"

# A change, then q: the explorer prompts; Esc stays, y saves under the same name.
keys t
keys q
wait_for 'save changes? y/n/Esc'
keys Escape
screen | tail -n 1 | grep -q 'save changes' && fail "Esc did not close the question"
[ -s "$scratch/exit" ] && fail "Esc quit the explorer"
keys q
wait_for 'save changes? y/n/Esc'
keys y
wait_for 'save session as'
screen | tail -n 1 | grep -q 'save session as \[round.json\]: _ ' ||
	fail "the name prompt does not offer the loaded name as its default: $(screen | tail -n 1)"
keys Enter
wait_exit
[ "$(grep -c '"action": "set_transform"' "$session")" -eq 5 ] || fail "saving on quit did not append the t press"
grep -q '"site": "blk.0.ffn_down", "transform": "cat:full"' "$session" || fail "the saved state lacks cat:full"

# n quits without saving.
start "replay sessions/round.json"
wait_for 'blk.4.ffn_down'
keys w q
wait_for 'save changes? y/n/Esc'
keys n
wait_exit
grep -q '"w4,a4,rtn"' "$session" && grep -q '"quant": "w5,a4,rtn",$' "$session" ||
	fail "n changed the saved quantizer"

# F2 offers the loaded name as a default in brackets: typing replaces it instead of
# appending to it, and Enter on an empty line takes it.
start "replay sessions/round.json"
wait_for 'blk.4.ffn_down'
keys F2
wait_for 'save session as \[round.json\]: _ '
keys o t h e r Enter
wait_for 'session saved to sessions/other.json (6 actions in the journal)'
[ -s "$scratch/sessions/other.json" ] || fail "typing a name after F2 did not save sessions/other.json"
ls "$scratch/sessions" | grep -q 'round.jsonother' && fail "typing appended to the default name"
# Saving under the name of another existing file prompts first. n and Esc keep it.
cp "$session" "$scratch/round.saved"
keys F2
wait_for 'save session as \[other.json\]: _ '
keys r o u n d Enter
wait_for 'sessions/round.json exists; replace it? y/n'
keys n
wait_for 'not saved: sessions/round.json exists'
cmp -s "$session" "$scratch/round.saved" || fail "n still replaced sessions/round.json"
keys F2 r o u n d Enter
wait_for 'sessions/round.json exists; replace it? y/n'
keys Escape
wait_for 'not saved: sessions/round.json exists'
cmp -s "$session" "$scratch/round.saved" || fail "Esc still replaced sessions/round.json"
# A file that is not a session is never replaced, even after y.
echo 'not a session' >"$session"
keys F2 r o u n d Enter
wait_for 'sessions/round.json exists; replace it? y/n'
keys y
wait_for 'is not a catscope session'
grep -q 'not a session' "$session" || fail "y replaced a file that is not a session"
cp "$scratch/round.saved" "$session"
keys F2 r o u n d Enter
wait_for 'sessions/round.json exists; replace it? y/n'
keys y
wait_for 'session saved to sessions/round.json'
grep -q '"format": "catscope-session"' "$session" || fail "y did not replace sessions/round.json"
# Saving the session's own file again, the default, replaces it without a prompt.
keys t F2 Enter
wait_for 'session saved to sessions/round.json (7 actions in the journal)'
keys q
wait_exit

# One action is counted in the singular.
start "'$MODEL' --calib '$cache'"
wait_for 'blk.4.ffn_down'
keys t F2 o n e Enter
wait_for 'session saved to sessions/one.json (1 action in the journal)'
keys q
wait_exit

# The journal of the saved file re-runs to its final state.
"$CATSCOPE" replay "$session" --batch --from-journal --format csv >"$scratch/j.csv" 2>"$scratch/j.err" ||
	fail "replay --from-journal failed"
[ -s "$scratch/j.err" ] && fail "the journal disagrees with the final state: $(cat "$scratch/j.err")"
"$CATSCOPE" replay "$session" --batch --format csv >"$scratch/f.csv" || fail "replay failed"
cmp -s "$scratch/j.csv" "$scratch/f.csv" || fail "journal and final state print different reports"
echo "session explorer: all checks passed"
