/*
 * local — `kiln run`: the repository's workflows on this machine, with no
 * server. A coordinator and one agent start in this process, joined over
 * inproc://, with their state in a temporary directory; the workflow files
 * and the working tree are taken as they are, uncommitted changes included.
 * The run is then followed exactly as `kiln logs -f` follows a remote one.
 */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/git.h"
#include "common/util.h"

#define MAX_WORKFLOW_BYTES (1u << 20)
#define MAX_WORKFLOWS 64

static volatile bool interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the workflow files of DIR (.kiln/workflows, else .github/workflows) as [{path, content}]. */
static int read_workflows(const char *root, json_t **out)
{
	static const char *const dirs[] = {".kiln/workflows", ".github/workflows"};
	for (size_t d = 0; d < KILN_ARRAY_SIZE(dirs); d++) {
		_cleanup_free_ char *dir = kiln_asprintf("%s/%s", root, dirs[d]);
		DIR *dh = opendir(dir);
		if (!dh)
			continue;
		kiln_strv names = {0};
		struct dirent *de;
		while ((de = readdir(dh)) != NULL) {
			size_t n = strlen(de->d_name);
			if ((n > 4 && strcmp(de->d_name + n - 4, ".yml") == 0) ||
			    (n > 5 && strcmp(de->d_name + n - 5, ".yaml") == 0))
				kiln_strv_push(&names, de->d_name);
		}
		closedir(dh);
		if (!names.n) {
			kiln_strv_free(&names);
			continue;
		}
		if (names.n > MAX_WORKFLOWS) {
			kiln_strv_free(&names);
			return kiln_err(E2BIG, "%s: more than %d workflow files", dir, MAX_WORKFLOWS);
		}
		qsort(names.v, names.n, sizeof *names.v, cmp_str);
		json_t *files = json_array();
		for (size_t i = 0; i < names.n; i++) {
			_cleanup_free_ char *rel = kiln_asprintf("%s/%s", dirs[d], names.v[i]);
			_cleanup_free_ char *full = kiln_asprintf("%s/%s", root, rel);
			char *text = NULL;
			size_t len = 0;
			int r = kiln_read_file(full, MAX_WORKFLOW_BYTES, &text, &len);
			if (r < 0) {
				json_decref(files);
				kiln_strv_free(&names);
				return r;
			}
			json_t *content = json_stringn(text, len);
			free(text);
			if (!content) {
				json_decref(files);
				kiln_strv_free(&names);
				return kiln_err(EINVAL, "%s: not valid UTF-8", rel);
			}
			json_array_append_new(files, json_pack("{s:s, s:o}", "path", rel, "content",
							       content));
		}
		kiln_strv_free(&names);
		*out = files;
		return 0;
	}
	return kiln_err(ENOENT, "%s: no workflow files in .kiln/workflows or .github/workflows",
			root);
}

static void usage(FILE *f)
{
	fputs("Usage: kiln run [DIR] [-W FILE] [-j JOB] [--event EVENT] [--json]\n"
	      "\n"
	      "Runs the workflows of the git repository at DIR (default: the current\n"
	      "directory) on this machine, working tree as it is.\n"
	      "\n"
	      "  -W, --workflow FILE  only this workflow file (path or file name)\n"
	      "  -j, --job JOB        only this job (and the jobs it needs)\n"
	      "      --event EVENT    the triggering event (default push)\n"
	      "      --json           print the finished runs as JSON instead of logs\n"
	      "\n"
	      "Exit status: 0 if every job succeeded, 1 if any failed, 2 on a usage or\n"
	      "workflow error.\n",
	      f);
}

typedef struct local {
	char *tmp;
	coord *c;
	agent *a;
	kiln_client *cl;
} local;

static void local_stop(local *l)
{
	kiln_client_free(l->cl);
	agent_free(l->a);
	coord_free(l->c);
	if (l->tmp)
		kiln_rm_rf(l->tmp);
	free(l->tmp);
}


/* $XDG_CACHE_HOME/kiln, else ~/.cache/kiln, made if missing; NULL (no cache kept) if neither
   can be had. */
static char *local_cache_dir(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char *dir = xdg && xdg[0] == '/' ? kiln_asprintf("%s/kiln", xdg)
		    : home && *home	   ? kiln_asprintf("%s/.cache/kiln", home)
					   : NULL;
	if (dir && kiln_mkdir_p(dir, 0700) < 0) {
		free(dir);
		dir = NULL;
	}
	return dir;
}

int cli_local_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{"workflow", required_argument, NULL, 'W'},
		{"job", required_argument, NULL, 'j'},
		{"event", required_argument, NULL, 'e'},
		{"json", no_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *workflow = NULL, *job = NULL, *event = "push";
	bool json_out = false;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "W:j:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'W': workflow = optarg; break;
		case 'j': job = optarg; break;
		case 'e': event = optarg; break;
		case 'J': json_out = true; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		cli_error("run takes one directory");
		return EXIT_USAGE;
	}
	char root[PATH_MAX];
	if (!realpath(optind < argc ? argv[optind] : ".", root)) {
		cli_error("%s: %s", optind < argc ? argv[optind] : ".", strerror(errno));
		return EXIT_USAGE;
	}
	char sha[41];
	_cleanup_free_ char *ref = NULL;
	if (kiln_git_head(root, sha, &ref) < 0) {
		cli_error("%s: not a git repository with a commit (%s)", root, kiln_errmsg());
		return EXIT_USAGE;
	}
	json_t *files = NULL;
	if (read_workflows(root, &files) < 0) {
		cli_error("%s", kiln_errmsg());
		return EXIT_USAGE;
	}

	kiln_log_setup("kiln", KILN_LOG_ERR);
	local l = {0};
	int rc = EXIT_USAGE;
	char id[24];
	kiln_random_hex(8, id);
	_cleanup_free_ char *url = kiln_asprintf("inproc://kiln-run-%s", id);
	if (kiln_mkdtemp("kiln-run", &l.tmp) < 0) {
		cli_error("%s", kiln_errmsg());
		json_decref(files);
		return EXIT_USAGE;
	}
	_cleanup_free_ char *data = kiln_asprintf("%s/coordinator", l.tmp);
	_cleanup_free_ char *work = kiln_asprintf("%s/agent", l.tmp);
	/* blobs and cache entries outlive the run, so the next one restores from them */
	_cleanup_free_ char *cache = local_cache_dir();
	_cleanup_free_ char *cache_db = cache ? kiln_asprintf("%s/caches.db", cache) : NULL;
	coord_config cc = COORD_CONFIG_INIT;
	cc.listen = url;
	cc.data_dir = data;
	cc.cas_dir = cache;
	cc.cache_db = cache_db;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	agent_config ac = {
		.coordinator = url,
		.name = "local",
		.labels = "*",
		.capacity = ncpu > 2 ? (uint32_t)ncpu : 2,
		.work_dir = work,
		.cas_dir = cache,
	};
	int started = coord_start(&cc, &l.c);
	if (started == 0)
		started = agent_start(&ac, &l.a);
	if (started < 0 && cache) {
		/* a cache this kiln cannot use (another version's, damaged) must not stop the run */
		fprintf(stderr, "kiln: warning: not using the cache in %s: %s\n", cache,
			kiln_errmsg());
		agent_free(l.a);
		coord_free(l.c);
		l.a = NULL;
		l.c = NULL;
		cc.cas_dir = cc.cache_db = NULL;
		ac.cas_dir = NULL;
		if ((started = coord_start(&cc, &l.c)) == 0)
			started = agent_start(&ac, &l.a);
	}
	if (started < 0 || kiln_client_local(l.c, &l.cl) < 0) {
		cli_error("%s", kiln_errmsg());
		json_decref(files);
		local_stop(&l);
		return EXIT_USAGE;
	}

	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o}", "repo", root, "ref",
				 ref ? ref : "HEAD", "sha", sha, "event", event, "worktree", 1,
				 "files", files);
	if (workflow)
		json_object_set_new(body, "workflow", json_string(workflow));
	if (job)
		json_object_set_new(body, "job", json_string(job));
	json_t *resp = NULL;
	int status = kiln_client_call(l.cl, "POST", "/api/v1/runs", NULL, body, &resp);
	json_decref(body);
	if (status != 201) {
		const char *e = json_string_value(json_object_get(resp, "error"));
		cli_error("%s", e ? e : kiln_errmsg());
		json_decref(resp);
		local_stop(&l);
		return EXIT_USAGE;
	}

	rc = EXIT_OK;
	json_t *finals = json_array();
	size_t i;
	json_t *run;
	json_array_foreach(json_object_get(resp, "runs"), i, run)
	{
		json_t *final = NULL;
		long long rid = json_integer_value(json_object_get(run, "id"));
		if (cli_follow(l.cl, rid, !json_out, &interrupted, &final) < 0) {
			if (interrupted)
				cli_error("interrupted");
			else
				cli_error("%s", kiln_errmsg());
			rc = EXIT_FAILED;
			break;
		}
		if (!cli_run_ok(final))
			rc = EXIT_FAILED;
		json_array_append_new(finals, final);
	}
	json_decref(resp);
	if (json_out) {
		json_t *o = json_pack("{s:O}", "runs", finals);
		json_dumpf(o, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(o);
	} else {
		json_array_foreach(finals, i, run)
			cli_summary(stdout, run);
	}
	fflush(stdout);
	json_decref(finals);
	local_stop(&l);
	return interrupted ? 130 : rc;
}
