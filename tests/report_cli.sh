# catscope calibrate, info and report on the real model: every site gets a row, the
# formats agree, and on this model CAT must beat no transform on mean measured SQNR.
. "$srcdir/tests/lib.sh"
require_data

cache="$scratch/stories.cache"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$cache" --tokens 16384 --ctx 256 \
	>/dev/null 2>&1 || fail "calibrate failed"
"$CATSCOPE" info "$cache" >"$scratch/info.txt" || fail "info failed"
grep -q "ffn_down" "$scratch/info.txt" || fail "info lists no ffn_down site"
# info's C(x) covers all tokens, not report's sample, and its header says so.
grep -q ' C(x) all dB ' "$scratch/info.txt" || fail "info does not label its C(x) as over all tokens: $(grep block "$scratch/info.txt")"

"$CATSCOPE" report "$MODEL" --calib "$cache" --transform none --transform cat --format csv \
	>"$scratch/report.csv" || fail "report failed"
rows=$(grep -c ',ok,' "$scratch/report.csv")
[ "$rows" -eq 40 ] || fail "expected 40 computed rows (20 sites x 2 transforms), got $rows"

# Column 16 is meas_db (block,site,dim,transform,state, then the metrics).
mean() {
	awk -F, -v t="$1" 'NR > 1 && $4 == t { s += $16; n++ } END { printf "%.4f", s / n }' "$scratch/report.csv"
}
none=$(mean none)
cat=$(mean cat)
echo "mean measured SQNR: none $none dB, cat $cat dB"
awk -v a="$cat" -v b="$none" 'BEGIN { exit !(a > b + 1.0) }' || fail "CAT ($cat dB) does not beat none ($none dB) by 1 dB"

# The table and JSON print the same measured SQNR as the CSV for a site.
"$CATSCOPE" report "$MODEL" --calib "$cache" --transform cat --format json >"$scratch/report.json" ||
	fail "report --format json failed"
csv_value=$(awk -F, '$1 == 2 && $2 == "ffn_down" && $4 == "cat" { printf "%.2f", $16 }' "$scratch/report.csv")
grep -q '"meas_db"' "$scratch/report.json" || fail "JSON has no meas_db"
"$CATSCOPE" report "$MODEL" --calib "$cache" --transform cat >"$scratch/report.txt"
grep "^blk.2.ffn_down" "$scratch/report.txt" | grep -q -- " $csv_value " ||
	fail "table and CSV disagree on blk.2.ffn_down ($csv_value)"

# cat:full reaches the best alignment computed at several sites, so their headroom (column 14
# of the CSV) rounds to zero from below. The table prints it as 0.00, never -0.00.
"$CATSCOPE" report "$MODEL" --calib "$cache" --transform cat:full --format csv >"$scratch/full.csv" ||
	fail "report --transform cat:full failed"
awk -F, 'NR > 1 && $14 ~ /^-0\.00/ { found = 1 } END { exit !found }' "$scratch/full.csv" ||
	fail "no headroom rounds to zero from below, so the -0.00 check below tests nothing"
"$CATSCOPE" report "$MODEL" --calib "$cache" --transform cat:full >"$scratch/full.txt" ||
	fail "report --transform cat:full failed"
grep -q -e ' -0\.00 ' "$scratch/full.txt" && fail "the table prints -0.00: $(grep -e ' -0\.00 ' "$scratch/full.txt" | head -n 1)"

# A site that cannot be computed makes the report incomplete: exit 1, other rows kept.
cp "$cache" "$scratch/bad.cache"
size=$(wc -c <"$scratch/bad.cache")
printf 'XXXX' | dd of="$scratch/bad.cache" bs=1 seek=$((size - 5000)) conv=notrunc 2>/dev/null
status=0
"$CATSCOPE" report "$MODEL" --calib "$scratch/bad.cache" --format csv >"$scratch/bad.csv" 2>/dev/null || status=$?
[ "$status" -eq 1 ] || fail "report with a corrupt record exited $status, expected 1"
grep -q ',failed,' "$scratch/bad.csv" || fail "report shows no failed row for the corrupt record"
grep -q ',ok,' "$scratch/bad.csv" || fail "report dropped the sites it could compute"

# Quantizer options without a cache would silently measure full precision.
status=0
"$CATSCOPE" eval "$MODEL" "$DATA/tinystories_train_sample.txt" --transform cat >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "eval --transform without --calib exited $status, expected 2"

# The explorer refuses to run without a terminal instead of drawing into a pipe.
status=0
timeout 20 "$CATSCOPE" "$MODEL" </dev/null >"$scratch/screen.txt" 2>/dev/null || status=$?
[ "$status" -eq 1 ] || fail "the explorer without a terminal exited $status, expected 1"
[ ! -s "$scratch/screen.txt" ] || fail "the explorer without a terminal wrote to standard output"
exit 0
