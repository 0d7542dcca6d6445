/* test_crypto — sealing at rest (round trip, tampering, wrong context, wrong key), key files
   (created 0600, refused when readable by others), GitHub's documented HMAC test vector, and
   constant-time comparison. */
#include "common/crypto.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <errno.h>

#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	char *dir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-crypto", &dir) == 0);
	_cleanup_free_ char *path = kiln_asprintf("%s/secret.key", dir);
	kiln_key k, k2;
	CHECK(kiln_key_load(path, false, &k) == -ENOENT);
	CHECK(kiln_key_load(path, true, &k) == 0);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(kiln_key_load(path, false, &k2) == 0);
	CHECK(memcmp(k.bytes, k2.bytes, KILN_KEY_BYTES) == 0);
	CHECK_STR(k.id, k2.id);
	CHECK_INT(strlen(k.id), 16);

	char *sealed = NULL, *open = NULL;
	size_t len = 0;
	CHECK(kiln_seal(&k, "secret:repo:o/r:TOKEN", "hunter2", 7, &sealed) == 0);
	CHECK(strncmp(sealed, "v1:", 3) == 0 && strstr(sealed, "hunter2") == NULL);
	CHECK(kiln_unseal(&k, "secret:repo:o/r:TOKEN", sealed, &open, &len) == 0);
	CHECK_STR(open, "hunter2");
	CHECK_INT(len, 7);
	free(open);
	/* the same value twice seals differently (a fresh nonce) */
	char *again = NULL;
	CHECK(kiln_seal(&k, "secret:repo:o/r:TOKEN", "hunter2", 7, &again) == 0);
	CHECK(strcmp(again, sealed) != 0);
	free(again);
	/* another context, a flipped byte, another key: none opens */
	CHECK(kiln_unseal(&k, "secret:repo:o/r:OTHER", sealed, &open, &len) == -EBADMSG);
	char *bad = kiln_strdup(sealed);
	bad[25] = bad[25] == 'A' ? 'B' : 'A';
	CHECK(kiln_unseal(&k, "secret:repo:o/r:TOKEN", bad, &open, &len) == -EBADMSG);
	free(bad);
	kiln_key other;
	CHECK(kiln_key_new(&other) == 0);
	CHECK(kiln_unseal(&other, "secret:repo:o/r:TOKEN", sealed, &open, &len) == -ENOKEY);
	char id[17];
	CHECK_STR(kiln_sealed_key_id(sealed, id), k.id);
	CHECK(kiln_unseal(&k, "x", "garbage", &open, &len) == -EBADMSG);
	_cleanup_free_ char *fake = kiln_asprintf("v1:%s:!!!!", k.id);
	CHECK(kiln_unseal(&k, "x", fake, &open, &len) == -EBADMSG);
	_cleanup_free_ char *shorty = kiln_asprintf("v1:%s:AAAA", k.id);
	CHECK(kiln_unseal(&k, "x", shorty, &open, &len) == -EBADMSG);
	free(sealed);
	/* an empty value */
	CHECK(kiln_seal(&k, "c", "", 0, &sealed) == 0);
	CHECK(kiln_unseal(&k, "c", sealed, &open, &len) == 0 && len == 0 && !*open);
	free(open);
	free(sealed);

	/* a key file others can read is refused */
	CHECK(chmod(path, 0644) == 0);
	CHECK(kiln_key_load(path, false, &k2) == -EPERM);

	/* GitHub's documented example for X-Hub-Signature-256 */
	char mac[65];
	const char *secret = "It's a Secret to Everybody", *body = "Hello, World!";
	kiln_hmac_sha256_hex(secret, strlen(secret), body, strlen(body), mac);
	CHECK_STR(mac, "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");

	CHECK(kiln_equal_ct("abc", 3, "abc", 3));
	CHECK(!kiln_equal_ct("abc", 3, "abd", 3));
	CHECK(!kiln_equal_ct("abc", 3, "ab", 2));
	kiln_rm_rf(dir);
	free(dir);
	return check_done();
}
