# Shared by the shell tests: paths and small assertions. Sourced, not run.
CATSCOPE=${CATSCOPE_BIN:-./catscope}
DATA=${CATSCOPE_DATA:-../shared/data}
MODEL="$DATA/stories260K.gguf"

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

require_data() {
	[ -r "$MODEL" ] || fail "the real model $MODEL is missing; set CATSCOPE_DATA to the shared data folder"
}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/catscope-sh-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# dash skips the EXIT trap when a signal ends the script, so these turn the signals into
# an exit (status 128 + signal number) that runs it. tmux_lib.sh replaces only the EXIT trap.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
