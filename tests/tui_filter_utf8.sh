#!/bin/sh
# Types non-ASCII text into the explorer under tmux. The filter line must show the
# characters as typed, Backspace must erase a whole character, and the filter must
# match by the same text. The F2 prompt takes the same characters into the session
# file name. Skips without tmux or a UTF-8 locale.
. "$srcdir/tests/lib.sh"

utf8_locale=$(locale -a 2>/dev/null | grep -i -m 1 -E '^(C|en_US)\.utf-?8$')
[ -n "$utf8_locale" ] || { echo "no UTF-8 locale (C.UTF-8 or en_US.UTF-8); skipping"; exit 77; }
# tmux and the explorer both decide from the locale whether the terminal uses UTF-8.
LC_ALL=$utf8_locale
export LC_ALL

tmux_name=utf8
. "$srcdir/tests/tmux_lib.sh"
require_data

rows() {
	screen | grep '^blk\.'
}

status_line() {
	screen | tail -n 1
}

tm new-session -d -s explorer -x 100 -y 30 "$CATSCOPE '$MODEL'; sleep 30" ||
	fail "tmux could not start a session"
wait_for 'blk.4.ffn_down'
wait_idle

# A Latin letter with an accent (two bytes) and a CJK character (three bytes).
keys / f f n _ d 'é' '漢'
status_line | grep -q -F 'filter: ffn_dé漢_' || fail "the filter line does not show 'ffn_dé漢': $(status_line)"
[ "$(rows | wc -l)" -eq 0 ] || fail "no site name contains 'é', yet $(rows | wc -l) rows match"
wait_for 'no site matches the filter'

# Backspace erases one character, not one byte: 'ffn_dé' stays valid and shows.
keys BSpace
status_line | grep -q -F 'filter: ffn_dé_' || fail "Backspace did not erase the whole CJK character: $(status_line)"
keys BSpace
status_line | grep -q -F 'filter: ffn_d_' || fail "Backspace did not erase the whole 'é': $(status_line)"
[ "$(rows | wc -l)" -eq 5 ] || fail "the filter 'ffn_d' shows $(rows | wc -l) rows, expected the 5 ffn_down sites"

# Enter keeps the filter; Esc clears it and every site returns.
keys Enter
[ "$(rows | wc -l)" -eq 5 ] || fail "Enter did not keep the filter"
keys Escape
[ "$(rows | wc -l)" -eq 20 ] || fail "Esc did not clear the filter: $(rows | wc -l) rows"
keys q
tm kill-session -t explorer 2>/dev/null

# F2 with a non-ASCII name: Backspace erases the CJK character whole, and the file
# gets the name as typed.
tm new-session -d -s explorer -x 100 -y 30 -c "$scratch" "$CATSCOPE '$MODEL'; sleep 30" ||
	fail "tmux could not start a session in $scratch"
wait_for 'blk.4.ffn_down'
wait_idle
keys t F2 r 'é' '漢'
wait_for 'save session as: ré漢_'
keys BSpace
wait_for 'save session as: ré_'
keys Enter
wait_for 'session saved to sessions/ré.json'
[ -s "$scratch/sessions/ré.json" ] || fail "F2 did not write sessions/ré.json: $(ls "$scratch/sessions")"
keys q
exit 0
