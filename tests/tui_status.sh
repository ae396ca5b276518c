#!/bin/sh
# Drives the explorer under tmux on the real model and checks the table and status
# line. Column titles stay apart whatever the sort column, and values that round to
# zero have no minus sign. The status line separates its parts with " | ", drops
# whole key hints when space is short, shows an active filter until Esc, and ends a
# cut message with "...". Uses a private tmux server (-L) and kills only that server.
. "$srcdir/tests/lib.sh"

tmux_name=status
. "$srcdir/tests/tmux_lib.sh"
require_data

hints='? help  Enter detail  o overview  t transform  s sort  / filter  q quit'

rows() {
	screen | sed '$d' | grep '^blk\.'
}

status_line() {
	screen | tail -n 1 | sed 's/ *$//'
}

# Starts the explorer in a WIDTH x HEIGHT session, in the scratch directory, with
# the arguments after the model.
start() {
	rm -f "$scratch/exit"
	tm new-session -d -s explorer -x "$1" -y "$2" -c "$scratch" \
		"$CATSCOPE '$MODEL' $3; echo \$? >'$scratch/exit'; sleep 30" ||
		fail "tmux could not start a session"
}

stop() {
	keys Q
	wait_for 'save changes? y/n/Esc'
	keys n
	i=0
	while [ ! -s "$scratch/exit" ]; do
		i=$((i + 1))
		[ "$i" -lt 100 ] || fail "the explorer did not exit"
		sleep 0.1
	done
	[ "$(cat "$scratch/exit")" = 0 ] || fail "the explorer exited with $(cat "$scratch/exit")"
	tm kill-session -t explorer
}

# Checks that the header has one word per column title for every sort column in
# both directions, so no title runs into the next (such as "Aheadrm^").
check_header_words() {
	width=$1 expected=$2
	n=0
	while [ "$n" -lt "$expected" ]; do
		for direction in up down; do
			header=$(screen | sed -n 2p)
			words=$(echo "$header" | wc -w)
			[ "$words" -eq "$expected" ] ||
				fail "at $width columns, sorted $direction by column $n: $words titles, expected $expected: '$header'"
			keys S
		done
		keys s
		n=$((n + 1))
	done
}

tm new-session -d -s keeper -x 80 -y 24 "sleep 600" || fail "tmux could not start its server"
socket_path=$(tm display-message -p -t keeper '#{socket_path}')

cache="$scratch/stories.cache"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$cache" --tokens 4096 --ctx 256 \
	>/dev/null 2>&1 || fail "calibrate failed"
"$CATSCOPE" report "$MODEL" --calib "$cache" --transform cat:full --format csv >"$scratch/full.csv" ||
	fail "report --transform cat:full failed"
# Column 14 of the CSV is headroom_db, which the explorer shows with one decimal.
awk -F, 'NR > 1 && $14 ~ /^-0\.0[0-4]/ { found = 1 } END { exit !found }' "$scratch/full.csv" ||
	fail "no headroom of cat:full rounds to zero from below, so the -0.0 check tests nothing"

start 80 24 "--calib '$cache'"
wait_for 'blk.4.ffn_down'
wait_idle
check_header_words 80 10

# cat:full on every site (t steps none, smooth, hadamard, cat1, cat, cat:full; T
# applies it to all): the headroom column shows 0.0, not -0.0.
keys g t t t t t T
wait_for 'transform cat:full applied to 20 sites'
wait_idle
[ "$(rows | awk '$3 == "cat:full"' | wc -l)" -eq 20 ] || fail "T did not set cat:full on every site"
rows | grep -q -e ' -0\.0 ' && fail "the table prints -0.0: $(rows | grep -e ' -0\.0 ' | head -n 1)"

# With nothing to report, the status line is the key hints, and at 80 columns
# they all fit.
wait_for '? help  Enter detail'
[ "$(status_line)" = "$hints" ] || fail "the idle status line is not the key hints: '$(status_line)'"

# After / and Enter the filter stays on the status line, before the hints, which
# give way a whole hint at a time; Esc clears it.
keys / d o w n Enter
wait_for 'filter: down (Esc clears) | ? help'
line=$(status_line)
hints_shown=${line#filter: down (Esc clears) | }
case "$hints" in
"$hints_shown"*) ;;
*) fail "the hints beside the filter are not a start of the hints: '$line'" ;;
esac
case "$hints" in
"$hints_shown" | "$hints_shown  "*) ;;
*) fail "a hint is cut in the middle: '$line'" ;;
esac
[ "$hints_shown" != "$hints" ] || fail "all hints fit beside the filter at 80 columns, so none was dropped: '$line'"
# A message shows beside the filter, and the filter stays after it fades.
keys s
wait_for 'filter: down (Esc clears) | sorted by'
wait_for 'filter: down (Esc clears) | ? help'
keys Escape
wait_for '? help  Enter detail'
status_line | grep -q 'filter:' && fail "Esc did not clear the filter from the status line: '$(status_line)'"

# A message longer than the line is cut to 80 columns and ends in "...".
long="$scratch/no/such/directory/with/a/rather/long/name/for/the/session.json"
keys F2
wait_for 'save session as'
tm send-keys -t explorer -l "$long"
keys Enter
wait_for 'saving failed: '
line=$(status_line)
case "$line" in
*...) ;;
*) fail "a cut message does not end in '...': '$line'" ;;
esac
[ "${#line}" -le 80 ] || fail "the status line is wider than 80 columns: '$line'"
cut=${line%...}
case "$cut" in
*" ") fail "the cut leaves a space before '...': '$line'" ;;
esac

# 200 columns show all 15 titles, still one word each for every sort column.
tm resize-window -t explorer -x 200 -y 50
sleep 0.5
wait_for 'tokens'
check_header_words 200 15

stop
echo "explorer table and status line: all checks passed"
