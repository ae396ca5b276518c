# Calibration: running windows, per-site statistics, the cache file.
libcatscope_a_SOURCES += src/calib/sitestats.c
noinst_HEADERS += include/catscope/sitestats.h
