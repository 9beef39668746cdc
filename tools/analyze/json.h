/* SPDX-License-Identifier: MIT */
/*
 * A small streaming JSON emitter: objects, arrays, strings and integers,
 * with commas and indentation handled here so callers cannot produce
 * invalid JSON. Strings may hold arbitrary bytes (paths, argv, symbols
 * from a hostile trace): valid UTF-8 passes through, control characters
 * are escaped, and each byte that is not part of valid UTF-8 is written as
 * \u00XX (read as Latin-1), so the output is always valid JSON.
 */
#ifndef KP_JSON_H
#define KP_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define KP_JSON_MAX_DEPTH 32
#define KP_JSON_BUF 8192

struct kp_frame_ids; /* report_json.c */

/* The document's bytes gather in buf and go to out when it is full and
 * at kp_json_end(): the caller writes nothing else to out in between. */
struct kp_json {
	FILE *out;
	size_t n;                            /* bytes in buf */
	int depth;
	int pretty;                          /* newlines and 2-space indent */
	unsigned char first[KP_JSON_MAX_DEPTH]; /* no element yet at depth */
	int after_key;                       /* a key was just written */
	int flat;    /* members at this depth and deeper on one line; 0 none */
	/* Not NULL: each stack is written as {"@": [frame index, ...]}, the
	 * frames once, in this table (the HTML page; report_json.c) */
	struct kp_frame_ids *frame_ids;
	char buf[KP_JSON_BUF];
};

void kp_json_init(struct kp_json *j, FILE *out, int pretty);
/* Object member key; the next value call supplies its value. */
void kp_json_keyn(struct kp_json *j, const char *key, size_t n);
/* inline, so that a literal key's length is a constant */
static inline void kp_json_key(struct kp_json *j, const char *key)
{
	kp_json_keyn(j, key, strlen(key));
}
void kp_json_begin_object(struct kp_json *j);
/* An object written on one line even when pretty ({"a": 1, "b": 2}), for
 * the many small objects of a report (stack frames); ended by
 * kp_json_end_object. */
void kp_json_begin_flat_object(struct kp_json *j);
void kp_json_end_object(struct kp_json *j);
void kp_json_begin_array(struct kp_json *j);
void kp_json_end_array(struct kp_json *j);
void kp_json_str(struct kp_json *j, const char *s); /* NULL -> null */
void kp_json_strn(struct kp_json *j, const char *s, size_t n);
void kp_json_u64(struct kp_json *j, uint64_t v);
void kp_json_i64(struct kp_json *j, int64_t v);
void kp_json_f64(struct kp_json *j, double v); /* %.6g; NaN/inf -> 0 */
void kp_json_bool(struct kp_json *j, int v);
void kp_json_null(struct kp_json *j);
/* Finish the document (a final newline) and write out what is left of
 * it. */
void kp_json_end(struct kp_json *j);

#endif
