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

# A tampered config.json: eval exits 1 with one line that names config.json and the
# key. Each case copies the default export and edits its config.json with a sed
# script, which works because the file has one key per line (jansson's indent of 2).
expect_rejected() {
	name=$1 script=$2 expected=$3
	tampered="$scratch/tampered-$name"
	cp -r "$scratch/default" "$tampered"
	sed -e "$script" "$scratch/default/config.json" >"$tampered/config.json"
	cmp -s "$scratch/default/config.json" "$tampered/config.json" && fail "$name: the sed script changed nothing"
	status=0
	"$CATSCOPE" eval "$tampered" "$text" --ctx 128 >/dev/null 2>"$scratch/tampered.err" || status=$?
	[ "$status" -eq 1 ] || fail "$name: eval exited $status, expected 1: $(cat "$scratch/tampered.err")"
	[ "$(wc -l <"$scratch/tampered.err")" -eq 1 ] || fail "$name: expected one line: $(cat "$scratch/tampered.err")"
	grep -q -F "$tampered/config.json: " "$scratch/tampered.err" ||
		fail "$name: the message does not name config.json: $(cat "$scratch/tampered.err")"
	grep -q -F -- "$expected" "$scratch/tampered.err" ||
		fail "$name: the message lacks '$expected': $(cat "$scratch/tampered.err")"
	rm -rf "$tampered"
}
# Sed ranges that select the compressed-tensors part and the catscope section.
qcfg='/"quantization_config": {/,/"catscope": {/'
cat_section='/"catscope": {/,$'
expect_rejected weight-bits "$qcfg{/\"weights\": {/,/}/s/\"num_bits\": 4/\"num_bits\": 8/}" \
	'quantization_config.config_groups.group_0.weights.num_bits is 8, but catscope.weights.bits is 4'
expect_rejected weight-symmetric "$qcfg{/\"weights\": {/,/}/s/\"symmetric\": true/\"symmetric\": false/}" \
	'quantization_config.config_groups.group_0.weights.symmetric is false, but catscope.weights.symmetric is true'
expect_rejected weight-group "$qcfg{/\"weights\": {/,/}/s/\"group_size\": null/\"group_size\": 32/}" \
	'quantization_config.config_groups.group_0.weights.group_size is 32, but catscope.weights.group_size is 0'
expect_rejected weight-strategy "$qcfg{/\"weights\": {/,/}/s/\"strategy\": \"channel\"/\"strategy\": \"tensor\"/}" \
	'quantization_config.config_groups.group_0.weights.strategy is "tensor", but catscope.weights.group_size 0 means "channel"'
expect_rejected act-bits "$qcfg{/\"input_activations\": {/,/}/s/\"num_bits\": 4/\"num_bits\": 8/}" \
	'quantization_config.config_groups.group_0.input_activations.num_bits is 8, but catscope.input_activations.bits is 4'
expect_rejected act-dynamic "$qcfg{/\"input_activations\": {/,/}/s/\"dynamic\": true/\"dynamic\": false/}" \
	'quantization_config.config_groups.group_0.input_activations.dynamic is false, but catscope quantizes input'
expect_rejected act-missing "$qcfg{s/\"input_activations\": {/\"input_activations\": null, \"unused\": {/}" \
	'quantization_config.config_groups.group_0.input_activations is missing or not an object'
expect_rejected method "$qcfg{s/\"compressed-tensors\"/\"gptq\"/}" 'quantization_config.quant_method'
expect_rejected spec "$cat_section{/\"weights\": {/,/}/s/\"spec\": \"4\"/\"spec\": \"4:asym\"/}" \
	'catscope.weights.spec "4:asym" disagrees with catscope.weights.bits'
expect_rejected hidden-size 's/"hidden_size": 64/"hidden_size": 128/' \
	'hidden_size is 128, but catscope.model.dim is 64'
expect_rejected max-position 's/"max_position_embeddings": 2048/"max_position_embeddings": 4096/' \
	'max_position_embeddings is 4096, but catscope.model.context_length is 2048'
expect_rejected context-zero 's/"max_position_embeddings": 2048/"max_position_embeddings": 0/; s/"context_length": 2048/"context_length": 0/' \
	'catscope.model.context_length is 0; expected 2 to 16777216'
expect_rejected context-huge 's/"max_position_embeddings": 2048/"max_position_embeddings": 2147483647/; s/"context_length": 2048/"context_length": 2147483647/' \
	'catscope.model.context_length is 2147483647; expected 2 to 16777216'
expect_rejected context-one 's/"max_position_embeddings": 2048/"max_position_embeddings": 1/; s/"context_length": 2048/"context_length": 1/' \
	'catscope.model.context_length is 1; expected 2 to 16777216'
expect_rejected fewer-layers 's/"num_hidden_layers": 5/"num_hidden_layers": 4/; s/"n_layers": 5/"n_layers": 4/' \
	'catscope.model.n_layers is 4, but the checkpoint has tensors up to layer 4'
expect_rejected more-layers 's/"num_hidden_layers": 5/"num_hidden_layers": 6/; s/"n_layers": 5/"n_layers": 6/' \
	'catscope.model.n_layers is 6, but the checkpoint has tensors up to layer 4'
expect_rejected rope-theta-infinite "$cat_section{s/\"rope_theta\": 10000.0/\"rope_theta\": 1e300/}" \
	'the RoPE base inf is invalid'
expect_rejected rope-scaling-negative "$cat_section{s/\"rope_scaling_factor\": 0.0/\"rope_scaling_factor\": -8.0/}" \
	'catscope.model.rope_scaling_factor is -8; expected 0 (no scaling)'
expect_rejected rope-scaling-no-band 's/"rope_scaling_factor": 0.0/"rope_scaling_factor": 8.0/; s/"rope_original_context": 0/"rope_original_context": 64/' \
	'catscope.model.rope_scaling_factor is 8; expected 0 (no scaling)'
expect_rejected unknown-key 's/^  "catscope": {$/&\
    "trust_me": true,/' "unknown key 'catscope.trust_me' in the catscope section"
expect_rejected unknown-model-key "$cat_section{s/^    \"model\": {$/&\\
      \"experts\": 8,/}" "unknown key 'catscope.model.experts'"
expect_rejected unknown-weights-key "$cat_section{s/\"bits\": 4,$/&\\
      \"layers\": \"all\",/}" "unknown key 'catscope.weights.layers'"

# The vocabulary of a GGUF source. A special token id outside it is damage, not a
# missing token, and without BOS an empty prompt has nothing to start from.
vocab_edit() {
	name=$1 script=$2
	tampered="$scratch/vocab-$name"
	rm -rf "$tampered"
	cp -r "$scratch/default" "$tampered"
	sed -e "$script" "$scratch/default/tokenizer.catscope.json" >"$tampered/tokenizer.catscope.json"
	cmp -s "$scratch/default/tokenizer.catscope.json" "$tampered/tokenizer.catscope.json" &&
		fail "vocab-$name: the sed script changed nothing"
}
vocab_edit bos-outside 's/"bos_token_id":1,/"bos_token_id":99999,/'
status=0
"$CATSCOPE" eval "$tampered" "$text" --ctx 128 >/dev/null 2>"$scratch/vocab.err" || status=$?
[ "$status" -eq 1 ] || fail "eval with bos_token_id 99999 exited $status, expected 1: $(cat "$scratch/vocab.err")"
grep -q -F "$tampered/tokenizer.catscope.json: \"bos_token_id\" must be null or a token id from 0 to 511" \
	"$scratch/vocab.err" || fail "eval with bos_token_id 99999: $(cat "$scratch/vocab.err")"
vocab_edit no-bos 's/"bos_token_id":1,/"bos_token_id":null,/'
status=0
"$CATSCOPE" generate "$tampered" -n 5 >/dev/null 2>"$scratch/vocab.err" || status=$?
[ "$status" -eq 1 ] || fail "generate without BOS or prompt exited $status, expected 1: $(cat "$scratch/vocab.err")"
grep -q -F "the prompt encodes to no tokens and $tampered has no BOS token" "$scratch/vocab.err" ||
	fail "generate without BOS or prompt: $(cat "$scratch/vocab.err")"
"$CATSCOPE" generate "$tampered" --prompt "Once upon a time" -n 5 >/dev/null 2>"$scratch/vocab.err" ||
	fail "generate without BOS but with a prompt failed: $(cat "$scratch/vocab.err")"

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
[ "$(grep -o 'stories260K-cat.json' "$scratch/session-err.txt" | wc -l)" -eq 1 ] ||
	fail "the refusal names the session more than once: $(cat "$scratch/session-err.txt")"
grep -q "the calibration cache $cache has provenance hash [0-9a-f]\{16\}, but the session was saved with a cache of provenance hash f10146a6c4918f35" \
	"$scratch/session-err.txt" || fail "the refusal does not name the --calib cache and both hashes: $(cat "$scratch/session-err.txt")"
grep -q -e "--force" "$scratch/session-err.txt" &&
	fail "the refusal suggests --force, which only replaces DIR: $(cat "$scratch/session-err.txt")"
grep -q "pass the cache the session was saved with (--calib .*stories260K-4096.cache, or no --calib)" \
	"$scratch/session-err.txt" || fail "the refusal does not name the session's cache: $(cat "$scratch/session-err.txt")"

# Without --calib, export --session uses the cache the session names, relative to
# the session file, and writes the same weights as with it.
cp "$session" "$scratch/cat.json"
"$CATSCOPE" export "$MODEL" --session "$scratch/cat.json" -o "$scratch/session-cache" >/dev/null \
	2>"$scratch/session-err.txt" || fail "export --session without --calib failed: $(cat "$scratch/session-err.txt")"
cmp -s "$scratch/from-session/model.safetensors" "$scratch/session-cache/model.safetensors" ||
	fail "export --session without --calib wrote other weights than with the session's cache"
sed -e '/"calib": {/,/^  },$/c\
  "calib": null,' "$session" >"$scratch/no-cache.json"
status=0
"$CATSCOPE" export "$MODEL" --session "$scratch/no-cache.json" -o "$scratch/no-cache" >/dev/null \
	2>"$scratch/session-err.txt" || status=$?
[ "$status" -eq 2 ] || fail "export --session of a session without cache and no --calib exited $status, expected 2"
grep -q "no-cache.json records no calibration cache; pass --calib CACHE" "$scratch/session-err.txt" ||
	fail "a session without cache: $(cat "$scratch/session-err.txt")"
exit 0
