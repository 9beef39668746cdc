/* SPDX-License-Identifier: MIT */
/*
 * The JSON emitter (see json.h). Nesting deeper than KP_JSON_MAX_DEPTH is a
 * programming error, not an input property: the report's shape is fixed.
 */
#include <assert.h>
#include <string.h>

#include "json.h"

void kp_json_init(struct kp_json *j, FILE *out, int pretty)
{
	memset(j, 0, sizeof(*j));
	j->out = out;
	j->pretty = pretty;
	j->first[0] = 1;
}

/*
 * Reports run to hundreds of MB (every leak group with its stack): the
 * emitter writes through the _unlocked stdio calls (one thread writes the
 * report) and copies runs of plain characters in one call.
 */
static void json_indent(struct kp_json *j)
{
	static const char spaces[] = "\n                                "
				     "                                ";
	if (!j->pretty)
		return;
	size_t n = 1 + 2 * (size_t)j->depth;
	if (n > sizeof(spaces) - 1)
		n = sizeof(spaces) - 1;
	fwrite_unlocked(spaces, 1, n, j->out);
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
		putc_unlocked(',', j->out);
	j->first[j->depth] = 0;
	if (j->flat && j->depth >= j->flat) {
		if (!first && j->pretty)
			putc_unlocked(' ', j->out);
	} else if (j->depth > 0) {
		json_indent(j);
	}
}

static void json_write_str(struct kp_json *j, const unsigned char *s,
			   size_t n)
{
	FILE *o = j->out;

	putc_unlocked('"', o);
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t run = i;
		while (run < n && s[run] >= 0x20 && s[run] < 0x7f &&
		       s[run] != '"' && s[run] != '\\')
			run++;
		if (run > i) {
			fwrite_unlocked(s + i, 1, run - i, o);
			i = run;
			continue;
		}
		if (c < 0x80) {
			switch (c) {
			case '"': fputs_unlocked("\\\"", o); break;
			case '\\': fputs_unlocked("\\\\", o); break;
			case '\n': fputs_unlocked("\\n", o); break;
			case '\r': fputs_unlocked("\\r", o); break;
			case '\t': fputs_unlocked("\\t", o); break;
			case '\b': fputs_unlocked("\\b", o); break;
			case '\f': fputs_unlocked("\\f", o); break;
			default:
				if (c < 0x20 || c == 0x7f)
					fprintf(o, "\\u%04x", c);
				else
					putc_unlocked((int)c, o);
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
			fwrite_unlocked(s + i, 1, len, o);
			i += len;
		} else {
			fprintf(o, "\\u%04x", c);
			i++;
		}
	}
	putc_unlocked('"', o);
}

void kp_json_key(struct kp_json *j, const char *key)
{
	json_pre(j);
	json_write_str(j, (const unsigned char *)key, strlen(key));
	fputs_unlocked(j->pretty ? ": " : ":", j->out);
	j->after_key = 1;
}

void kp_json_begin_object(struct kp_json *j)
{
	json_pre(j);
	putc_unlocked('{', j->out);
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
	putc_unlocked(ch, j->out);
}

void kp_json_end_object(struct kp_json *j)
{
	json_close(j, '}');
}

void kp_json_begin_array(struct kp_json *j)
{
	json_pre(j);
	putc_unlocked('[', j->out);
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
	fwrite_unlocked(p, 1, (size_t)(buf + sizeof(buf) - p), j->out);
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
	fprintf(j->out, "%.6g", v);
}

void kp_json_i64(struct kp_json *j, int64_t v)
{
	json_pre(j);
	json_write_int(j, v < 0 ? -(uint64_t)v : (uint64_t)v, v < 0);
}

void kp_json_bool(struct kp_json *j, int v)
{
	json_pre(j);
	fputs_unlocked(v ? "true" : "false", j->out);
}

void kp_json_null(struct kp_json *j)
{
	json_pre(j);
	fputs_unlocked("null", j->out);
}

void kp_json_end(struct kp_json *j)
{
	putc_unlocked('\n', j->out);
}
