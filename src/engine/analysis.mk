# The analysis state shared by report, the explorer, sessions and export.
libcatscope_a_SOURCES += src/engine/analysis.c src/engine/workspace.c src/engine/simulate.c
noinst_HEADERS += include/catscope/analysis.h include/catscope/workspace.h include/catscope/simulate.h
