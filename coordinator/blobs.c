/*
 * blobs — the coordinator's content-addressed store (common/cas.h) and the
 * bus requests that move blobs. Hashing, (de)compression and file I/O never
 * run on the core thread: the core checks the agent's session and hands the
 * request here, to one worker thread with a queue, which answers on the bus
 * itself. A blob whose frame fits one message is checked and stored as it
 * arrives; a bigger one is gathered in uploads/<digest> (pieces may come in
 * any order, from several agents at once: the bytes at an offset are the same
 * for everyone) and checked once every byte is there.
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/manifest.h"

#define MAX_REPLY (1u << 20)   /* bytes of blob data in one answer */
#define MAX_DIGESTS 10000      /* in one BlobFindMissing */
#define UPLOAD_IDLE_MS (3600 * 1000) /* a partial upload untouched this long is dropped */

typedef struct range {
	uint64_t from, to;
} range;

/* A big blob being gathered. */
typedef struct upload {
	char digest[65];
	int fd;
	uint64_t total;
	range *got; /* received byte ranges, sorted and merged */
	size_t ngot;
	int64_t touched_ms;
	struct upload *next;
} upload;

typedef struct blob_job {
	blobs_work_fn work; /* other work for the worker (then ctx and req are NULL) */
	bus_ctx *ctx;
	Kiln__Request *req;
	blobs_done_fn done; /* for commits: runs on the core thread after the check */
	void *arg;
	struct blob_job *next;
} blob_job;

struct blobs {
	coord *c;
	kiln_cas *cas;
	char *upload_dir;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	blob_job *head, *tail;
	bool stop;
	upload *uploads; /* (worker) */
};

kiln_cas *blobs_cas(coord *c)
{
	return c->blobs ? c->blobs->cas : NULL;
}

/* ---- requests ---- */

static void find_missing(blobs *b, bus_ctx *ctx, Kiln__BlobFindMissing *fm)
{
	if (fm->n_digests > MAX_DIGESTS) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, "too many digests in one request");
		return;
	}
	char **missing = kiln_calloc(fm->n_digests + 1, sizeof *missing);
	size_t n = 0;
	for (size_t i = 0; i < fm->n_digests; i++) {
		if (!kiln_cas_digest_valid(fm->digests[i])) {
			free(missing);
			bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, "not a SHA-256 digest");
			return;
		}
		if (kiln_cas_has(b->cas, fm->digests[i]) != 1)
			missing[n++] = fm->digests[i];
	}
	Kiln__BlobFindMissingReply r = KILN__BLOB_FIND_MISSING_REPLY__INIT;
	r.missing = missing;
	r.n_missing = n;
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.body_case = KILN__RESPONSE__BODY_BLOB_FIND_MISSING;
	resp.blob_find_missing = &r;
	bus_reply(ctx, &resp);
	free(missing);
}

static void upload_free(upload *u)
{
	if (u->fd >= 0)
		close(u->fd);
	free(u->got);
	free(u);
}

static void upload_drop(blobs *b, upload *u)
{
	for (upload **p = &b->uploads; *p; p = &(*p)->next) {
		if (*p == u) {
			*p = u->next;
			break;
		}
	}
	_cleanup_free_ char *path = kiln_asprintf("%s/%s", b->upload_dir, u->digest);
	unlink(path);
	upload_free(u);
}

/* Records [from, to) as received; returns the bytes now held. */
static uint64_t upload_mark(upload *u, uint64_t from, uint64_t to)
{
	u->got = kiln_realloc(u->got, (u->ngot + 1) * sizeof *u->got);
	size_t i = 0;
	while (i < u->ngot && u->got[i].from < from)
		i++;
	memmove(u->got + i + 1, u->got + i, (u->ngot - i) * sizeof *u->got);
	u->got[i] = (range){from, to};
	u->ngot++;
	size_t k = 0;
	for (size_t j = 1; j < u->ngot; j++) {
		if (u->got[j].from <= u->got[k].to) {
			if (u->got[j].to > u->got[k].to)
				u->got[k].to = u->got[j].to;
		} else {
			u->got[++k] = u->got[j];
		}
	}
	u->ngot = k + 1;
	uint64_t held = 0;
	for (size_t j = 0; j < u->ngot; j++)
		held += u->got[j].to - u->got[j].from;
	return held;
}

/* Checks and stores a gathered upload; the upload is gone afterwards either way. */
static int upload_finish(blobs *b, upload *u)
{
	int r;
	char *frame = NULL;
	if (u->total > (uint64_t)SIZE_MAX / 2) {
		r = kiln_err(EFBIG, "blob %s: too big", u->digest);
	} else {
		frame = kiln_malloc((size_t)u->total + 1);
		ssize_t n = pread(u->fd, frame, (size_t)u->total, 0);
		r = n == (ssize_t)u->total
			    ? kiln_cas_put_compressed(b->cas, u->digest, frame, (size_t)u->total)
			    : kiln_err(EIO, "blob %s: upload unreadable", u->digest);
	}
	free(frame);
	upload_drop(b, u);
	return r;
}

static int put_piece(blobs *b, const Kiln__BlobPiece *p, bool *stored)
{
	*stored = false;
	if (!kiln_cas_digest_valid(p->digest))
		return kiln_err(EINVAL, "not a SHA-256 digest");
	const kiln_cas_limits *lim = kiln_cas_limits_get(b->cas);
	if (p->total > lim->max_blob_size || p->offset > p->total ||
	    p->data.len > p->total - p->offset)
		return kiln_err(EINVAL, "blob %s: piece out of bounds", p->digest);
	if (p->offset == 0 && p->data.len == p->total) {
		/* the whole frame in one piece: check and store it now */
		int r = kiln_cas_put_compressed(b->cas, p->digest, p->data.data, p->data.len);
		*stored = r >= 0;
		return r;
	}
	if (kiln_cas_has(b->cas, p->digest) == 1) {
		*stored = p->offset + p->data.len == p->total;
		return 0;
	}
	upload *u = b->uploads;
	while (u && strcmp(u->digest, p->digest) != 0)
		u = u->next;
	if (u && u->total != p->total)
		return kiln_err(EINVAL, "blob %s: pieces disagree on its size", p->digest);
	if (!u) {
		_cleanup_free_ char *path = kiln_asprintf("%s/%s", b->upload_dir, p->digest);
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return kiln_err(errno, "%s: %s", path, strerror(errno));
		u = kiln_calloc(1, sizeof *u);
		memcpy(u->digest, p->digest, 65);
		u->fd = fd;
		u->total = p->total;
		u->next = b->uploads;
		b->uploads = u;
	}
	u->touched_ms = kiln_now_ms();
	const uint8_t *q = p->data.data;
	size_t left = p->data.len;
	uint64_t off = p->offset;
	while (left > 0) {
		ssize_t n = pwrite(u->fd, q, left, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = kiln_err(errno, "blob %s: %s", p->digest, strerror(errno));
			upload_drop(b, u);
			return r;
		}
		q += n;
		left -= (size_t)n;
		off += (uint64_t)n;
	}
	if (upload_mark(u, p->offset, p->offset + p->data.len) < u->total)
		return 0;
	int r = upload_finish(b, u);
	*stored = r >= 0;
	return r;
}

static void put(blobs *b, bus_ctx *ctx, Kiln__BlobPut *bp)
{
	char **stored = kiln_calloc(bp->n_pieces + 1, sizeof *stored);
	size_t n = 0;
	kiln_cas_batch_begin(b->cas);
	int r = 0;
	for (size_t i = 0; i < bp->n_pieces && r >= 0; i++) {
		bool done = false;
		r = put_piece(b, bp->pieces[i], &done);
		if (done)
			stored[n++] = bp->pieces[i]->digest;
	}
	kiln_cas_batch_end(b->cas);
	if (r < 0) {
		kiln_log(KILN_LOG_WARNING, "blob upload refused: %s", kiln_errmsg());
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, kiln_errmsg());
	} else {
		Kiln__BlobPutReply pr = KILN__BLOB_PUT_REPLY__INIT;
		pr.stored = stored;
		pr.n_stored = n;
		Kiln__Response resp = KILN__RESPONSE__INIT;
		resp.body_case = KILN__RESPONSE__BODY_BLOB_PUT;
		resp.blob_put = &pr;
		bus_reply(ctx, &resp);
	}
	free(stored);
}

static void get(blobs *b, bus_ctx *ctx, Kiln__BlobGet *bg)
{
	for (size_t i = 0; i < bg->n_wants; i++) {
		if (!kiln_cas_digest_valid(bg->wants[i]->digest)) {
			bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, "not a SHA-256 digest");
			return;
		}
	}
	/* one buffer for the whole answer: each piece is a slice of it */
	uint8_t *buf = kiln_malloc(MAX_REPLY);
	Kiln__BlobPiece *pieces = kiln_calloc(bg->n_wants + 1, sizeof *pieces);
	Kiln__BlobPiece **pp = kiln_calloc(bg->n_wants + 1, sizeof *pp);
	size_t n = 0, bytes = 0;
	for (size_t i = 0; i < bg->n_wants && bytes < MAX_REPLY; i++) {
		const Kiln__BlobWant *w = bg->wants[i];
		size_t cap = w->max && w->max < MAX_REPLY - bytes ? w->max : MAX_REPLY - bytes;
		size_t got = 0;
		uint64_t total = 0;
		Kiln__BlobPiece *p = &pieces[n];
		kiln__blob_piece__init(p);
		p->digest = w->digest;
		pp[n++] = p;
		if (kiln_cas_read_compressed(b->cas, w->digest, w->offset, buf + bytes, cap, &got,
					     &total) < 0) {
			p->missing = true;
			continue;
		}
		p->offset = w->offset;
		p->total = total;
		p->data.data = buf + bytes;
		p->data.len = got;
		bytes += got;
	}
	Kiln__BlobGetReply gr = KILN__BLOB_GET_REPLY__INIT;
	gr.pieces = pp;
	gr.n_pieces = n;
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.body_case = KILN__RESPONSE__BODY_BLOB_GET;
	resp.blob_get = &gr;
	bus_reply(ctx, &resp);
	free(buf);
	free(pieces);
	free(pp);
}

/* Whether the manifest and every blob it names are stored. */
static int manifest_complete(blobs *b, const char *digest)
{
	if (!kiln_cas_digest_valid(digest))
		return kiln_err(EINVAL, "not a manifest digest");
	kiln_manifest *m = NULL;
	int r = kiln_manifest_load(b->cas, digest, &m);
	if (r < 0)
		return kiln_err(-r, "manifest %.12s: %s", digest, kiln_errmsg());
	kiln_strv missing = {0};
	r = kiln_manifest_find_missing(b->cas, m, &missing);
	if (r >= 0 && missing.n)
		r = kiln_err(ENOENT, "manifest %.12s: %zu of its blobs are not stored", digest,
			     missing.n);
	kiln_strv_free(&missing);
	kiln_manifest_free(m);
	return r;
}

static void commit_on_core(coord *c, void *arg)
{
	blob_job *j = arg;
	j->done(c, j->ctx, j->req, j->arg);
	kiln__request__free_unpacked(j->req, NULL);
	free(j);
}

static void run_job(blobs *b, blob_job *j)
{
	if (j->work) {
		j->work(b->c, b->cas, j->arg);
		free(j);
		return;
	}
	Kiln__Request *req = j->req;
	switch (req->body_case) {
	case KILN__REQUEST__BODY_BLOB_FIND_MISSING:
		find_missing(b, j->ctx, req->blob_find_missing);
		break;
	case KILN__REQUEST__BODY_BLOB_PUT:
		put(b, j->ctx, req->blob_put);
		break;
	case KILN__REQUEST__BODY_BLOB_GET:
		get(b, j->ctx, req->blob_get);
		break;
	case KILN__REQUEST__BODY_CACHE_COMMIT:
	case KILN__REQUEST__BODY_ARTIFACT_COMMIT: {
		const char *manifest = req->body_case == KILN__REQUEST__BODY_CACHE_COMMIT
					       ? req->cache_commit->manifest
					       : req->artifact_commit->manifest;
		if (manifest_complete(b, manifest) < 0) {
			bus_reply_status(j->ctx, KILN__STATUS__STATUS_BAD_REQUEST, kiln_errmsg());
			break;
		}
		core_post(b->c, commit_on_core, j);
		return;
	}
	default:
		bus_reply_status(j->ctx, KILN__STATUS__STATUS_BAD_REQUEST, "not a blob request");
	}
	kiln__request__free_unpacked(req, NULL);
	free(j);
}

static void drop_idle_uploads(blobs *b)
{
	int64_t now = kiln_now_ms();
	for (upload *u = b->uploads, *next; u; u = next) {
		next = u->next;
		if (now - u->touched_ms > UPLOAD_IDLE_MS)
			upload_drop(b, u);
	}
}

static void *worker(void *arg)
{
	blobs *b = arg;
	pthread_mutex_lock(&b->mu);
	for (;;) {
		while (!b->head && !b->stop)
			pthread_cond_wait(&b->cv, &b->mu);
		blob_job *j = b->head;
		if (!j)
			break;
		b->head = j->next;
		if (!b->head)
			b->tail = NULL;
		pthread_mutex_unlock(&b->mu);
		run_job(b, j);
		drop_idle_uploads(b);
		pthread_mutex_lock(&b->mu);
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

void blobs_request(coord *c, bus_ctx *ctx, Kiln__Request *req, blobs_done_fn done, void *arg)
{
	blobs *b = c->blobs;
	pthread_mutex_lock(&b->mu);
	if (b->stop || !b->started) {
		pthread_mutex_unlock(&b->mu);
		bus_reply_status(ctx, KILN__STATUS__STATUS_UNAVAILABLE, "the coordinator is stopping");
		kiln__request__free_unpacked(req, NULL);
		return;
	}
	blob_job *j = kiln_calloc(1, sizeof *j);
	j->ctx = ctx;
	j->req = req;
	j->done = done;
	j->arg = arg;
	if (b->tail)
		b->tail->next = j;
	else
		b->head = j;
	b->tail = j;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

void blobs_work(coord *c, blobs_work_fn fn, void *arg)
{
	blobs *b = c->blobs;
	pthread_mutex_lock(&b->mu);
	if (b->stop || !b->started) {
		pthread_mutex_unlock(&b->mu);
		fn(c, NULL, arg);
		return;
	}
	blob_job *j = kiln_calloc(1, sizeof *j);
	j->work = fn;
	j->arg = arg;
	if (b->tail)
		b->tail->next = j;
	else
		b->head = j;
	b->tail = j;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

int blobs_start(coord *c)
{
	blobs *b = kiln_calloc(1, sizeof *b);
	b->c = c;
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	c->blobs = b;
	const char *root = c->cas_dir;
	int r = kiln_cas_open(root, NULL, &b->cas);
	if (r < 0)
		return r;
	b->upload_dir = kiln_asprintf("%s/cas/uploads", root);
	if ((r = kiln_clear_dir(b->upload_dir, 0700)) < 0)
		return r;
	if (pthread_create(&b->thread, NULL, worker, b) != 0)
		return kiln_err(EAGAIN, "cannot start a thread");
	b->started = true;
	return 0;
}

void blobs_stop(coord *c)
{
	blobs *b = c->blobs;
	if (!b || !b->started)
		return;
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	pthread_join(b->thread, NULL); /* it finishes what is queued first */
	b->started = false;
}

void blobs_free(coord *c)
{
	blobs *b = c->blobs;
	if (!b)
		return;
	blobs_stop(c);
	while (b->uploads) {
		upload *u = b->uploads;
		b->uploads = u->next;
		upload_free(u);
	}
	kiln_cas_close(b->cas);
	free(b->upload_dir);
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
	free(b);
	c->blobs = NULL;
}
