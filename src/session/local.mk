# Sources and tests of the session part: the session file, the journal, replay.
libcatscope_a_SOURCES += src/session/session.c src/session/session_read.c \
	src/session/session_write.c
noinst_HEADERS += include/catscope/session.h src/session/session_impl.h

check_PROGRAMS += tests/test_session
CS_TESTS += tests/test_session
tests_test_session_SOURCES = tests/test_session.c
tests_test_session_CFLAGS = $(TEST_CFLAGS)
tests_test_session_LDADD = $(TEST_LIBS)

CS_SCRIPT_TESTS += tests/session_replay.sh tests/session_errors.sh tests/session_tui.sh
EXTRA_DIST += tests/session_replay.sh tests/session_errors.sh tests/session_tui.sh \
	sessions/stories260K-cat.json
dist_man_MANS += man/catscope-session.5
