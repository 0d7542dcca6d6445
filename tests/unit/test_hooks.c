/*
 * test_hooks — webhook signature checks (coordinator/hooks.c): GitHub's
 * documented HMAC-SHA256 test vector, Gitea's bare hex form, and what must
 * not pass (another secret, another body, a truncated or malformed header).
 */
#include "coordinator/internal.h"
#include "tests/harness/check.h"

#include <string.h>

int main(void)
{
	/* https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries */
	const char *secret = "It's a Secret to Everybody";
	const char *body = "Hello, World!";
	const char *hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
	char got[65];
	kiln_hmac_sha256_hex(secret, strlen(secret), body, strlen(body), got);
	CHECK_STR(got, hex);
	char sig[80];
	snprintf(sig, sizeof sig, "sha256=%s", hex);
	CHECK(hooks_signature_ok(secret, body, strlen(body), sig, true));
	CHECK(hooks_signature_ok(secret, body, strlen(body), hex, false)); /* Gitea */
	char upper[80];
	snprintf(upper, sizeof upper, "sha256=%s", hex);
	for (char *p = upper + 7; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	CHECK(hooks_signature_ok(secret, body, strlen(body), upper, true));
	/* what must fail */
	CHECK(!hooks_signature_ok(secret, body, strlen(body), hex, true));    /* no sha256= */
	CHECK(!hooks_signature_ok(secret, body, strlen(body), sig, false));   /* prefix in Gitea */
	CHECK(!hooks_signature_ok("another secret", body, strlen(body), sig, true));
	CHECK(!hooks_signature_ok(secret, "Hello, World?", 13, sig, true));
	CHECK(!hooks_signature_ok(secret, body, strlen(body) - 1, sig, true));
	char cut[80];
	snprintf(cut, sizeof cut, "sha256=%.63s", hex);
	CHECK(!hooks_signature_ok(secret, body, strlen(body), cut, true));
	snprintf(cut, sizeof cut, "sha256=%s0", hex);
	CHECK(!hooks_signature_ok(secret, body, strlen(body), cut, true));
	CHECK(!hooks_signature_ok(secret, body, strlen(body), "sha256=", true));
	CHECK(!hooks_signature_ok(secret, body, strlen(body), "", false));
	CHECK(!hooks_signature_ok(NULL, body, strlen(body), sig, true));
	CHECK(!hooks_signature_ok(secret, body, strlen(body), NULL, true));
	/* an empty body is signed too */
	kiln_hmac_sha256_hex(secret, strlen(secret), "", 0, got);
	snprintf(sig, sizeof sig, "sha256=%s", got);
	CHECK(hooks_signature_ok(secret, "", 0, sig, true));

	/* repository names */
	CHECK(repo_name_valid("octo/hello-world"));
	CHECK(repo_name_valid("group/sub/project.name_1"));
	CHECK(!repo_name_valid("noslash"));
	CHECK(!repo_name_valid("/abs/x"));
	CHECK(!repo_name_valid("a//b"));
	CHECK(!repo_name_valid("a/../b"));
	CHECK(!repo_name_valid("a/.git"));
	CHECK(!repo_name_valid("a/b c"));
	CHECK(!repo_name_valid("a/b/"));
	char *n = repo_path_name("octo%2Fhello", 12);
	CHECK_STR(n, "octo/hello");
	free(n);
	CHECK(repo_path_name("octo%2F..%2Fx", 13) == NULL);
	return check_done();
}
