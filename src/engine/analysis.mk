# The analysis state shared by report, the explorer, sessions and export.
libcatscope_a_SOURCES += src/engine/analysis.c
noinst_HEADERS += include/catscope/analysis.h
