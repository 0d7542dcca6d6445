/*
 * transfer — see transfer.h. A few threads (the caller's among them) each keep
 * one request in flight and take the next piece of work from a shared queue
 * under a lock: what to send next for an upload, which blobs to ask for next
 * for a download. A big blob is fetched a piece at a time and checked once
 * whole.
 */
#include "agent/transfer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/internal.h"

#define PARALLEL 4
#define MAX_MSG (1u << 20)       /* bytes of blob data in one message */
#define MAX_FIND 10000           /* digests in one BlobFindMissing */
#define MAX_WANTS 256            /* blobs asked for in one BlobGet */
#define CALL_MS 120000

typedef struct xfer xfer;
typedef void (*xfer_fn)(xfer *x);

struct xfer {
	agent *a;
	kiln_cas *cas;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int err;
	char *errmsg;
	agent_transfer_stats st;
	/* upload: the blobs to send, the next one and where in its frame */
	char **todo;
	size_t n, next;
	uint64_t off;
	/* download: per blob, its frame so far; a queue of blob indexes to ask for */
	kiln_buf *frames;
	size_t *queue;
	size_t qhead, qlen;
	int outstanding; /* requests in flight */
	size_t done;     /* blobs complete */
};

static void fail(xfer *x, int err, const char *msg)
{
	if (!x->err) {
		x->err = err ? err : EIO;
		x->errmsg = kiln_strdup(msg);
	}
	pthread_cond_broadcast(&x->cv);
}

static void run_parallel(xfer *x, void *(*fn)(void *))
{
	pthread_t t[PARALLEL - 1];
	size_t started = 0;
	for (size_t i = 0; i < PARALLEL - 1; i++)
		if (pthread_create(&t[i], NULL, fn, x) == 0)
			started++;
	fn(x);
	for (size_t i = 0; i < started; i++)
		pthread_join(t[i], NULL);
}

/* ---- upload ---- */

/* The digests of `all` the coordinator lacks. */
static int find_missing(agent *a, const kiln_strv *all, kiln_strv *missing)
{
	for (size_t i = 0; i < all->n; i += MAX_FIND) {
		Kiln__BlobFindMissing fm = KILN__BLOB_FIND_MISSING__INIT;
		fm.digests = all->v + i;
		fm.n_digests = all->n - i < MAX_FIND ? all->n - i : MAX_FIND;
		Kiln__Request req = KILN__REQUEST__INIT;
		req.body_case = KILN__REQUEST__BODY_BLOB_FIND_MISSING;
		req.blob_find_missing = &fm;
		Kiln__Response *resp = NULL;
		int r = agent_call_expect(a, &req, CALL_MS, KILN__RESPONSE__BODY_BLOB_FIND_MISSING, &resp);
		if (r < 0)
			return r;
		for (size_t k = 0; k < resp->blob_find_missing->n_missing; k++)
			kiln_strv_push(missing, resp->blob_find_missing->missing[k]);
		kiln__response__free_unpacked(resp, NULL);
	}
	return 0;
}

/* Each thread takes whole blobs from the queue (under the lock) and reads their frames outside
   it, filling messages of up to MAX_MSG; a blob bigger than a message goes on in the next. */
static void *upload_main(void *arg)
{
	xfer *x = arg;
	uint8_t *buf = kiln_malloc(MAX_MSG);
	Kiln__BlobPiece *pieces = NULL;
	Kiln__BlobPiece **pp = NULL;
	size_t cap = 0;
	const char *cur = NULL; /* this thread's blob in progress, and where in its frame */
	uint64_t off = 0;
	bool failed = false;
	while (!failed) {
		size_t np = 0, bytes = 0;
		while (bytes < MAX_MSG) {
			if (!cur) {
				pthread_mutex_lock(&x->mu);
				if (!x->err && x->next < x->n)
					cur = x->todo[x->next++];
				failed = x->err != 0;
				pthread_mutex_unlock(&x->mu);
				if (!cur)
					break;
				off = 0;
			}
			if (np == cap) {
				cap = cap ? cap * 2 : 64;
				pieces = kiln_realloc(pieces, cap * sizeof *pieces);
			}
			size_t got = 0;
			uint64_t total = 0;
			if (kiln_cas_read_compressed(x->cas, cur, off, buf + bytes, MAX_MSG - bytes, &got,
						     &total) < 0) {
				pthread_mutex_lock(&x->mu);
				fail(x, EIO, kiln_errmsg());
				pthread_mutex_unlock(&x->mu);
				failed = true;
				break;
			}
			Kiln__BlobPiece *p = &pieces[np++];
			kiln__blob_piece__init(p);
			p->digest = (char *)cur;
			p->offset = off;
			p->total = total;
			p->data.data = buf + bytes;
			p->data.len = got;
			bytes += got;
			off += got;
			if (off >= total) {
				cur = NULL;
				pthread_mutex_lock(&x->mu);
				x->st.blobs++;
				pthread_mutex_unlock(&x->mu);
			} else if (got == 0) {
				break; /* the message is full */
			}
		}
		if (failed || np == 0)
			break;
		pthread_mutex_lock(&x->mu);
		x->st.bytes += bytes;
		pthread_mutex_unlock(&x->mu);
		/* pointers only now: `pieces` may have moved while it grew */
		pp = kiln_realloc(pp, np * sizeof *pp);
		for (size_t i = 0; i < np; i++)
			pp[i] = &pieces[i];
		Kiln__BlobPut bp = KILN__BLOB_PUT__INIT;
		bp.pieces = pp;
		bp.n_pieces = np;
		Kiln__Request req = KILN__REQUEST__INIT;
		req.body_case = KILN__REQUEST__BODY_BLOB_PUT;
		req.blob_put = &bp;
		Kiln__Response *resp = NULL;
		int r = agent_call_expect(x->a, &req, CALL_MS, KILN__RESPONSE__BODY_BLOB_PUT, &resp);
		if (resp)
			kiln__response__free_unpacked(resp, NULL);
		if (r < 0) {
			pthread_mutex_lock(&x->mu);
			fail(x, -r, kiln_errmsg());
			pthread_mutex_unlock(&x->mu);
			break;
		}
	}
	free(buf);
	free(pieces);
	free(pp);
	return NULL;
}

static int finish(xfer *x, agent_transfer_stats *st, const char *what)
{
	if (st)
		*st = x->st;
	int r = x->err ? kiln_err(x->err, "%s: %s", what, x->errmsg) : 0;
	free(x->errmsg);
	pthread_mutex_destroy(&x->mu);
	pthread_cond_destroy(&x->cv);
	return r;
}

int agent_blobs_upload(agent *a, kiln_cas *cas, const kiln_strv *digests,
		       agent_transfer_stats *st)
{
	kiln_strv missing = {0};
	int r = find_missing(a, digests, &missing);
	if (r < 0) {
		kiln_strv_free(&missing);
		return r;
	}
	xfer x = {.a = a, .cas = cas, .todo = missing.v, .n = missing.n};
	pthread_mutex_init(&x.mu, NULL);
	pthread_cond_init(&x.cv, NULL);
	if (missing.n)
		run_parallel(&x, upload_main);
	r = finish(&x, st, "upload");
	kiln_strv_free(&missing);
	return r;
}

/* ---- download ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void *download_main(void *arg)
{
	xfer *x = arg;
	size_t idx[MAX_WANTS];
	Kiln__BlobWant wants[MAX_WANTS];
	Kiln__BlobWant *wp[MAX_WANTS];
	pthread_mutex_lock(&x->mu);
	for (;;) {
		while (!x->err && x->qlen == 0 && x->outstanding > 0)
			pthread_cond_wait(&x->cv, &x->mu);
		if (x->err || x->qlen == 0)
			break;
		size_t nw = 0;
		while (x->qlen > 0 && nw < MAX_WANTS) {
			size_t i = x->queue[x->qhead];
			x->qhead = (x->qhead + 1) % x->n;
			x->qlen--;
			idx[nw] = i;
			kiln__blob_want__init(&wants[nw]);
			wants[nw].digest = x->todo[i];
			wants[nw].offset = x->frames[i].len;
			wants[nw].max = MAX_MSG;
			wp[nw] = &wants[nw];
			nw++;
		}
		x->outstanding++;
		pthread_mutex_unlock(&x->mu);

		Kiln__BlobGet bg = KILN__BLOB_GET__INIT;
		bg.wants = wp;
		bg.n_wants = nw;
		Kiln__Request req = KILN__REQUEST__INIT;
		req.body_case = KILN__REQUEST__BODY_BLOB_GET;
		req.blob_get = &bg;
		Kiln__Response *resp = NULL;
		int r = agent_call_expect(x->a, &req, CALL_MS, KILN__RESPONSE__BODY_BLOB_GET, &resp);

		pthread_mutex_lock(&x->mu);
		x->outstanding--;
		if (r < 0) {
			fail(x, -r, kiln_errmsg());
			break;
		}
		Kiln__BlobGetReply *gr = resp->blob_get;
		for (size_t k = 0; k < nw; k++) {
			size_t i = idx[k];
			const Kiln__BlobPiece *p = k < gr->n_pieces ? gr->pieces[k] : NULL;
			if (p && p->missing) {
				char msg[128];
				snprintf(msg, sizeof msg, "the coordinator has no blob %.12s", x->todo[i]);
				fail(x, ENOENT, msg);
				break;
			}
			if (p && (strcmp(p->digest, x->todo[i]) != 0 ||
				  p->offset != x->frames[i].len ||
				  p->total > 2 * kiln_cas_limits_get(x->cas)->max_blob_size + 4096)) {
				fail(x, EPROTO, "the coordinator answered another piece");
				break;
			}
			if (p) {
				kiln_buf_append(&x->frames[i], p->data.data, p->data.len);
				x->st.bytes += p->data.len;
			}
			if (p && x->frames[i].len >= p->total) {
				/* whole: check and keep it (outside the lock: it hashes) */
				kiln_buf frame = x->frames[i];
				x->frames[i] = (kiln_buf){0};
				pthread_mutex_unlock(&x->mu);
				int pr = kiln_cas_put_compressed(x->cas, x->todo[i], frame.p, frame.len);
				kiln_buf_free(&frame);
				pthread_mutex_lock(&x->mu);
				if (pr < 0) {
					fail(x, EBADMSG, kiln_errmsg());
					break;
				}
				x->st.blobs++;
				x->done++;
				continue;
			}
			/* not answered (the reply was full) or more to come: ask again */
			if (p && p->data.len == 0) {
				fail(x, EPROTO, "the coordinator sent an empty piece");
				break;
			}
			x->queue[(x->qhead + x->qlen) % x->n] = i;
			x->qlen++;
		}
		kiln__response__free_unpacked(resp, NULL);
		pthread_cond_broadcast(&x->cv);
	}
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

int agent_blobs_download(agent *a, kiln_cas *cas, const kiln_strv *digests,
			 agent_transfer_stats *st)
{
	/* each blob once, and only those the agent lacks */
	char **sorted = kiln_calloc(digests->n + 1, sizeof *sorted);
	if (digests->n) {
		memcpy(sorted, digests->v, digests->n * sizeof *sorted);
		qsort(sorted, digests->n, sizeof *sorted, cmp_str);
	}
	kiln_strv want = {0};
	for (size_t i = 0; i < digests->n; i++)
		if ((i == 0 || strcmp(sorted[i], sorted[i - 1]) != 0) &&
		    kiln_cas_has(cas, sorted[i]) != 1)
			kiln_strv_push(&want, sorted[i]);
	free(sorted);
	xfer x = {.a = a, .cas = cas, .todo = want.v, .n = want.n};
	pthread_mutex_init(&x.mu, NULL);
	pthread_cond_init(&x.cv, NULL);
	if (want.n) {
		x.frames = kiln_calloc(want.n, sizeof *x.frames);
		x.queue = kiln_calloc(want.n, sizeof *x.queue);
		for (size_t i = 0; i < want.n; i++)
			x.queue[i] = i;
		x.qlen = want.n;
		kiln_cas_batch_begin(cas);
		run_parallel(&x, download_main);
		kiln_cas_batch_end(cas);
		for (size_t i = 0; i < want.n; i++)
			kiln_buf_free(&x.frames[i]);
	}
	free(x.frames);
	free(x.queue);
	int r = finish(&x, st, "download");
	kiln_strv_free(&want);
	return r;
}
