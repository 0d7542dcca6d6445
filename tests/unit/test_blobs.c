/* test_blobs — the coordinator's blob, cache and artifact requests, sent raw over the bus as a
   hostile agent could: a blob whose content does not match its name, pieces out of bounds, a
   big blob in pieces out of order, commits of manifests whose blobs are missing, immutable
   keys, prefix lookups, bad names, and requests without a session. */
#include "common/cas.h"
#include "common/manifest.h"
#include "tests/harness/check.h"
#include "tests/harness/inproc.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "kiln.pb-c.h"

static nng_socket sock;
static char session[128];

/* One request; the response (caller frees) or NULL. */
static Kiln__Response *call(Kiln__Request *req)
{
	req->version = KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT;
	if (!req->session || !*req->session)
		req->session = session;
	size_t n = kiln__request__get_packed_size(req);
	uint8_t *buf = kiln_malloc(n ? n : 1);
	kiln__request__pack(req, buf);
	int r = nng_send(sock, buf, n, 0);
	free(buf);
	if (r != 0)
		return NULL;
	void *in = NULL;
	size_t len = 0;
	if (nng_recv(sock, &in, &len, NNG_FLAG_ALLOC) != 0)
		return NULL;
	Kiln__Response *resp = kiln__response__unpack(NULL, len, in);
	nng_free(in, len);
	return resp;
}

static int status_of(Kiln__Request *req)
{
	Kiln__Response *r = call(req);
	int st = r ? (int)r->status : -1;
	if (r)
		kiln__response__free_unpacked(r, NULL);
	return st;
}

/* Sends pieces; the status, and how many blobs the answer says were stored. */
static int put(Kiln__BlobPiece **pieces, size_t n, size_t *stored)
{
	Kiln__BlobPut bp = KILN__BLOB_PUT__INIT;
	bp.pieces = pieces;
	bp.n_pieces = n;
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_BLOB_PUT;
	req.blob_put = &bp;
	Kiln__Response *r = call(&req);
	int st = r ? (int)r->status : -1;
	*stored = r && r->body_case == KILN__RESPONSE__BODY_BLOB_PUT ? r->blob_put->n_stored : 0;
	if (r)
		kiln__response__free_unpacked(r, NULL);
	return st;
}

static size_t missing(const char *hex)
{
	char *d[] = {(char *)hex};
	Kiln__BlobFindMissing fm = KILN__BLOB_FIND_MISSING__INIT;
	fm.digests = d;
	fm.n_digests = 1;
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_BLOB_FIND_MISSING;
	req.blob_find_missing = &fm;
	Kiln__Response *r = call(&req);
	size_t n = r && r->body_case == KILN__RESPONSE__BODY_BLOB_FIND_MISSING
			   ? r->blob_find_missing->n_missing
			   : 99;
	if (r)
		kiln__response__free_unpacked(r, NULL);
	return n;
}

/* The stored frame of a blob made in a local store. */
static void frame_of(kiln_cas *cas, const void *data, size_t len, char hex[65], kiln_buf *frame)
{
	CHECK(kiln_cas_put_buf(cas, data, len, hex) >= 0);
	frame->len = 0;
	for (;;) {
		char buf[65536];
		size_t n = 0;
		uint64_t total = 0;
		CHECK(kiln_cas_read_compressed(cas, hex, frame->len, buf, sizeof buf, &n, &total) == 0);
		kiln_buf_append(frame, buf, n);
		if (frame->len >= total || n == 0)
			break;
	}
}

static Kiln__BlobPiece piece(const char *hex, uint64_t off, uint64_t total, const void *p,
			     size_t n)
{
	Kiln__BlobPiece x = KILN__BLOB_PIECE__INIT;
	x.digest = (char *)hex;
	x.offset = off;
	x.total = total;
	x.data.data = (uint8_t *)p;
	x.data.len = n;
	return x;
}

static int commit_cache(uint64_t job, const char *key, const char *manifest, bool *stored)
{
	Kiln__CacheCommit cc = KILN__CACHE_COMMIT__INIT;
	cc.job_id = job;
	cc.attempt = 0;
	cc.key = (char *)key;
	cc.version = "v";
	cc.manifest = (char *)manifest;
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_CACHE_COMMIT;
	req.cache_commit = &cc;
	Kiln__Response *r = call(&req);
	int st = r ? (int)r->status : -1;
	*stored = r && r->body_case == KILN__RESPONSE__BODY_CACHE_COMMIT && r->cache_commit->stored;
	if (r)
		kiln__response__free_unpacked(r, NULL);
	return st;
}

int main(void)
{
	fixture f = {0};
	CHECK(fx_start(&f, "test-blobs", NULL, 0) == 0);
	CHECK(nng_req0_open(&sock) == 0);
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 10000);
	CHECK(nng_dial(sock, "inproc://test-blobs", NULL, 0) == 0);

	/* without a session nothing is answered but "register" */
	Kiln__BlobFindMissing none = KILN__BLOB_FIND_MISSING__INIT;
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_BLOB_FIND_MISSING;
	req.blob_find_missing = &none;
	req.session = "made-up";
	CHECK_INT(status_of(&req), KILN__STATUS__STATUS_UNAUTHORIZED);
	Kiln__Register reg = KILN__REGISTER__INIT;
	reg.name = "hostile";
	reg.capacity = 1;
	reg.version = "test";
	req = (Kiln__Request)KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_REGISTER;
	req.register_ = &reg;
	req.session = "";
	Kiln__Response *rr = call(&req);
	CHECK(rr && rr->status == KILN__STATUS__STATUS_OK);
	if (rr) {
		snprintf(session, sizeof session, "%s", rr->register_->session);
		kiln__response__free_unpacked(rr, NULL);
	}

	char *ldir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-blobs", &ldir) == 0);
	kiln_cas *local = NULL;
	CHECK(kiln_cas_open(ldir, NULL, &local) == 0);

	/* a small blob in one piece: stored, found, and served back as sent */
	char hex[65];
	kiln_buf fr = {0};
	frame_of(local, "hello blobs\n", 12, hex, &fr);
	CHECK_INT(missing(hex), 1);
	Kiln__BlobPiece p1 = piece(hex, 0, fr.len, fr.p, fr.len), *pp[4] = {&p1};
	size_t stored = 0;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_OK);
	CHECK_INT(stored, 1);
	CHECK_INT(missing(hex), 0);
	Kiln__BlobWant w = KILN__BLOB_WANT__INIT, *wp[2] = {&w};
	w.digest = hex;
	Kiln__BlobGet bg = KILN__BLOB_GET__INIT;
	bg.wants = wp;
	bg.n_wants = 1;
	req = (Kiln__Request)KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_BLOB_GET;
	req.blob_get = &bg;
	rr = call(&req);
	CHECK(rr && rr->body_case == KILN__RESPONSE__BODY_BLOB_GET && rr->blob_get->n_pieces == 1 &&
	      rr->blob_get->pieces[0]->data.len == fr.len &&
	      memcmp(rr->blob_get->pieces[0]->data.data, fr.p, fr.len) == 0);
	if (rr)
		kiln__response__free_unpacked(rr, NULL);
	/* a blob that is not there is said to be missing, not left out */
	char absent[65];
	kiln_sha256_hex("absent", 6, absent);
	w.digest = absent;
	rr = call(&req);
	CHECK(rr && rr->blob_get->n_pieces == 1 && rr->blob_get->pieces[0]->missing);
	if (rr)
		kiln__response__free_unpacked(rr, NULL);

	/* content under another blob's name: refused, nothing kept */
	char other[65];
	kiln_buf ofr = {0};
	frame_of(local, "other content", 13, other, &ofr);
	Kiln__BlobPiece lie = piece(absent, 0, ofr.len, ofr.p, ofr.len);
	pp[0] = &lie;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_BAD_REQUEST);
	CHECK_INT(missing(absent), 1);
	/* not a frame at all */
	Kiln__BlobPiece junk = piece(absent, 0, 5, "junk!", 5);
	pp[0] = &junk;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_BAD_REQUEST);
	/* pieces out of bounds, and a name that is no digest */
	Kiln__BlobPiece oob = piece(other, 10, 5, "x", 1);
	pp[0] = &oob;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_BAD_REQUEST);
	Kiln__BlobPiece bad = piece("../../etc/passwd", 0, ofr.len, ofr.p, ofr.len);
	pp[0] = &bad;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_BAD_REQUEST);
	CHECK_INT(missing("ABCDEF"), 99); /* refused */

	/* a big blob (3 MB that does not compress) in three pieces, the last one first */
	size_t big = 3u << 20;
	char *data = kiln_malloc(big);
	uint32_t x = 12345;
	for (size_t i = 0; i < big; i++) {
		x = x * 1103515245 + 12345;
		data[i] = (char)(x >> 16);
	}
	char bighex[65];
	kiln_buf bfr = {0};
	frame_of(local, data, big, bighex, &bfr);
	size_t third = bfr.len / 3;
	Kiln__BlobPiece a = piece(bighex, 0, bfr.len, bfr.p, third);
	Kiln__BlobPiece b = piece(bighex, third, bfr.len, bfr.p + third, third);
	Kiln__BlobPiece c = piece(bighex, 2 * third, bfr.len, bfr.p + 2 * third, bfr.len - 2 * third);
	pp[0] = &c;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_OK);
	CHECK_INT(stored, 0);
	pp[0] = &a;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_OK);
	CHECK_INT(missing(bighex), 1);
	pp[0] = &b;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_OK);
	CHECK_INT(stored, 1);
	CHECK_INT(missing(bighex), 0);

	/* caches: a job to commit for (queued: attempt 0) */
	long long run = fx_submit(&f, ".github/workflows/w.yml",
				  "on: push\njobs:\n  j:\n    runs-on: nowhere\n    steps:\n"
				  "      - run: 'true'\n",
				  NULL);
	CHECK(run > 0);
	_cleanup_free_ char *rpath = kiln_asprintf("/api/v1/runs/%lld", run);
	json_t *rv = NULL;
	CHECK_INT(fx_api(&f, "GET", rpath, NULL, NULL, &rv), 200);
	uint64_t job = (uint64_t)json_integer_value(
		json_object_get(json_array_get(json_object_get(rv, "jobs"), 0), "id"));
	json_decref(rv);
	bool ok = false;
	/* a manifest that was never sent */
	CHECK_INT(commit_cache(job, "k-1", absent, &ok), KILN__STATUS__STATUS_BAD_REQUEST);
	/* a manifest naming a blob that was never sent */
	char fhex[65];
	kiln_buf ffr = {0};
	frame_of(local, "file content\n", 13, fhex, &ffr);
	kiln_manifest m = {0};
	kiln_manifest_entry e = {.path = "f.txt", .type = KILN_ENTRY_FILE, .mode = 0644, .size = 13};
	memcpy(e.digest, fhex, 65);
	m.v = &e;
	m.n = m.cap = 1;
	char mhex[65];
	CHECK(kiln_manifest_save(local, &m, mhex) == 0);
	kiln_buf mfr = {0};
	char again[65];
	_cleanup_free_ char *mjson = kiln_manifest_to_json(&m);
	frame_of(local, mjson, strlen(mjson), again, &mfr);
	CHECK_STR(again, mhex);
	Kiln__BlobPiece mp = piece(mhex, 0, mfr.len, mfr.p, mfr.len);
	pp[0] = &mp;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_OK);
	CHECK_INT(commit_cache(job, "k-1", mhex, &ok), KILN__STATUS__STATUS_BAD_REQUEST);
	/* with its blob: stored; the same key again: refused (keys are immutable) */
	Kiln__BlobPiece fp = piece(fhex, 0, ffr.len, ffr.p, ffr.len);
	pp[0] = &fp;
	CHECK_INT(put(pp, 1, &stored), KILN__STATUS__STATUS_OK);
	CHECK_INT(commit_cache(job, "k-1", mhex, &ok), KILN__STATUS__STATUS_OK);
	CHECK(ok);
	CHECK_INT(commit_cache(job, "k-1", mhex, &ok), KILN__STATUS__STATUS_OK);
	CHECK(!ok);
	CHECK_INT(commit_cache(job, "a,b", mhex, &ok), KILN__STATUS__STATUS_BAD_REQUEST);
	/* a lookup by prefix finds it; another version does not */
	char *keys[] = {"k-2", "k-"};
	Kiln__CacheLookup cl = KILN__CACHE_LOOKUP__INIT;
	cl.job_id = job;
	cl.keys = keys;
	cl.n_keys = 2;
	cl.version = "v";
	req = (Kiln__Request)KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_CACHE_LOOKUP;
	req.cache_lookup = &cl;
	rr = call(&req);
	CHECK(rr && rr->body_case == KILN__RESPONSE__BODY_CACHE_LOOKUP && rr->cache_lookup->found);
	if (rr) {
		CHECK_STR(rr->cache_lookup->key, "k-1");
		CHECK_STR(rr->cache_lookup->manifest, mhex);
		kiln__response__free_unpacked(rr, NULL);
	}
	cl.version = "w";
	rr = call(&req);
	CHECK(rr && !rr->cache_lookup->found);
	if (rr)
		kiln__response__free_unpacked(rr, NULL);

	/* artifacts: a name that could become a path is refused */
	Kiln__ArtifactCommit ac = KILN__ARTIFACT_COMMIT__INIT;
	ac.job_id = job;
	ac.name = "../escape";
	ac.manifest = mhex;
	req = (Kiln__Request)KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_ARTIFACT_COMMIT;
	req.artifact_commit = &ac;
	CHECK_INT(status_of(&req), KILN__STATUS__STATUS_BAD_REQUEST);
	ac.name = "good";
	CHECK_INT(status_of(&req), KILN__STATUS__STATUS_OK);

	free(data);
	kiln_buf_free(&fr);
	kiln_buf_free(&ofr);
	kiln_buf_free(&bfr);
	kiln_buf_free(&ffr);
	kiln_buf_free(&mfr);
	kiln_cas_close(local);
	kiln_rm_rf(ldir);
	free(ldir);
	nng_close(sock);
	fx_stop(&f);
	return check_done();
}
