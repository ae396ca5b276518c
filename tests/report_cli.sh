# catscope calibrate, info and report on the real model: every site gets a row, the
# formats agree, and on this model CAT must beat no transform on mean measured SQNR.
. "$srcdir/tests/lib.sh"
require_data

cache="$scratch/stories.cache"
"$CATSCOPE" calibrate "$MODEL" "$DATA/tinystories_train_sample.txt" -o "$cache" --tokens 16384 --ctx 256 \
	>/dev/null 2>&1 || fail "calibrate failed"
"$CATSCOPE" info "$cache" >"$scratch/info.txt" || fail "info failed"
grep -q "ffn_down" "$scratch/info.txt" || fail "info lists no ffn_down site"

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

exit 0
