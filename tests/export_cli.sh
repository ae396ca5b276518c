# catscope export through the command line: export -> eval prints the simulated
# perplexity, generate runs the export, an existing directory needs --force, and a
# SIGINT from outside leaves neither the export nor a temporary directory.
. "$srcdir/tests/lib.sh"
require_data

cache="$scratch/stories.cache"
text="$scratch/held.txt"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$cache" --tokens 8192 --ctx 256 \
	>/dev/null 2>&1 || fail "calibrate failed"
tail -c +1000001 "$DATA/tinystories_train_sample.txt" | head -c 20000 >"$text"

out="$scratch/export"
"$CATSCOPE" export "$MODEL" --calib "$cache" --transform cat --site blk.0.ffn_down=hadamard \
	--kv-bits 4 --dtype f32 --source-rope-order -o "$out" >"$scratch/export.txt" ||
	fail "export failed"
grep -q "^size" "$scratch/export.txt" || fail "export printed no size"
grep -q "^time" "$scratch/export.txt" || fail "export printed no time"
grep -q '"ffn_down": "mixed"' "$out/config.json" || fail "the --site override is not in config.json"

ppl() { awk '/^perplexity/ { print $2 }'; }
exported=$("$CATSCOPE" eval "$out" "$text" --ctx 128 | ppl)
# The default export (16-bit embeddings and head, Hugging Face q/k order) and the f32
# export in the source's order each compute exactly what eval simulates with the same
# options.
"$CATSCOPE" export "$MODEL" --calib "$cache" --transform cat --kv-bits 4 -o "$scratch/default" \
	>/dev/null || fail "the default export failed"
default=$("$CATSCOPE" eval "$scratch/default" "$text" --ctx 128 | ppl)
simulated=$("$CATSCOPE" eval "$MODEL" "$text" --ctx 128 --calib "$cache" --transform cat --kv-bits 4 | ppl)
"$CATSCOPE" export "$MODEL" --calib "$cache" --transform cat --kv-bits 4 --dtype f32 \
	--source-rope-order -o "$scratch/plain" >/dev/null || fail "second export failed"
plain=$("$CATSCOPE" eval "$scratch/plain" "$text" --ctx 128 | ppl)
simulated_plain=$("$CATSCOPE" eval "$MODEL" "$text" --ctx 128 --calib "$cache" --transform cat --kv-bits 4 \
	--dtype f32 --source-rope-order | ppl)
echo "perplexity: simulated $simulated, exported $default; f32 in source order: simulated" \
	"$simulated_plain, exported $plain (with a site override: $exported)"
[ -n "$default" ] && [ "$default" = "$simulated" ] ||
	fail "the default export ($default) and its simulation ($simulated) differ"
[ -n "$plain" ] && [ "$plain" = "$simulated_plain" ] ||
	fail "the f32 export ($plain) and its simulation ($simulated_plain) differ"

"$CATSCOPE" generate "$out" --prompt "Once upon a time" -n 20 >"$scratch/generated.txt" ||
	fail "generate on the export failed"
grep -q "Once upon a time" "$scratch/generated.txt" || fail "generate printed no continuation"

before=$(cksum <"$out/model.safetensors")
if "$CATSCOPE" export "$MODEL" --calib "$cache" -o "$out" >/dev/null 2>&1; then
	fail "export replaced an existing directory without --force"
fi
[ "$(cksum <"$out/model.safetensors")" = "$before" ] || fail "a rejected export changed the old one"
"$CATSCOPE" export "$MODEL" --calib "$cache" -o "$out" --force >/dev/null || fail "export --force failed"
[ "$(cksum <"$out/model.safetensors")" != "$before" ] || fail "export --force did not replace the export"

# SIGINT while GPTQ runs: nothing may be left behind.
"$CATSCOPE" export "$MODEL" --calib "$cache" --transform cat --gptq -o "$scratch/killed" >/dev/null 2>&1 &
pid=$!
sleep 0.2
kill -INT "$pid" 2>/dev/null
wait "$pid"
[ ! -e "$scratch/killed" ] || [ -f "$scratch/killed/config.json" ] || fail "an interrupted export left a partial directory"
ls "$scratch" | grep -q '\.tmp-' && fail "an interrupted export left its temporary directory"

# A session saved in the explorer exports its per-site transforms and quantizer; a
# session made on other calibration statistics is refused.
session="$srcdir/sessions/stories260K-cat.json"
cache4096="$scratch/stories260K-4096.cache"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$cache4096" --tokens 4096 \
	--ctx 256 >/dev/null 2>&1 || fail "calibrate for the session failed"
"$CATSCOPE" export "$MODEL" --calib "$cache4096" --session "$session" -o "$scratch/from-session" \
	>/dev/null || fail "export --session failed"
tr -d ' \n' <"$scratch/from-session/config.json" >"$scratch/config-flat.json"
grep -q '"site":"blk.0.ffn_down","transform":"cat"' "$scratch/config-flat.json" ||
	fail "the export does not record the session's cat on blk.0.ffn_down"
grep -q '"site":"blk.0.attn_in","transform":"hadamard"' "$scratch/config-flat.json" ||
	fail "the export does not record the session's hadamard on blk.0.attn_in"
status=0
"$CATSCOPE" export "$MODEL" --calib "$cache" --session "$session" -o "$scratch/wrong-cache" \
	>/dev/null 2>"$scratch/session-err.txt" || status=$?
[ "$status" -eq 1 ] || fail "export --session with another cache exited $status, expected 1"
[ ! -e "$scratch/wrong-cache" ] || fail "a refused export --session left a directory"
grep -q "stories260K-cat.json" "$scratch/session-err.txt" || fail "the refusal does not name the session"
exit 0
