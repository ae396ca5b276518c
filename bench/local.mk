# Benchmarks: make bench runs every program in bench_programs.
