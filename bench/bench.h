/*
 * bench — what every benchmark shares: clocks, dying with a clean-up, and
 * driving a coordinator and an agent embedded in the benchmark's process.
 * Each benchmark defines BENCH_NAME before including this header.
 */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>

#include <jansson.h>

#include "agent/agent.h"
#include "common/util.h"
#include "coordinator/coord.h"

static inline int64_t mono_ns(void)
{
	return kiln_mono_ns();
}

static inline void sleep_ns(int64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Directories die() removes. */
static char *cleanup_dir, *cleanup_dir2;

static inline void die(const char *fmt, ...) KILN_PRINTF(1, 2);
static inline void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(BENCH_NAME ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (cleanup_dir)
		kiln_rm_rf(cleanup_dir);
	if (cleanup_dir2)
		kiln_rm_rf(cleanup_dir2);
	exit(2);
}

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The file system a path lives on ("ext4", "tmpfs", or its magic number). */
static inline const char *fs_name(const char *path)
{
	static char buf[32];
	struct statfs sf;
	if (statfs(path, &sf) < 0)
		return "unknown";
	switch ((unsigned long)sf.f_type) {
	case 0xEF53: return "ext4";
	case 0x01021994: return "tmpfs";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x794C7630: return "overlayfs";
	case 0x2FC12FC1: return "zfs";
	default:
		snprintf(buf, sizeof buf, "0x%lx", (unsigned long)sf.f_type);
		return buf;
	}
}

/* One API call that must answer `want`; the JSON body (owned). */
static inline json_t *api(coord *c, const char *method, const char *path, const char *query,
			  const char *body, int want)
{
	char *resp = NULL;
	int st = coord_api_sync(c, method, path, query, body, &resp);
	json_error_t err;
	json_t *v = resp ? json_loads(resp, 0, &err) : NULL;
	if (st != want || !v)
		die("%s %s: status %d: %.2000s", method, path, st, resp ? resp : "(no body)");
	free(resp);
	return v;
}

/* Is the one agent online and holding a Poll (GET /api/v1/agents says idle_ms 0)? */
static inline bool agent_parked(coord *c)
{
	json_t *v = api(c, "GET", "/api/v1/agents", NULL, NULL, 200);
	json_t *a = json_array_get(json_object_get(v, "agents"), 0);
	const char *state = json_string_value(json_object_get(a, "state"));
	bool ok = state && strcmp(state, "online") == 0 &&
		  json_integer_value(json_object_get(a, "idle_ms")) == 0;
	json_decref(v);
	return ok;
}

/* Waits until the agent runs nothing and holds its Poll. */
static inline void wait_agent_idle(coord *c, agent *a, int64_t timeout_ms)
{
	int64_t end = mono_ns() + timeout_ms * 1000000;
	for (;;) {
		if (agent_running(a) == 0 && agent_parked(c))
			return;
		if (mono_ns() > end)
			die("the agent did not become idle within %lld ms", (long long)timeout_ms);
		sleep_ns(200000);
	}
}

/* A coordinator (bus on tcp://127.0.0.1:0, store in data_dir; max_log_bytes 0 = the default)
   and an agent (labels "linux", capacity 1, working in work_dir) that dials it, idle with its
   poll held when this returns; dies if either cannot start. */
static inline void bench_start(const char *data_dir, const char *work_dir, size_t max_log_bytes,
			       int64_t idle_timeout_ms, coord **c, agent **a)
{
	coord_config cc = COORD_CONFIG_INIT;
	cc.listen = "tcp://127.0.0.1:0";
	cc.data_dir = data_dir;
	cc.max_log_bytes = max_log_bytes;
	if (coord_start(&cc, c) < 0)
		die("coord_start: %s", kiln_errmsg());
	agent_config ac = {
		.coordinator = coord_bus_url(*c),
		.name = "bench",
		.labels = "linux",
		.capacity = 1,
		.work_dir = work_dir,
	};
	if (agent_start(&ac, a) < 0)
		die("agent_start: %s", kiln_errmsg());
	wait_agent_idle(*c, *a, idle_timeout_ms);
}

#endif
