/* SPDX-License-Identifier: MIT */
/*
 * The JSON emitter (see json.h). Nesting deeper than KP_JSON_MAX_DEPTH is a
 * programming error, not an input property: the report's shape is fixed.
 */
#include <assert.h>
#include <inttypes.h>
#include <string.h>

#include "json.h"

void kp_json_init(struct kp_json *j, FILE *out, int pretty)
{
	memset(j, 0, sizeof(*j));
	j->out = out;
	j->pretty = pretty;
	j->first[0] = 1;
}

static void json_indent(struct kp_json *j)
{
	if (!j->pretty)
		return;
	fputc('\n', j->out);
	for (int i = 0; i < j->depth; i++)
		fputs("  ", j->out);
}

/* Separator and indentation before a value or a key. */
static void json_pre(struct kp_json *j)
{
	if (j->after_key) {
		j->after_key = 0;
		return;
	}
	if (!j->first[j->depth])
		fputc(',', j->out);
	j->first[j->depth] = 0;
	if (j->depth > 0)
		json_indent(j);
}

static void json_write_str(struct kp_json *j, const unsigned char *s,
			   size_t n)
{
	FILE *o = j->out;

	fputc('"', o);
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		if (c < 0x80) {
			switch (c) {
			case '"': fputs("\\\"", o); break;
			case '\\': fputs("\\\\", o); break;
			case '\n': fputs("\\n", o); break;
			case '\r': fputs("\\r", o); break;
			case '\t': fputs("\\t", o); break;
			case '\b': fputs("\\b", o); break;
			case '\f': fputs("\\f", o); break;
			default:
				if (c < 0x20 || c == 0x7f)
					fprintf(o, "\\u%04x", c);
				else
					fputc((int)c, o);
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
			fwrite(s + i, 1, len, o);
			i += len;
		} else {
			fprintf(o, "\\u%04x", c);
			i++;
		}
	}
	fputc('"', o);
}

void kp_json_key(struct kp_json *j, const char *key)
{
	json_pre(j);
	json_write_str(j, (const unsigned char *)key, strlen(key));
	fputs(j->pretty ? ": " : ":", j->out);
	j->after_key = 1;
}

void kp_json_begin_object(struct kp_json *j)
{
	json_pre(j);
	fputc('{', j->out);
	assert(j->depth + 1 < KP_JSON_MAX_DEPTH);
	j->first[++j->depth] = 1;
}

static void json_close(struct kp_json *j, int ch)
{
	int empty = j->first[j->depth];

	assert(j->depth > 0);
	j->depth--;
	if (!empty)
		json_indent(j);
	fputc(ch, j->out);
}

void kp_json_end_object(struct kp_json *j)
{
	json_close(j, '}');
}

void kp_json_begin_array(struct kp_json *j)
{
	json_pre(j);
	fputc('[', j->out);
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

void kp_json_u64(struct kp_json *j, uint64_t v)
{
	json_pre(j);
	fprintf(j->out, "%" PRIu64, v);
}

void kp_json_f64(struct kp_json *j, double v)
{
	json_pre(j);
	if (v != v || v > 1e300 || v < -1e300)
		v = 0; /* JSON has no NaN or infinity */
	fprintf(j->out, "%.6g", v);
}

void kp_json_i64(struct kp_json *j, int64_t v)
{
	json_pre(j);
	fprintf(j->out, "%" PRId64, v);
}

void kp_json_bool(struct kp_json *j, int v)
{
	json_pre(j);
	fputs(v ? "true" : "false", j->out);
}

void kp_json_null(struct kp_json *j)
{
	json_pre(j);
	fputs("null", j->out);
}

void kp_json_end(struct kp_json *j)
{
	fputc('\n', j->out);
}
