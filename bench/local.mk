# Benchmarks: make bench runs every program in bench_programs.
EXTRA_PROGRAMS += bench/bench_forward
bench_programs += bench/bench_forward
bench_bench_forward_SOURCES = bench/bench_forward.c
bench_bench_forward_LDADD = $(CS_LIBS)
CLEANFILES += $(bench_programs)
