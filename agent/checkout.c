/*
 * checkout — see checkout.h. libgit2 1.5 has no shallow clone, so every
 * checkout is a local clone of the agent's full mirror (objects shared by
 * hard links): fetch-depth is accepted and the history is always whole,
 * which makes `git describe` work without asking.
 */
#include "agent/checkout.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/git.h"

char *agent_inside(const char *ws, const char *rel)
{
	if (!rel || !*rel || strcmp(rel, ".") == 0)
		return kiln_strdup(ws);
	if (rel[0] == '/') {
		size_t n = strlen(ws);
		if (strncmp(rel, ws, n) == 0 && (rel[n] == '/' || rel[n] == '\0') && !strstr(rel, ".."))
			return kiln_strdup(rel);
		return NULL;
	}
	if (strstr(rel, ".."))
		return NULL;
	return kiln_asprintf("%s/%s", ws, rel);
}

static void logf_(const agent_checkout_ctx *cc, const char *fmt, ...) KILN_PRINTF(2, 3);
static void logf_(const agent_checkout_ctx *cc, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	cc->log(cc->log_arg, buf);
}

int agent_checkout(const agent_checkout_ctx *cc)
{
	const Kiln__JobAssignment *s = cc->j->spec;
	const char *path = json_string_value(json_object_get(cc->with, "path"));
	_cleanup_free_ char *dir = agent_inside(cc->ws, path);
	if (!dir)
		return kiln_err(EINVAL, "checkout: path must stay inside the workspace");
	if (s->worktree) {
		logf_(cc, "Copying the working tree of %s", s->repo_url);
		return kiln_git_snapshot_worktree(s->repo_url, dir);
	}
	_cleanup_free_ char *mirrors = kiln_asprintf("%s/mirrors", cc->j->a->work_dir);
	_cleanup_free_ char *mirror = NULL;
	int rc = kiln_mkdir_p(mirrors, 0750);
	if (rc == 0)
		rc = kiln_git_mirror_for(mirrors, s->repo_url, s->sha, &mirror);
	if (rc < 0)
		return rc;
	logf_(cc, "Checking out %s at %s", s->repo_url, s->sha);
	return kiln_git_checkout(mirror, s->repo_url, s->sha, s->ref, dir);
}
