/* SPDX-License-Identifier: MIT */
/*
 * The JSON emitter (see json.h). Nesting deeper than KP_JSON_MAX_DEPTH is a
 * programming error, not an input property: the report's shape is fixed.
 */
#include <assert.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "json.h"

void kp_json_init(struct kp_json *j, FILE *out, int pretty)
{
	/* not the buffer: dump inits a document for every record */
	j->out = out;
	j->n = 0;
	j->depth = 0;
	j->pretty = pretty;
	memset(j->first, 0, sizeof(j->first));
	j->first[0] = 1;
	j->after_key = 0;
	j->flat = 0;
	j->frame_ids = NULL;
}

/*
 * Reports run to hundreds of MB (every leak group with its stack: 140 MB
 * for cc1plus's 20,000): the emitter gathers them in its own buffer,
 * written with one stdio call when full, and finds runs of plain
 * characters 16 bytes at a time (plain_run). On that trace the JSON
 * report took 0.80 s where the text one takes 0.42 (medians of 5
 * alternating runs); with each piece written by its own _unlocked stdio
 * call, as before, stdio's per-call work was a quarter of it; now 0.69
 * with the buffer, 0.63 with the scan too.
 */
static void json_flush(struct kp_json *j)
{
	if (j->n)
		fwrite_unlocked(j->buf, 1, j->n, j->out);
	j->n = 0;
}

static inline void json_put(struct kp_json *j, const void *p, size_t n)
{
	if (n > sizeof(j->buf) - j->n) {
		json_flush(j);
		if (n > sizeof(j->buf)) {
			fwrite_unlocked(p, 1, n, j->out);
			return;
		}
	}
	memcpy(j->buf + j->n, p, n);
	j->n += n;
}

static inline void json_putc(struct kp_json *j, char c)
{
	if (j->n == sizeof(j->buf))
		json_flush(j);
	j->buf[j->n++] = c;
}

static void json_indent(struct kp_json *j)
{
	static const char spaces[] = "\n                                "
				     "                                ";
	if (!j->pretty)
		return;
	size_t n = 1 + 2 * (size_t)j->depth;
	if (n > sizeof(spaces) - 1)
		n = sizeof(spaces) - 1;
	json_put(j, spaces, n);
}

/* Separator and indentation before a value or a key. */
static void json_pre(struct kp_json *j)
{
	if (j->after_key) {
		j->after_key = 0;
		return;
	}
	int first = j->first[j->depth];
	if (!first)
		json_putc(j, ',');
	j->first[j->depth] = 0;
	if (j->flat && j->depth >= j->flat) {
		if (!first && j->pretty)
			json_putc(j, ' ');
	} else if (j->depth > 0) {
		json_indent(j);
	}
}

/* The end of the run of plain characters (printable ASCII but '"' and
 * '\\', copied as they are) of s[0..n) that starts at i: 16 bytes at a
 * time where SSE2 is (x86-64 always): the report's strings are mostly
 * symbols and paths of dozens of bytes. */
static size_t plain_run(const unsigned char *s, size_t i, size_t n)
{
#ifdef __SSE2__
	const __m128i sp = _mm_set1_epi8(0x20), tilde = _mm_set1_epi8(0x7e),
		      q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
	while (n - i >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(s + i));
		/* signed compares: bytes >= 0x80 are negative, so "below
		 * a space" takes them with the control characters */
		__m128i bad = _mm_or_si128(
			_mm_or_si128(_mm_cmplt_epi8(v, sp),
				     _mm_cmpgt_epi8(v, tilde)),
			_mm_or_si128(_mm_cmpeq_epi8(v, q),
				     _mm_cmpeq_epi8(v, bs)));
		unsigned m = (unsigned)_mm_movemask_epi8(bad);
		if (m)
			return i + (size_t)__builtin_ctz(m);
		i += 16;
	}
#endif
	while (i < n && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' &&
	       s[i] != '\\')
		i++;
	return i;
}

/* \u00XX for byte c */
static void json_put_u(struct kp_json *j, unsigned c)
{
	static const char hex[] = "0123456789abcdef";
	char u[6] = { '\\', 'u', '0', '0', hex[c >> 4 & 15], hex[c & 15] };
	json_put(j, u, sizeof(u));
}

static void json_write_str(struct kp_json *j, const unsigned char *s,
			   size_t n)
{
	json_putc(j, '"');
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t run = plain_run(s, i, n);
		if (run > i) {
			json_put(j, s + i, run - i);
			i = run;
			continue;
		}
		if (c < 0x80) {
			switch (c) {
			case '"': json_put(j, "\\\"", 2); break;
			case '\\': json_put(j, "\\\\", 2); break;
			case '\n': json_put(j, "\\n", 2); break;
			case '\r': json_put(j, "\\r", 2); break;
			case '\t': json_put(j, "\\t", 2); break;
			case '\b': json_put(j, "\\b", 2); break;
			case '\f': json_put(j, "\\f", 2); break;
			default:
				if (c < 0x20 || c == 0x7f)
					json_put_u(j, c);
				else
					json_putc(j, (char)c);
			}
			i++;
			continue;
		}
		/*
		 * Validate one UTF-8 sequence strictly (no overlongs, no
		 * surrogates, nothing above U+10FFFF); copy it if valid, else
		 * escape this one byte and resynchronise at the next.
		 */
		size_t len = 0;
		uint32_t cp = 0, min = 0;
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2; cp = c & 0x1f; min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3; cp = c & 0x0f; min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4; cp = c & 0x07; min = 0x10000;
		}
		int ok = len && i + len <= n;
		for (size_t k = 1; ok && k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				ok = 0;
			else
				cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (ok && (cp < min || cp > 0x10ffff ||
			   (cp >= 0xd800 && cp <= 0xdfff)))
			ok = 0;
		if (ok) {
			json_put(j, s + i, len);
			i += len;
		} else {
			json_put_u(j, c);
			i++;
		}
	}
	json_putc(j, '"');
}

void kp_json_keyn(struct kp_json *j, const char *key, size_t n)
{
	json_pre(j);
	json_write_str(j, (const unsigned char *)key, n);
	json_put(j, j->pretty ? ": " : ":", j->pretty ? 2 : 1);
	j->after_key = 1;
}

void kp_json_begin_object(struct kp_json *j)
{
	json_pre(j);
	json_putc(j, '{');
	assert(j->depth + 1 < KP_JSON_MAX_DEPTH);
	j->first[++j->depth] = 1;
}

void kp_json_begin_flat_object(struct kp_json *j)
{
	kp_json_begin_object(j);
	if (!j->flat)
		j->flat = j->depth;
}

static void json_close(struct kp_json *j, int ch)
{
	int empty = j->first[j->depth];
	int flat = j->flat && j->depth >= j->flat;

	assert(j->depth > 0);
	if (j->depth == j->flat)
		j->flat = 0; /* the flat object itself ends */
	j->depth--;
	if (!flat && !empty)
		json_indent(j);
	json_putc(j, (char)ch);
}

void kp_json_end_object(struct kp_json *j)
{
	json_close(j, '}');
}

void kp_json_begin_array(struct kp_json *j)
{
	json_pre(j);
	json_putc(j, '[');
	assert(j->depth + 1 < KP_JSON_MAX_DEPTH);
	j->first[++j->depth] = 1;
}

void kp_json_end_array(struct kp_json *j)
{
	json_close(j, ']');
}

void kp_json_strn(struct kp_json *j, const char *s, size_t n)
{
	json_pre(j);
	json_write_str(j, (const unsigned char *)s, n);
}

void kp_json_str(struct kp_json *j, const char *s)
{
	if (!s) {
		kp_json_null(j);
		return;
	}
	kp_json_strn(j, s, strlen(s));
}

/* Decimal digits of v, with a leading '-' when neg. */
static void json_write_int(struct kp_json *j, uint64_t v, int neg)
{
	char buf[24], *p = buf + sizeof(buf);

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (neg)
		*--p = '-';
	json_put(j, p, (size_t)(buf + sizeof(buf) - p));
}

void kp_json_u64(struct kp_json *j, uint64_t v)
{
	json_pre(j);
	json_write_int(j, v, 0);
}

void kp_json_f64(struct kp_json *j, double v)
{
	json_pre(j);
	if (v != v || v > 1e300 || v < -1e300) /* NaN, inf: not JSON */
		v = 0;
	char b[32];
	int k = snprintf(b, sizeof(b), "%.6g", v);
	json_put(j, b, k > 0 && (size_t)k < sizeof(b) ? (size_t)k : 0);
}

void kp_json_i64(struct kp_json *j, int64_t v)
{
	json_pre(j);
	json_write_int(j, v < 0 ? -(uint64_t)v : (uint64_t)v, v < 0);
}

void kp_json_bool(struct kp_json *j, int v)
{
	json_pre(j);
	if (v)
		json_put(j, "true", 4);
	else
		json_put(j, "false", 5);
}

void kp_json_null(struct kp_json *j)
{
	json_pre(j);
	json_put(j, "null", 4);
}

void kp_json_end(struct kp_json *j)
{
	json_putc(j, '\n');
	json_flush(j);
}
