/* SPDX-License-Identifier: MIT */
/*
 * Query fingerprints: the text of a query with its literal values taken
 * out, so that executions of one statement shape group together and no
 * value from the app is ever stored (the preload fingerprints at record
 * time; the analyzer groups by the result).
 *
 * The rules, in the manner of pt-query-digest's fingerprint (percona
 * QueryRewriter.pm) where the two agree; man/kprof.7 lists them too:
 *
 *   1. comments go: slash-star ... star-slash (all of them, including
 *      MySQL's version comments) and double-dash to end of line;
 *      a comment counts as whitespace
 *   2. literals become "?": 'strings' (a doubled '' inside; no backslash
 *      escapes except in E'...'), "double-quoted" text (as pt does),
 *      X'..' B'..' N'..' E'..' prefixed strings, $tag$...$tag$ strings,
 *      numbers (integers, decimals, .5, 1e-3, 0x1f), a sign directly
 *      before a number where a value is expected (after an operator, "(",
 *      ",", or a keyword: "= -5" -> "= ?", but "a - 5" -> "a - ?"),
 *      and the words true, false and null
 *   3. placeholders become "?": ?, ?NNN, $1, :name, @name
 *   4. words are lowercased; `backquoted` and [bracketed] identifiers
 *      are kept (lowercased); digits inside identifiers are kept (t1 stays
 *      t1; pt would write t?)
 *   5. whitespace is canonical: one space between tokens, none after "("
 *      or before ")" "," ";", none around "." or "::", one after ","; a
 *      word directly followed by "(" stays attached (count(*))
 *   6. lists collapse: in(...) of only values -> in(?+), values(...)[,(...)]
 *      of only values -> values(?+) (pt: IN/VALUES lists)
 *   7. limit ?, ? and limit ? offset ? -> limit ?
 *   8. trailing semicolons go; several statements stay, joined by "; "
 * Not done (pt does): UNION repetition folding, "call proc", "use db",
 * dropping ASC after ORDER BY, the mysqldump special cases.
 *
 * Pure code: no allocation, no libc beyond memory functions, bounded by
 * the output buffer; safe inside the preload's interposers.
 */
#ifndef KP_FINGERPRINT_H
#define KP_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

struct kp_fp {
	size_t len;          /* bytes written to out (NUL not counted) */
	uint64_t value_hash; /* FNV-1a of the literals removed, in order
			      * (the same text gives the same hash; a text
			      * without literals gives KP_FP_NO_VALUES) */
	uint64_t hash;       /* FNV-1a of the fingerprint itself */
	unsigned nlit;       /* literals and placeholders replaced */
	int truncated;       /* out was too small: the fingerprint is cut */
};

#define KP_FP_NO_VALUES 0xcbf29ce484222325ULL /* the FNV-1a basis */

/*
 * Fingerprint sql[0..n) into out (cap bytes, cap >= 8, always
 * NUL-terminated). @return out.
 */
const char *kp_fingerprint(const char *sql, size_t n, char *out, size_t cap,
			   struct kp_fp *res);

/* FNV-1a over bytes, continuing from h (start with KP_FP_NO_VALUES). */
uint64_t kp_fnv1a(uint64_t h, const void *p, size_t n);

#endif
