#!/bin/sh
# Runs every cmocka test program given before "--" and every shell test after it,
# shows their output, and ends with the line "N passed, N failed" that CI reads.
# A cmocka program contributes its own test counts; a script counts as one test,
# or as skipped when it exits 77.
passed=0
failed=0
skipped=0
failed_names=""
mode=c
for t in "$@"; do
	if [ "$t" = "--" ]; then
		mode=sh
		continue
	fi
	log=$(mktemp)
	if [ "$mode" = c ]; then
		./"$t" >"$log" 2>&1
		status=$?
		cat "$log"
		ok=$(sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
		bad=$(sed -n 's/.*\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
		skip=$(sed -n 's/^ \([0-9]*\) SKIPPED TEST.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
		skipped=$((skipped + skip))
		passed=$((passed + ok))
		failed=$((failed + bad))
		if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
			# A crash before cmocka's summary still counts as a failure.
			failed=$((failed + 1))
		fi
		if [ "$status" -ne 0 ]; then
			failed_names="$failed_names $t"
		fi
	else
		$SHELL "$srcdir/$t" >"$log" 2>&1
		status=$?
		sed 's/^/    /' "$log"
		if [ "$status" -eq 0 ]; then
			echo "PASS: $t"
			passed=$((passed + 1))
		elif [ "$status" -eq 77 ]; then
			echo "SKIP: $t"
			skipped=$((skipped + 1))
		else
			echo "FAIL: $t (exit $status)"
			failed=$((failed + 1))
			failed_names="$failed_names $t"
		fi
	fi
	rm -f "$log"
done
if [ -n "$failed_names" ]; then
	echo "failing:$failed_names"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
