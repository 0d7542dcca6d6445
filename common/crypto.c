/*
 * crypto — see crypto.h. AES-256-GCM through EVP, a 12-byte random nonce per
 * value, the context and key id as additional authenticated data.
 */
#include "common/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/util.h"

#define NONCE 12
#define TAG 16
#define MAX_SEALED (16u << 20)

static void key_id(kiln_key *k)
{
	char hex[65];
	kiln_sha256_hex(k->bytes, sizeof k->bytes, hex);
	memcpy(k->id, hex, 16);
	k->id[16] = '\0';
}

int kiln_key_new(kiln_key *out)
{
	if (RAND_bytes(out->bytes, sizeof out->bytes) != 1)
		return kiln_err(EIO, "no random bytes for a key");
	key_id(out);
	return 0;
}

int kiln_key_save(const char *path, const kiln_key *key)
{
	char hex[2 * KILN_KEY_BYTES + 2];
	for (size_t i = 0; i < KILN_KEY_BYTES; i++)
		snprintf(hex + 2 * i, 3, "%02x", key->bytes[i]);
	hex[2 * KILN_KEY_BYTES] = '\n';
	int r = kiln_write_file_atomic(path, hex, 2 * KILN_KEY_BYTES + 1, 0600);
	OPENSSL_cleanse(hex, sizeof hex);
	return r;
}

int kiln_key_load(const char *path, bool create, kiln_key *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && create) {
		int r = kiln_key_new(out);
		if (r == 0)
			r = kiln_key_save(path, out);
		return r;
	}
	if (fd < 0)
		return kiln_err(errno, "key file %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) ||
	    st.st_uid != geteuid()) {
		close(fd);
		return kiln_err(EPERM, "key file %s: must be a regular file of this user, mode 0600",
				path);
	}
	char hex[2 * KILN_KEY_BYTES + 8];
	ssize_t n = read(fd, hex, sizeof hex);
	close(fd);
	int r = 0;
	if (n < 2 * KILN_KEY_BYTES) {
		r = kiln_err(EINVAL, "key file %s: not a key", path);
	} else {
		for (size_t i = 0; i < KILN_KEY_BYTES && r == 0; i++) {
			unsigned v;
			char two[3] = {hex[2 * i], hex[2 * i + 1], 0};
			if (sscanf(two, "%2x", &v) != 1 || !strchr("0123456789abcdef", two[0]) ||
			    !strchr("0123456789abcdef", two[1]))
				r = kiln_err(EINVAL, "key file %s: not a key", path);
			out->bytes[i] = (uint8_t)v;
		}
	}
	OPENSSL_cleanse(hex, sizeof hex);
	if (r == 0)
		key_id(out);
	return r;
}

/* The authenticated data: key id and context. */
static int set_aad(EVP_CIPHER_CTX *ctx, const kiln_key *key, const char *context)
{
	int n;
	return EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)key->id, 16) == 1 &&
			       EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)context,
						 (int)strlen(context)) == 1
		       ? 0
		       : -1;
}

int kiln_seal(const kiln_key *key, const char *context, const void *plaintext, size_t len,
	      char **out)
{
	if (len > MAX_SEALED)
		return kiln_err(EFBIG, "a value to seal is at most 16 MiB");
	size_t raw_len = NONCE + len + TAG;
	uint8_t *raw = kiln_malloc(raw_len);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, r = -1;
	if (ctx && RAND_bytes(raw, NONCE) == 1 &&
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE, NULL) == 1 &&
	    EVP_EncryptInit_ex(ctx, NULL, NULL, key->bytes, raw) == 1 &&
	    set_aad(ctx, key, context) == 0 &&
	    EVP_EncryptUpdate(ctx, raw + NONCE, &n, plaintext, (int)len) == 1 &&
	    EVP_EncryptFinal_ex(ctx, raw + NONCE + n, &n) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG, raw + NONCE + len) == 1)
		r = 0;
	EVP_CIPHER_CTX_free(ctx);
	if (r < 0) {
		free(raw);
		return kiln_err(EIO, "sealing failed");
	}
	size_t b64 = 4 * ((raw_len + 2) / 3);
	char *s = kiln_malloc(3 + 16 + 1 + b64 + 1);
	memcpy(s, "v1:", 3);
	memcpy(s + 3, key->id, 16);
	s[19] = ':';
	EVP_EncodeBlock((uint8_t *)s + 20, raw, (int)raw_len);
	free(raw);
	*out = s;
	return 0;
}

const char *kiln_sealed_key_id(const char *sealed, char id[17])
{
	if (!sealed || strncmp(sealed, "v1:", 3) != 0 || strlen(sealed) < 20 || sealed[19] != ':')
		return NULL;
	memcpy(id, sealed + 3, 16);
	id[16] = '\0';
	return id;
}

int kiln_unseal(const kiln_key *key, const char *context, const char *sealed, char **out,
		size_t *len)
{
	char id[17];
	if (!kiln_sealed_key_id(sealed, id))
		return kiln_err(EBADMSG, "not a sealed value");
	if (strcmp(id, key->id) != 0)
		return kiln_err(ENOKEY, "sealed under key %s, not %s", id, key->id);
	const char *b64 = sealed + 20;
	size_t blen = strlen(b64);
	if (blen % 4 || blen > 4 * ((MAX_SEALED + NONCE + TAG + 2) / 3))
		return kiln_err(EBADMSG, "not a sealed value");
	uint8_t *raw = kiln_malloc(blen / 4 * 3 + 1);
	int n = EVP_DecodeBlock(raw, (const uint8_t *)b64, (int)blen);
	size_t pad = (blen && b64[blen - 1] == '=') + (blen > 1 && b64[blen - 2] == '=');
	if (n < 0 || (size_t)n < pad + NONCE + TAG) {
		free(raw);
		return kiln_err(EBADMSG, "not a sealed value");
	}
	size_t raw_len = (size_t)n - pad, plen = raw_len - NONCE - TAG;
	char *plain = kiln_malloc(plen + 1);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int m = 0, r = -1;
	if (ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE, NULL) == 1 &&
	    EVP_DecryptInit_ex(ctx, NULL, NULL, key->bytes, raw) == 1 &&
	    EVP_DecryptUpdate(ctx, NULL, &m, (const uint8_t *)key->id, 16) == 1 &&
	    EVP_DecryptUpdate(ctx, NULL, &m, (const uint8_t *)context, (int)strlen(context)) == 1 &&
	    EVP_DecryptUpdate(ctx, (uint8_t *)plain, &m, raw + NONCE, (int)plen) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG, raw + NONCE + plen) == 1 &&
	    EVP_DecryptFinal_ex(ctx, (uint8_t *)plain + m, &m) == 1)
		r = 0;
	EVP_CIPHER_CTX_free(ctx);
	free(raw);
	if (r < 0) {
		OPENSSL_cleanse(plain, plen);
		free(plain);
		return kiln_err(EBADMSG, "a sealed value does not open: altered, or not for here");
	}
	plain[plen] = '\0';
	*out = plain;
	if (len)
		*len = plen;
	return 0;
}

void kiln_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
			  char out[65])
{
	uint8_t mac[32];
	unsigned n = 0;
	HMAC(EVP_sha256(), key, (int)key_len, data, len, mac, &n);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
	out[64] = '\0';
}

bool kiln_equal_ct(const void *a, size_t alen, const void *b, size_t blen)
{
	if (alen != blen)
		return false;
	return CRYPTO_memcmp(a, b, alen) == 0;
}
