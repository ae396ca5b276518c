#!/bin/sh
# make demo: calibrate the real stories260K model on real text, then open the explorer.
# The data comes from CATSCOPE_DATA (default ../shared/data); without it, the model
# and a text sample are downloaded from their public homes into demo/data.
set -eu
bin=${CATSCOPE_BIN:-./catscope}
data=${CATSCOPE_DATA:-../shared/data}
model="$data/stories260K.gguf"
text="$data/tinystories_train_sample.txt"

if [ ! -r "$model" ] || [ ! -r "$text" ]; then
	data=demo/data
	model="$data/stories260K.gguf"
	text="$data/TinyStories-valid.txt"
	mkdir -p "$data"
	model_url=https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf
	text_url=https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt
	for pair in "$model $model_url" "$text $text_url"; do
		set -- $pair
		[ -r "$1" ] && continue
		echo "demo: $1 is missing; downloading $2"
		if ! curl -fL --retry 2 -o "$1.part" "$2"; then
			rm -f "$1.part"
			echo "demo: the download failed (no network?). Set CATSCOPE_DATA to a folder with" >&2
			echo "demo: stories260K.gguf and tinystories_train_sample.txt and run make demo again." >&2
			exit 1
		fi
		mv "$1.part" "$1"
	done
fi

mkdir -p demo
cache=demo/stories260K.cache
if [ ! -r "$cache" ]; then
	echo "demo: calibrating $model on 65536 tokens of $text"
	"$bin" calibrate "$model" "$text" -o "$cache" --tokens 65536
fi
exec "$bin" "$model" --calib "$cache"
