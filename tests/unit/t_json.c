/*
 * The analyzer's JSON emitter (tools/analyze/json.c): strings escaped
 * exactly as a plain reference escaper does it, byte by byte, whatever
 * their length and wherever an escape falls (the emitter scans 16 bytes
 * at a time), and documents longer than its buffer written whole.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "json.h"

/* The emitter's output for a document of one string, without its final
 * newline. The caller frees it. */
static char *emit_str(const unsigned char *s, size_t n, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	struct kp_json j;

	kp_json_init(&j, f, 0);
	kp_json_strn(&j, (const char *)s, n);
	kp_json_end(&j);
	fclose(f);
	*len = size - 1;
	return buf;
}

/* The UTF-8 sequence that starts at s[i] (len bytes, strictly valid: no
 * overlong form, no surrogate, nothing above U+10FFFF), or 0. */
static size_t ref_utf8(const unsigned char *s, size_t i, size_t n)
{
	unsigned c = s[i];
	size_t len = c >= 0xc2 && c <= 0xdf ? 2 :
		     c >= 0xe0 && c <= 0xef ? 3 :
		     c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	if (!len || i + len > n)
		return 0;
	uint32_t cp = c & (0x7f >> len);
	for (size_t k = 1; k < len; k++) {
		if ((s[i + k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i + k] & 0x3f);
	}
	static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* The reference: what json.h promises, one byte at a time. */
static size_t ref_escape(const unsigned char *s, size_t n, char *out)
{
	size_t o = 0;
	out[o++] = '"';
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t u = c >= 0x80 ? ref_utf8(s, i, n) : 0;
		if (u) {
			memcpy(out + o, s + i, u);
			o += u;
			i += u;
			continue;
		}
		const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" :
				c == '\n' ? "\\n" : c == '\r' ? "\\r" :
				c == '\t' ? "\\t" : c == '\b' ? "\\b" :
				c == '\f' ? "\\f" : NULL;
		if (e) {
			memcpy(out + o, e, 2);
			o += 2;
		} else if (c < 0x20 || c >= 0x7f) {
			o += (size_t)sprintf(out + o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
		i++;
	}
	out[o++] = '"';
	return o;
}

static int same_as_ref(const unsigned char *s, size_t n)
{
	static char want[6 * 4096 + 2];
	size_t got_len, want_len = ref_escape(s, n, want);
	char *got = emit_str(s, n, &got_len);
	int ok = got_len == want_len && !memcmp(got, want, want_len);
	if (!ok)
		printf("#   %zu bytes: got %.*s\n#   want %.*s\n", n,
		       (int)got_len, got, (int)want_len, want);
	free(got);
	return ok;
}

TEST(strings_known)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "", "\"\"" },
		{ "plain", "\"plain\"" },
		{ "a\"b\\c", "\"a\\\"b\\\\c\"" },
		{ "\n\r\t\b\f\x01\x1f\x7f", "\"\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f\"" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"" },
		/* overlong, surrogate, above U+10FFFF, cut short */
		{ "\xc0\xaf", "\"\\u00c0\\u00af\"" },
		{ "\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\"" },
		{ "\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\"" },
		{ "x\xe2\x82", "\"x\\u00e2\\u0082\"" },
		/* 16-byte blocks: an escape as the last byte of one, and
		 * at the first of the next */
		{ "0123456789abcde\"", "\"0123456789abcde\\\"\"" },
		{ "0123456789abcdef\\tail", "\"0123456789abcdef\\\\tail\"" },
		{ "C:\\Windows\\System32\\", "\"C:\\\\Windows\\\\System32\\\\\"" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		size_t len;
		char *got = emit_str((const unsigned char *)cases[k].in,
				     strlen(cases[k].in), &len);
		CHECK(len == strlen(cases[k].out) &&
		      !memcmp(got, cases[k].out, len));
		CHECK(same_as_ref((const unsigned char *)cases[k].in,
				  strlen(cases[k].in)));
		free(got);
	}
}

/* Random strings of every length up to 80, mostly plain, with escapes,
 * UTF-8 and stray bytes at random places. */
TEST(strings_random)
{
	static const unsigned char odd[] = { '"', '\\', '\n', 0, 0x1f, 0x7f,
					     0x80, 0xc3, 0xa9, 0xe2, 0xf0,
					     0xff, 0x20, 0x7e };
	uint64_t x = 0x2545f4914f6cdd1dull;
	unsigned char s[80];
	int bad = 0;

	for (int round = 0; round < 20000 && !bad; round++) {
		size_t n = (size_t)round % (sizeof(s) + 1);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			unsigned r = (unsigned)(x >> 24);
			s[i] = r % 8 ? (unsigned char)('a' + r % 26) :
				       odd[(r >> 8) % sizeof(odd)];
		}
		bad = !same_as_ref(s, n);
	}
	CHECK(!bad);
}

/* A document of many times the emitter's buffer: strings of every length
 * around its size and members that end exactly at its end. */
TEST(document_longer_than_buffer)
{
	char *buf = NULL, *want = malloc(1 << 22);
	size_t size = 0, w = 0;
	FILE *f = open_memstream(&buf, &size);
	struct kp_json j;
	static char s[2 * KP_JSON_BUF + 100];

	REQUIRE(want != NULL);
	memset(s, 'x', sizeof(s));
	kp_json_init(&j, f, 0);
	kp_json_begin_array(&j);
	want[w++] = '[';
	for (size_t n = 0; n < sizeof(s); n += n < 200 ? 1 : 97) {
		kp_json_strn(&j, s, n);
		kp_json_u64(&j, n);
		w += (size_t)sprintf(want + w, "%s\"%.*s\",%zu", n ? "," : "",
				     (int)n, s, n);
	}
	kp_json_end_array(&j);
	kp_json_end(&j);
	want[w++] = ']';
	want[w++] = '\n';
	fclose(f);
	CHECK_EQ_U(size, w);
	CHECK(size == w && !memcmp(buf, want, w));
	free(buf);
	free(want);
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(strings_known), T(strings_random),
			 T(document_longer_than_buffer));
}
