/* catscope replay: reopens a saved session in the explorer, or applies it without a
 * screen and prints the report of that state. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catscope/cli.h"
#include "catscope/report.h"
#include "catscope/session.h"
#include "catscope/tui.h"
#include "catscope/workspace.h"

static const char replay_usage[] =
	"usage: catscope replay SESSION [--batch [--format F]] [options]\n"
	"       catscope --replay SESSION [options]\n"
	"\n"
	"Opens the model and calibration cache named in SESSION (a file saved with F2 in\n"
	"the explorer, see catscope-session(5)), checks their fingerprints and applies the\n"
	"saved quantizer and transforms. Without --batch the explorer opens in the saved\n"
	"state; with --batch the report of that state is printed as 'catscope report'\n"
	"prints it.\n"
	"\n"
	"  --batch          print the report instead of opening the explorer\n"
	"  --format F       table (default), csv or json, with --batch\n"
	"  --model PATH     use this model instead of the one named in the session\n"
	"  --calib CACHE    use this calibration cache instead of the session's\n"
	"  --force          replay even when a fingerprint differs (prints a warning)\n"
	"  --from-journal   re-run the journal from its start instead of applying the\n"
	"                   final state; warns if the two disagree\n"
	"  --no-color, --ascii  as for the explorer\n";

struct replay_request {
	char notice[ERROR_MESSAGE_MAX + 16]; /* the --force warning, repeated in the explorer */
	const char *file;
	const char *model;
	const char *calib;
	bool batch;
	bool force;
	bool from_journal;
	enum report_format format;
	struct tui_options topt;
};

static int
replay_parse(int argc, char **argv, struct replay_request *req)
{
	static const struct option options[] = {
		{ "batch", no_argument, NULL, 'b' },
		{ "format", required_argument, NULL, 'f' },
		{ "model", required_argument, NULL, 'm' },
		{ "calib", required_argument, NULL, 'c' },
		{ "force", no_argument, NULL, 'F' },
		{ "from-journal", no_argument, NULL, 'j' },
		{ "no-color", no_argument, NULL, 'n' },
		{ "ascii", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct error err;
	bool format_given = false;
	int opt;

	memset(req, 0, sizeof(*req));
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 'b':
			req->batch = true;
			break;
		case 'f':
			if (report_format_parse(optarg, &req->format, &err) != 0)
				return cli_usage_error("replay", "%s", err.message);
			format_given = true;
			break;
		case 'm':
			req->model = optarg;
			break;
		case 'c':
			req->calib = optarg;
			break;
		case 'F':
			req->force = true;
			break;
		case 'j':
			req->from_journal = true;
			break;
		case 'n':
			req->topt.no_color = true;
			break;
		case 'a':
			req->topt.ascii = true;
			break;
		case 'h':
			fputs(replay_usage, stdout);
			return 1;
		default:
			return cli_option_error("replay", opt, argc, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("replay", "expected exactly one session file");
	if (format_given && !req->batch)
		return cli_usage_error("replay", "--format needs --batch");
	req->file = argv[optind];
	return 0;
}

/* Writes the absolute form of path into out: its directory through realpath (so
 * "sessions/../../x" reads as the folder it reaches) and its last component as is,
 * because the file itself may not exist. Leaves path unchanged when the directory
 * cannot be resolved either. */
static void
absolute_path(const char *path, char *out, size_t size)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX], resolved[PATH_MAX];

	snprintf(out, size, "%s", path);
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (realpath(dir, resolved) == NULL)
		return;
	snprintf(out, size, "%s/%s", strcmp(resolved, "/") == 0 ? "" : resolved,
		 slash != NULL ? slash + 1 : path);
}

/* Names the file the session refers to when it cannot be read, before the model
 * loader gives a less specific message. A path that comes from the session file is
 * given as written and as resolved, because a relative one is taken from the
 * session's directory rather than the working directory. */
static int
check_readable(const struct session *s, const char *path, const char *written, const char *field,
	       const char *option, struct error *err)
{
	char absolute[PATH_MAX + 256];
	int saved_errno;

	if (access(path, R_OK) == 0)
		return 0;
	saved_errno = errno;
	if (written == NULL)
		return error_set(err, "%s: %s: cannot read %s: %s; pass %s PATH to use another file",
				 session_file(s), field, path, strerror(saved_errno), option);
	absolute_path(path, absolute, sizeof(absolute));
	return error_set(err, "%s: %s: cannot read '%s' (resolved to %s): %s; pass %s PATH to "
			 "use another file", session_file(s), field, written, absolute,
			 strerror(saved_errno), option);
}

/* Opens the session's files and sets its state on a new analysis in *out. */
static int
replay_prepare(struct replay_request *req, struct session *s, struct workspace *ws,
	       struct analysis **out, struct error *err)
{
	struct analysis *a;

	session_set_paths(s, req->model, req->calib);
	if (check_readable(s, session_model_path(s), session_model_path_written(s), "model.path",
			   "--model", err) != 0)
		return -1;
	if (session_cache_path(s) != NULL &&
	    check_readable(s, session_cache_path(s), session_cache_path_written(s), "calib.path",
			   "--calib", err) != 0)
		return -1;
	if (cli_check_not_export(session_model_path(s), err) != 0 ||
	    workspace_open(ws, session_model_path(s), session_cache_path(s), err) != 0)
		return -1;
	if (session_check(s, ws->model, session_model_path(s), ws->cache, session_cache_path(s),
			  err) != 0) {
		if (!req->force) {
			error_append(err, "; use --force to replay anyway");
			workspace_close(ws);
			return -1;
		}
		fprintf(stderr, "catscope: warning: %s\n", err->message);
		snprintf(req->notice, sizeof(req->notice), "warning: %s", err->message);
		req->topt.notice = req->notice;
	}

	a = workspace_new_analysis(ws);
	if ((req->from_journal ? session_apply_journal(s, a, err) : session_apply(s, a, err)) != 0) {
		analysis_free(a);
		workspace_close(ws);
		return -1;
	}
	if (req->from_journal && session_state_differs(s, a, err) != 0)
		fprintf(stderr, "catscope: warning: %s; the journal's state is used\n", err->message);
	*out = a;
	return 0;
}

static int
replay_batch(const struct replay_request *req, struct analysis *a)
{
	struct error err;

	/* A failing site is reported in its row, as catscope report does. */
	if (analysis_compute_all(a, &err) != 0)
		fprintf(stderr, "catscope: %s\n", err.message);
	report_write(stdout, &a, 1, req->format);
	return 0;
}

static int
replay_explore(struct replay_request *req, struct session *s, struct workspace *ws,
	       struct analysis *a, struct error *err)
{
	const char *model, *slash;

	/* Saving again records the files actually used (after --model, --calib or
	 * --force). This replaces the stored paths, so read them only afterwards. */
	session_rebind(s, session_model_path(s), ws->model, session_cache_path(s), ws->cache);
	model = session_model_path(s);
	slash = strrchr(model, '/');
	req->topt.model_name = slash != NULL && slash[1] != '\0' ? slash + 1 : model;
	req->topt.calib_name = session_cache_path(s);
	req->topt.session = s;
	req->topt.restore_ui = true;
	analysis_worker_start(a);
	return tui_run(a, &req->topt, err);
}

int
cli_replay(int argc, char **argv)
{
	struct replay_request req;
	struct session *s;
	struct workspace ws;
	struct analysis *a;
	struct error err;
	int rc;

	rc = replay_parse(argc, argv, &req);
	if (rc != 0)
		return rc == 1 ? 0 : rc;
	if (session_load(req.file, &s, &err) != 0)
		return cli_fail(&err);
	if (replay_prepare(&req, s, &ws, &a, &err) != 0) {
		session_free(s);
		return cli_fail(&err);
	}
	if (req.batch)
		rc = replay_batch(&req, a);
	else
		rc = replay_explore(&req, s, &ws, a, &err);
	analysis_free(a);
	workspace_close(&ws);
	session_free(s);
	if (rc != 0)
		return cli_fail(&err);
	return 0;
}
