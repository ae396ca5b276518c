# Shared by the explorer tests: a private tmux server and helpers that read its screen.
# Sourced after lib.sh, with tmux_name set to a word that names the test's server.
# Skips the test (exit 77) when tmux is missing.
TMUX_CMD=${TMUX_BIN:-tmux}
command -v "$TMUX_CMD" >/dev/null 2>&1 || { echo "tmux not found; skipping"; exit 77; }

socket="catscope-$tmux_name-$$"
tm() {
	"$TMUX_CMD" -L "$socket" "$@"
}
socket_path=""
# kill-server leaves the socket file behind, so the trap removes it too.
trap 'tm kill-server 2>/dev/null; [ -n "$socket_path" ] && rm -f "$socket_path"; rm -rf "$scratch"' EXIT

screen() {
	tm capture-pane -p -t explorer
}

# Waits up to 60 s for the screen to contain the text.
wait_for() {
	i=0
	while ! screen | grep -q -- "$1"; do
		i=$((i + 1))
		if [ "$i" -ge 600 ]; then
			screen >&2
			fail "timed out waiting for '$1' on the screen"
		fi
		sleep 0.1
	done
}

# Waits until the status line no longer reports work in progress.
wait_idle() {
	i=0
	while screen | tail -n 1 | grep -q -e computing -e comparing; do
		i=$((i + 1))
		if [ "$i" -ge 600 ]; then
			screen >&2
			fail "timed out after 60 s waiting for the explorer to finish computing"
		fi
		sleep 0.1
	done
}

# Sends keys, then waits (up to 5 s) until the screen above the status line stops
# changing, so that a loaded machine does not read a half-handled burst.
keys() {
	tm send-keys -t explorer "$@"
	sleep 0.2
	i=0
	before=$(screen | sed '$d')
	while [ "$i" -lt 25 ]; do
		sleep 0.2
		now=$(screen | sed '$d')
		[ "$now" = "$before" ] && return 0
		before=$now
		i=$((i + 1))
	done
}
