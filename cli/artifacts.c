/*
 * artifacts — `kiln artifacts` (a run's artifacts as a table) and `kiln
 * download` (one artifact into a directory, a .tar.zst or a .zip).
 *
 * A download goes through the API's blob reads (/api/v1/blobs/DIGEST, the
 * stored zstd frames in base64 pieces of up to 1 MiB) into a temporary local
 * store, which checks every blob against its digest as it is put; nothing the
 * server sends is trusted beyond that. The manifest is loaded (and checked)
 * from that store, then restored with kiln_manifest_restore, which never
 * writes outside the target, or streamed through libarchive into a temporary
 * file renamed over FILE at the end. Memory stays bounded: frames bigger than
 * FRAME_IN_MEMORY are decompressed to a scratch file as they arrive, and files
 * bigger than 4 MiB reach the archive through a scratch file (common/archive.c).
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "common/archive.h"
#include "common/cas.h"
#include "common/manifest.h"
#include "common/util.h"

#define BLOB_PIECE (1u << 20)      /* bytes asked for in one /api/v1/blobs call (its cap) */
#define FRAME_IN_MEMORY (8u << 20) /* frames up to this size are gathered in memory */
#define PROGRESS_NS 100000000      /* the progress bar is redrawn at most every 100 ms */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* A JSON string's value, "" for anything else. */
static const char *str(json_t *v)
{
	const char *s = json_string_value(v);
	return s ? s : "";
}

static char *human(uint64_t n)
{
	if (n >= 1000ull * 1000 * 1000)
		return kiln_asprintf("%.1f GB", (double)n / 1e9);
	if (n >= 1000ull * 1000)
		return kiln_asprintf("%.1f MB", (double)n / 1e6);
	if (n >= 1000)
		return kiln_asprintf("%.1f KB", (double)n / 1e3);
	return kiln_asprintf("%llu B", (unsigned long long)n);
}

/* ---- kiln artifacts ---- */

/* The run's artifacts (GET …/artifacts), or NULL after reporting why. */
static json_t *list_artifacts(kiln_client *cl, long long run)
{
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld/artifacts", run);
	json_t *resp = cli_call(cl, "GET", path, NULL, NULL);
	if (resp && !json_is_array(json_object_get(resp, "artifacts"))) {
		cli_error("unexpected answer from the server for %s", path);
		json_decref(resp);
		return NULL;
	}
	return resp;
}

int cli_artifacts(const cli_globals *g, int argc, char **argv)
{
	bool js;
	long long id = cli_run_and_json(argc, argv, &js);
	if (!id) {
		cli_error("usage: kiln artifacts RUN [--json]");
		return EXIT_USAGE;
	}
	kiln_client *cl;
	if (cli_connect(g, &cl) < 0)
		return EXIT_USAGE;
	json_t *resp = list_artifacts(cl, id);
	kiln_client_free(cl);
	if (!resp)
		return EXIT_FAILED;
	if (js) {
		cli_print_json(resp);
		json_decref(resp);
		return EXIT_OK;
	}
	json_t *list = json_object_get(resp, "artifacts");
	size_t i;
	json_t *a;
	int width = 4;
	json_array_foreach(list, i, a)
	{
		size_t n = strlen(str(json_object_get(a, "name")));
		if (n > (size_t)width)
			width = n > 60 ? 60 : (int)n;
	}
	printf("%-*s %7s %10s  %s\n", width, "NAME", "FILES", "SIZE", "EXPIRES");
	json_array_foreach(list, i, a)
	{
		time_t exp = (time_t)(json_integer_value(json_object_get(a, "expires_ms")) / 1000);
		struct tm tm;
		char when[32] = "-";
		if (exp > 0 && localtime_r(&exp, &tm))
			strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
		_cleanup_free_ char *size =
			human((uint64_t)json_integer_value(json_object_get(a, "size")));
		printf("%-*s %7lld %10s  %s\n", width, str(json_object_get(a, "name")),
		       (long long)json_integer_value(json_object_get(a, "files")), size, when);
	}
	json_decref(resp);
	return EXIT_OK;
}

/* ---- kiln download ---- */

typedef struct progress {
	bool on; /* stderr is a terminal */
	bool drawn;
	uint64_t done;  /* bytes of finished files */
	uint64_t total; /* bytes of every file */
	int64_t last_ns;
} progress;

/* Redraws the bar for done + partial bytes, unless it was drawn less than 100 ms ago. */
static void progress_draw(progress *p, uint64_t partial, bool force)
{
	if (!p->on || !p->total) /* nothing to show before the manifest is in */
		return;
	int64_t now = kiln_mono_ns();
	if (!force && p->drawn && now - p->last_ns < PROGRESS_NS)
		return;
	p->last_ns = now;
	p->drawn = true;
	uint64_t got = p->done + partial;
	if (got > p->total)
		got = p->total;
	int pct = p->total ? (int)(got * 100 / p->total) : 100;
	char bar[31];
	int fill = pct * 30 / 100;
	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[30] = 0;
	_cleanup_free_ char *a = human(got), *b = human(p->total);
	fprintf(stderr, "\r\033[K[%s] %3d%%  %s / %s", bar, pct, a, b);
	fflush(stderr);
}

static void progress_clear(progress *p)
{
	if (p->on && p->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	p->drawn = false;
}

typedef struct dl {
	kiln_client *cl;
	kiln_cas *cas;
	char *tmp; /* the temporary store's directory */
	progress prog;
} dl;

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = write(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return kiln_err(errno, "write: %s", strerror(errno));
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Decodes base64 text (as EVP_EncodeBlock writes it) into a new buffer. */
static int b64_decode(const char *s, size_t len, unsigned char **out, size_t *n)
{
	if (len % 4 || len > INT32_MAX)
		return kiln_err(EPROTO, "malformed base64 from the server");
	*out = kiln_malloc(len / 4 * 3 + 1);
	*n = 0;
	if (!len)
		return 0;
	int k = EVP_DecodeBlock(*out, (const unsigned char *)s, (int)len);
	size_t pad = (s[len - 1] == '=') + (s[len - 2] == '=');
	if (k < 0 || (size_t)k < pad) {
		free(*out);
		*out = NULL;
		return kiln_err(EPROTO, "malformed base64 from the server");
	}
	*n = (size_t)k - pad;
	return 0;
}

/* A big frame decompressed into a scratch file as it arrives. */
typedef struct unzip {
	ZSTD_DCtx *dc;
	int fd;
	uint64_t out, max;
	size_t last; /* the last ZSTD_decompressStream result: 0 at the end of a frame */
	char *buf;
	size_t cap;
} unzip;

static int unzip_feed(unzip *u, const char *hex, const void *p, size_t n)
{
	ZSTD_inBuffer in = {p, n, 0};
	for (;;) {
		ZSTD_outBuffer ob = {u->buf, u->cap, 0};
		u->last = ZSTD_decompressStream(u->dc, &ob, &in);
		if (ZSTD_isError(u->last))
			return kiln_err(EBADMSG, "blob %s: not a valid zstd frame", hex);
		u->out += ob.pos;
		if (u->out > u->max)
			return kiln_err(EFBIG, "blob %s: decompresses past %llu bytes", hex,
					(unsigned long long)u->max);
		int r = write_all(u->fd, u->buf, ob.pos);
		if (r < 0)
			return r;
		/* with the input used up, stop once the output buffer was not filled */
		if (in.pos == in.size && ob.pos < ob.size)
			return 0;
	}
}

/* Fetches blob hex from the server into the local store, checked against its digest.
   size is its uncompressed size (for the progress bar; 0 if unknown). */
static int fetch_blob(dl *d, const char *hex, uint64_t size)
{
	if (strcmp(hex, KILN_CAS_EMPTY_DIGEST) == 0) {
		char got[65];
		int r = kiln_cas_put_buf(d->cas, "", 0, got);
		return r < 0 ? r : 0;
	}
	const kiln_cas_limits *lim = kiln_cas_limits_get(d->cas);
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/blobs/%s", hex);
	kiln_buf frame = {0};
	unzip u = {.fd = -1, .last = 1};
	uint64_t off = 0, total = 0;
	int r = 0;
	for (;;) {
		if (interrupted) {
			r = kiln_err(EINTR, "interrupted");
			break;
		}
		char q[64];
		snprintf(q, sizeof q, "offset=%llu&max=%u", (unsigned long long)off, BLOB_PIECE);
		json_t *resp = NULL;
		int st = kiln_client_call(d->cl, "GET", path, q, NULL, &resp);
		if (st < 0) {
			r = st;
			break;
		}
		if (st != 200) {
			const char *e = json_string_value(json_object_get(resp, "error"));
			r = kiln_err(st == 404 ? ENOENT : EIO, "blob %s: %s (HTTP %d)", hex,
				     e ? e : "request failed", st);
			json_decref(resp);
			break;
		}
		json_t *jt = json_object_get(resp, "total"), *jo = json_object_get(resp, "offset");
		json_t *jd = json_object_get(resp, "data");
		if (!json_is_integer(jt) || json_integer_value(jt) < 0 || !json_is_string(jd) ||
		    !json_is_integer(jo) || (uint64_t)json_integer_value(jo) != off ||
		    (off && (uint64_t)json_integer_value(jt) != total)) {
			json_decref(resp);
			r = kiln_err(EPROTO, "blob %s: unexpected answer from the server", hex);
			break;
		}
		total = (uint64_t)json_integer_value(jt);
		unsigned char *data = NULL;
		size_t n = 0;
		r = b64_decode(json_string_value(jd), json_string_length(jd), &data, &n);
		json_decref(resp);
		if (r < 0)
			break;
		if ((n == 0 && off < total) || n > total - off) {
			free(data);
			r = kiln_err(EPROTO,
				     "blob %s: the server sent %zu bytes at offset %llu of %llu", hex,
				     n, (unsigned long long)off, (unsigned long long)total);
			break;
		}
		if (off == 0 && total > FRAME_IN_MEMORY) {
			/* too big to hold: decompressed to a file as it comes, stored from there */
			u.dc = ZSTD_createDCtx();
			u.cap = ZSTD_DStreamOutSize();
			u.buf = kiln_malloc(u.cap);
			u.max = lim->max_blob_size;
			if (!u.dc) {
				free(data);
				r = kiln_err(ENOMEM, "out of memory");
				break;
			}
			ZSTD_DCtx_setParameter(u.dc, ZSTD_d_windowLogMax, 27);
			if ((u.fd = kiln_scratch_fd(d->tmp)) < 0) {
				free(data);
				r = u.fd;
				break;
			}
		}
		if (u.dc)
			r = unzip_feed(&u, hex, data, n);
		else
			kiln_buf_append(&frame, data, n);
		free(data);
		if (r < 0)
			break;
		off += n;
		progress_draw(&d->prog, total ? (uint64_t)((double)size * off / total) : 0, false);
		if (off >= total)
			break;
	}
	if (r == 0 && !u.dc) {
		r = kiln_cas_put_compressed(d->cas, hex, frame.p ? frame.p : "", frame.len);
	} else if (r == 0) {
		char got[65];
		uint64_t n = 0;
		if (u.last != 0)
			r = kiln_err(EBADMSG, "blob %s: the zstd frame is truncated", hex);
		else if (lseek(u.fd, 0, SEEK_SET) < 0)
			r = kiln_err(errno, "lseek: %s", strerror(errno));
		else if ((r = kiln_cas_put_fd(d->cas, u.fd, got, &n)) >= 0 &&
			 strcmp(got, hex) != 0) {
			kiln_cas_remove(d->cas, got);
			r = kiln_err(EBADMSG, "blob %s: content has digest %s; refused", hex, got);
		}
	}
	kiln_buf_free(&frame);
	ZSTD_freeDCtx(u.dc);
	free(u.buf);
	if (u.fd >= 0)
		close(u.fd);
	return r < 0 ? r : 0;
}

/* Every file blob of m that the local store lacks, with the progress bar. */
static int fetch_files(dl *d, const kiln_manifest *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].type == KILN_ENTRY_FILE)
			d->prog.total += m->v[i].size;
	progress_draw(&d->prog, 0, true);
	for (size_t i = 0; i < m->n; i++) {
		const kiln_manifest_entry *e = &m->v[i];
		if (e->type != KILN_ENTRY_FILE)
			continue;
		int r = kiln_cas_has(d->cas, e->digest);
		if (r == 0)
			r = fetch_blob(d, e->digest, e->size);
		if (r < 0)
			return r;
		d->prog.done += e->size;
		progress_draw(&d->prog, 0, false);
	}
	progress_draw(&d->prog, 0, true);
	return 0;
}

/* Writes the archive to `file` through a temporary file beside it and rename(). */
static int archive_to(dl *d, const kiln_manifest *m, const char *file, bool zip)
{
	_cleanup_free_ char *tmp = kiln_asprintf("%s.tmp.XXXXXX", file);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", file, strerror(errno));
	mode_t mask = umask(0);
	umask(mask);
	int r = 0;
	if (fchmod(fd, 0666 & ~mask) < 0)
		r = kiln_err(errno, "%s: %s", tmp, strerror(errno));
	if (r == 0)
		r = kiln_archive_write(d->cas, m, fd, zip ? KILN_ARCHIVE_ZIP : KILN_ARCHIVE_TAR_ZST, d->tmp,
				       &interrupted);
	if (r == 0 && fsync(fd) < 0)
		r = kiln_err(errno, "%s: %s", tmp, strerror(errno));
	if (close(fd) < 0 && r == 0)
		r = kiln_err(errno, "%s: %s", tmp, strerror(errno));
	if (r == 0 && rename(tmp, file) < 0)
		r = kiln_err(errno, "%s: %s", file, strerror(errno));
	if (r < 0)
		unlink(tmp);
	return r;
}

/* The artifact called name in the list, or NULL after saying which ones there are. */
static json_t *find_artifact(json_t *list, const char *name, long long run)
{
	size_t i;
	json_t *a;
	json_array_foreach(list, i, a)
	{
		const char *n = json_string_value(json_object_get(a, "name"));
		if (n && strcmp(n, name) == 0)
			return a;
	}
	kiln_buf have = {0};
	json_array_foreach(list, i, a)
	{
		if (i)
			kiln_buf_puts(&have, ", ");
		kiln_buf_puts(&have, str(json_object_get(a, "name")));
	}
	if (have.len)
		cli_error("no artifact '%s' in run %lld (it has: %s)", name, run, have.p);
	else
		cli_error("no artifact '%s' in run %lld (it has none)", name, run);
	kiln_buf_free(&have);
	return NULL;
}

static int download(dl *d, json_t *art, const char *dir, const char *file, bool zip)
{
	const char *manifest = json_string_value(json_object_get(art, "manifest"));
	if (!manifest || !kiln_cas_digest_valid(manifest))
		return kiln_err(EPROTO, "the server gave no valid manifest digest");
	int r = kiln_mkdtemp("kiln-download", &d->tmp);
	if (r < 0)
		return r;
	if ((r = kiln_cas_open(d->tmp, NULL, &d->cas)) < 0)
		return r;
	_cleanup_(kiln_manifest_freep) kiln_manifest *m = NULL;
	if ((r = fetch_blob(d, manifest, 0)) < 0 ||
	    (r = kiln_manifest_load(d->cas, manifest, &m)) < 0)
		return r;
	/* one transaction for the small blobs */
	if ((r = kiln_cas_batch_begin(d->cas)) < 0)
		return r;
	r = fetch_files(d, m);
	int e = kiln_cas_batch_end(d->cas);
	if (r == 0 && e < 0)
		r = e;
	progress_clear(&d->prog);
	if (r < 0)
		return r;
	if (file)
		return archive_to(d, m, file, zip);
	return kiln_manifest_restore(d->cas, m, dir, NULL, NULL);
}

int cli_download(const cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'},
		{"tar", required_argument, NULL, 't'},
		{"zip", required_argument, NULL, 'z'},
		{0},
	};
	const char *dir = NULL, *file = NULL;
	bool zip = false;
	int modes = 0, ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (ch) {
		case 'o': dir = optarg; modes++; break;
		case 't': file = optarg; zip = false; modes++; break;
		case 'z': file = optarg; zip = true; modes++; break;
		default: return EXIT_USAGE;
		}
	}
	long long id = optind + 2 == argc ? cli_run_id(argv[optind]) : 0;
	if (!id || modes > 1 || (dir && !*dir) || (file && !*file)) {
		cli_error("usage: kiln download RUN NAME [-o DIR | --tar FILE.tar.zst | --zip FILE.zip]");
		return EXIT_USAGE;
	}
	const char *name = argv[optind + 1];
	kiln_client *cl;
	if (cli_connect(g, &cl) < 0)
		return EXIT_USAGE;
	json_t *resp = list_artifacts(cl, id);
	json_t *art = resp ? find_artifact(json_object_get(resp, "artifacts"), name, id) : NULL;
	if (!art) {
		json_decref(resp);
		kiln_client_free(cl);
		return EXIT_FAILED;
	}
	if (!dir && !file)
		dir = name; /* the server only accepts names that are one path component */

	struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	dl d = {.cl = cl, .prog = {.on = isatty(STDERR_FILENO) == 1}};
	int r = download(&d, art, dir, file, zip);
	progress_clear(&d.prog);
	kiln_cas_close(d.cas);
	if (d.tmp && kiln_rm_rf(d.tmp) < 0 && r == 0)
		fprintf(stderr, "kiln: warning: cannot remove %s\n", d.tmp);
	free(d.tmp);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	kiln_client_free(cl);
	if (r < 0) {
		cli_error("download of '%s' from run %lld failed: %s", name, id, kiln_errmsg());
		json_decref(resp);
		return EXIT_FAILED;
	}
	_cleanup_free_ char *size =
		human((uint64_t)json_integer_value(json_object_get(art, "size")));
	printf("Downloaded artifact %s (%lld files, %s) to %s\n", name,
	       (long long)json_integer_value(json_object_get(art, "files")), size, file ? file : dir);
	json_decref(resp);
	return EXIT_OK;
}
