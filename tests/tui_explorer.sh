#!/bin/sh
# Drives the explorer under tmux on the real model: table, navigation, sorting,
# filtering, transforms, detail, overview, help, resizing and a clean quit.
# Uses a private tmux server (-L) and kills only that server.
. "$srcdir/tests/lib.sh"

tmux_name=test
. "$srcdir/tests/tmux_lib.sh"
require_data

# The table rows: lines that start with a site name.
rows() {
	screen | grep '^blk\.'
}

# Starts the explorer in a WIDTH x HEIGHT session with extra arguments and an
# optional environment assignment such as NO_COLOR=1.
start() {
	rm -f "$scratch/exit"
	tm new-session -d -s explorer -x "$1" -y "$2" \
		"env ${4:-} $CATSCOPE '$MODEL' $3; echo \$? >'$scratch/exit'; sleep 30" ||
		fail "tmux could not start a session"
}

# A session that keeps the private server alive between explorer sessions, so
# that killing one does not race the server's exit with the next start.
tm new-session -d -s keeper -x 80 -y 24 "sleep 600" || fail "tmux could not start its server"
socket_path=$(tm display-message -p -t keeper '#{socket_path}')

start 80 24 ""
wait_for 'blk.4.ffn_down'
wait_idle

screen | sed -n 2p | grep -q 'site.*transform.*C(x).*C(W).*A.*pred.*meas.*gain' ||
	fail "the header lacks the expected columns: $(screen | sed -n 2p)"
[ "$(rows | wc -l)" -eq 20 ] || fail "expected 20 site rows at 80x24, saw $(rows | wc -l)"
# Engine warnings fade from the status line, then the calibration hint shows.
wait_for 'catscope calibrate MODEL TEXT -o CACHE'
screen | tail -n 1 | grep -q 'catscope calibrate MODEL TEXT -o CACHE' ||
	fail "the status line lacks the calibration hint: $(screen | tail -n 1)"
screen | head -n 1 | grep -q 'NO CALIBRATION' || fail "the title does not say there is no calibration"

# Navigation: two rows down, then the detail view names the third site.
keys j j Enter
wait_for 'SQNR factors'
screen | sed -n 2p | grep -q 'blk.0.ffn_in' || fail "detail of the wrong site: $(screen | sed -n 2p)"
keys Escape

# Sorting by the predicted SQNR (seven columns to the right of site), both ways.
keys s s s s s s s
screen | sed -n 2p | grep -q 'pred^' || fail "sort column is not pred: $(screen | sed -n 2p)"
rows | awk '{ v = $8 + 0; if (NR > 1 && v < last) exit 1; last = v }' ||
	fail "rows are not in ascending predicted SQNR"
keys S
rows | awk '{ v = $8 + 0; if (NR > 1 && v > last) exit 1; last = v }' ||
	fail "rows are not in descending predicted SQNR"
keys '<' '<' '<' '<' '<' '<' '<' S
rows | head -n 1 | grep -q '^blk.0.attn_in ' || fail "sorting by site did not restore the order"

# Filter: only the ffn_down sites, then Esc clears it.
keys / f f n _ d o w n Enter
[ "$(rows | wc -l)" -eq 5 ] || fail "filter ffn_down shows $(rows | wc -l) rows, expected 5"
rows | grep -v -q ffn_down && fail "filter ffn_down shows another site"
keys Escape
[ "$(rows | wc -l)" -eq 20 ] || fail "Esc did not clear the filter"

# CAT on the first site: t steps none, smooth, hadamard, cat1, cat.
keys g t t t t
wait_idle
row=$(rows | grep '^blk.0.attn_in ')
echo "$row" | awk '{ exit !($3 == "cat") }' || fail "blk.0.attn_in transform is not cat: $row"
table_a=$(echo "$row" | awk '{ print $6 }')
table_meas=$(echo "$row" | awk '{ print $9 }')
# The detail view lists every transform with its own evaluation; the cat line
# must agree with the table.
keys Enter Tab
wait_for '> cat '
wait_idle
detail=$(screen | grep '^ > cat ')
detail_a=$(echo "$detail" | awk '{ print $6 }')
detail_meas=$(echo "$detail" | awk '{ print $3 }')
[ "$table_a" = "$detail_a" ] || fail "A of cat: table $table_a, detail $detail_a"
[ "$table_meas" = "$detail_meas" ] || fail "measured SQNR of cat: table $table_meas, detail $detail_meas"
keys Escape

# Undo takes back the last t, so the site returns to cat1.
keys u
rows | grep '^blk.0.attn_in ' | awk '{ exit !($3 == "cat1") }' || fail "undo did not restore cat1"

# T applies the selected site's transform to every shown site: hadamard on the
# five ffn_down sites only. One u takes back T, two more the t presses.
keys / f f n _ d o w n Enter t t T Escape
wait_idle
[ "$(rows | awk '$3 == "hadamard"' | wc -l)" -eq 5 ] ||
	fail "T did not set hadamard on the five ffn_down sites: $(rows | awk '$3 == "hadamard"' | wc -l)"
rows | awk '$3 == "hadamard"' | grep -v -q ffn_down && fail "T changed a site outside the filter"
keys u
[ "$(rows | awk '$3 == "hadamard"' | wc -l)" -eq 1 ] || fail "undo did not take back T"
rows | grep '^blk.0.ffn_down ' | awk '{ exit !($3 == "hadamard") }' ||
	fail "undo of T changed the site T was applied from"
keys u u
[ "$(rows | awk '$3 != "none"' | wc -l)" -eq 1 ] || fail "three undos should leave only blk.0.attn_in transformed"

# Weight bits: w lowers them and the title follows; u restores.
keys w
screen | head -n 1 | grep -q 'W 3 ' || fail "w did not lower the weight bits: $(screen | head -n 1)"
keys u
screen | head -n 1 | grep -q 'W 4 ' || fail "undo did not restore 4 weight bits"
wait_idle

# Overview and help.
keys o
wait_for '|: without transform'
keys q
keys '?'
wait_for 'Navigation'
screen | grep -q 'undo the last change' || fail "help lacks the undo key"
keys x
wait_for 'blk.0.attn_in'

# Resizing: large, then back to 80x24.
tm resize-window -t explorer -x 200 -y 50
sleep 0.5
screen | sed -n 2p | grep -q 'W-only.*X-only.*gap' || fail "wide header lacks the extra columns"
[ "$(rows | wc -l)" -eq 20 ] || fail "expected 20 rows at 200x50"
tm resize-window -t explorer -x 80 -y 24
sleep 0.5
screen | sed -n 2p | grep -q '^site.*gain' || fail "header after shrinking: $(screen | sed -n 2p)"
[ "$(rows | wc -l)" -eq 20 ] || fail "expected 20 rows back at 80x24"

# The changes above are not saved, so quitting prompts first; n quits.
keys q
wait_for 'save changes? y/n/Esc'
keys n
i=0
while [ ! -s "$scratch/exit" ]; do
	i=$((i + 1))
	[ "$i" -lt 50 ] || fail "the explorer did not exit after q"
	sleep 0.1
done
[ "$(cat "$scratch/exit")" = 0 ] || fail "the explorer exited with $(cat "$scratch/exit")"
tm kill-session -t explorer

# ASCII and monochrome: no UTF-8 block characters in the detail view.
start 80 24 "--ascii --no-color"
wait_for 'blk.4.ffn_down'
keys Enter
wait_for 'SQNR factors'
screen | grep -q '#' || fail "--ascii shows no ASCII bars"
screen | LC_ALL=C grep -q "$(printf '\342\226')" && fail "--ascii still draws Unicode blocks"
keys Q
sleep 0.5
[ "$(cat "$scratch/exit")" = 0 ] || fail "the explorer exited with $(cat "$scratch/exit") in ASCII mode"
tm kill-session -t explorer
# Colour: the default run colours cells (SGR 30-37 foreground), --no-color and
# NO_COLOR do not.
start 80 24 ""
wait_for 'blk.4.ffn_down'
wait_idle
tm capture-pane -p -e -t explorer | grep -q "$(printf '\033')\[[0-9;]*3[1-6]m" ||
	fail "the default run shows no colour"
keys Q
tm kill-session -t explorer
start 80 24 "--no-color"
wait_for 'blk.4.ffn_down'
wait_idle
tm capture-pane -p -e -t explorer | grep -q "$(printf '\033')\[[0-9;]*3[1-6]m" &&
	fail "--no-color still shows colour"
keys Q
tm kill-session -t explorer
start 80 24 "" NO_COLOR=1
wait_for 'blk.4.ffn_down'
wait_idle
tm capture-pane -p -e -t explorer | grep -q "$(printf '\033')\[[0-9;]*3[1-6]m" &&
	fail "NO_COLOR=1 still shows colour"
keys Q
tm kill-session -t explorer

# With calibration: CAT on blk.0.ffn_down shows the measured SQNR that
# catscope report prints for the same site and settings.
cache="$scratch/stories.cache"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$cache" --tokens 4096 --ctx 256 \
	>/dev/null 2>&1 || fail "calibrate failed"
expected=$("$CATSCOPE" report "$MODEL" --calib "$cache" --transform cat --format csv |
	awk -F, '$1 == 0 && $2 == "ffn_down" && $4 == "cat" { printf "%.1f", $16 }')
[ -n "$expected" ] || fail "report printed no cat row for blk.0.ffn_down"
start 80 24 "--calib '$cache'"
wait_for 'blk.4.ffn_down'
screen | head -n 1 | grep -q 'NO CALIBRATION' && fail "the title says no calibration with --calib"
keys j j j t t t t
wait_idle
row=$(rows | grep '^blk.0.ffn_down ')
echo "$row" | awk '{ exit !($3 == "cat") }' || fail "blk.0.ffn_down transform is not cat: $row"
shown=$(echo "$row" | awk '{ print $9 }')
[ "$shown" = "$expected" ] || fail "measured SQNR of blk.0.ffn_down with cat: explorer $shown, report $expected"
gain=$(echo "$row" | awk '{ print $10 }')
awk -v g="$gain" 'BEGIN { exit !(g + 0 > 1.0) }' || fail "cat gains only $gain dB over none on blk.0.ffn_down"
keys Enter Tab Tab
wait_for 'x rms after'
keys Q
wait_for 'save changes? y/n/Esc'
keys n
sleep 0.5
[ "$(cat "$scratch/exit")" = 0 ] || fail "the calibrated explorer exited with $(cat "$scratch/exit")"
tm kill-session -t explorer

# A TERM that terminfo does not describe gives one catscope message naming TERM and
# the fix, and exit status 1, instead of the message of the curses library.
start 80 24 "" TERM=catscope-no-such-terminal
wait_for "cannot open the terminal: TERM is 'catscope-no-such-terminal'"
i=0
while [ ! -s "$scratch/exit" ] && [ "$i" -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ "$(cat "$scratch/exit")" = 1 ] || fail "the explorer with an unknown TERM exited with $(cat "$scratch/exit")"
echo "explorer: all checks passed"
