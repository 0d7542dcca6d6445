/*
 * crypto — what kiln needs of cryptography, all through OpenSSL: sealing
 * values at rest with AES-256-GCM, HMAC-SHA256 for webhook signatures, and
 * comparing secrets in constant time.
 *
 * A sealed value is text: "v1:" KEYID ":" base64(nonce(12) | ciphertext |
 * tag(16)), where KEYID names the key that sealed it (so a key rotation can
 * tell old values from new). The key id and the context string (e.g.
 * "secret:repo:owner/name:NPM_TOKEN") are authenticated with the value, so a
 * sealed value copied to another row does not open.
 */
#ifndef KILN_CRYPTO_H
#define KILN_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KILN_KEY_BYTES 32

typedef struct kiln_key {
	uint8_t bytes[KILN_KEY_BYTES];
	char id[17]; /* 16 hex digits: the start of the key's SHA-256 */
} kiln_key;

/* Reads the key file at path (32 random bytes, hex), creating it 0600 if missing. A key
   file that is not 0600 (or not the owner's) is refused. */
int kiln_key_load(const char *path, bool create, kiln_key *out);
/* A new random key. */
int kiln_key_new(kiln_key *out);
/* Writes key to path (0600, atomically). */
int kiln_key_save(const char *path, const kiln_key *key);

/* Seals plaintext[0..len) under key, bound to context; *out is owned by the caller. */
int kiln_seal(const kiln_key *key, const char *context, const void *plaintext, size_t len,
	      char **out);
/* Opens a sealed value; -EBADMSG if it was altered, sealed under another context, or under
   another key (-ENOKEY when its key id is not this key's). *out is NUL-terminated, owned. */
int kiln_unseal(const kiln_key *key, const char *context, const char *sealed, char **out,
		size_t *len);
/* The key id a sealed value names, or NULL. */
const char *kiln_sealed_key_id(const char *sealed, char id[17]);

/* HMAC-SHA256 of data under key, as 64 lowercase hex digits. */
void kiln_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
			  char out[65]);
/* a == b in time independent of where they differ (lengths may leak). */
bool kiln_equal_ct(const void *a, size_t alen, const void *b, size_t blen);

#endif
