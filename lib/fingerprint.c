/* SPDX-License-Identifier: MIT */
/*
 * Query fingerprints (rules in fingerprint.h). One pass over the text: a
 * small tokenizer writes canonical tokens to the output, replacing values
 * by "?" as it goes; IN/VALUES lists and LIMIT forms are rewritten at the
 * moment their last token is written, by cutting the output back.
 */
#include "fingerprint.h"

#include <stddef.h>
#include <string.h>

#define FNV_PRIME 0x100000001b3ULL

uint64_t kp_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= FNV_PRIME;
	}
	return h;
}

enum tok {
	T_NONE,  /* start of text */
	T_WORD,  /* identifier or keyword */
	T_VAL,   /* ? */
	T_OP,    /* operator characters */
	T_OPEN,  /* ( */
	T_CLOSE, /* ) */
	T_COMMA,
	T_SEMI,
	T_DOT,   /* . and :: */
};

#define MAX_PARENS 64

struct paren {
	size_t pos;     /* output offset of the "(" */
	size_t kw_end;  /* output end of a preceding in/values, or SIZE_MAX */
	size_t trunc;   /* values continuation: cut back to here, or SIZE_MAX */
	int only_vals;  /* nothing but ? and , inside so far */
	int nvals;
	int values;     /* opened right after "values" */
};

struct fpw {
	char *out;
	size_t cap, len;
	int full;
	enum tok last;
	int last_kw;        /* last token was: 1 "in", 2 "values", 3 other keyword */
	size_t kw_end;      /* output end of the last word */
	size_t vals_end;    /* output end of the last values(?+), or SIZE_MAX */
	int comma_after_vals;
	int depth;          /* may exceed MAX_PARENS: deeper levels untracked */
	struct kp_fp *res;
	/* last: not cleared at the start (3 KB); an entry is written by
	 * the "(" that opens its level before anything reads it */
	struct paren st[MAX_PARENS];
};

static void put(struct fpw *w, const char *s, size_t n)
{
	if (w->full)
		return;
	if (w->len + n + 1 > w->cap) {
		w->full = 1;
		w->res->truncated = 1;
		return;
	}
	memcpy(w->out + w->len, s, n);
	w->len += n;
}

/* Character classes, one table load a test (the tokenizer asks for
 * every byte of every query). */
enum { C_SPACE = 1, C_DIGIT = 2, C_IDSTART = 4, C_IDENT = 8 };

#define R4(v) v, v, v, v
#define R16(v) R4(v), R4(v), R4(v), R4(v)
#define ID (C_IDSTART | C_IDENT)
static const unsigned char cls[256] = {
	['\t'] = C_SPACE, ['\n'] = C_SPACE, ['\v'] = C_SPACE,
	['\f'] = C_SPACE, ['\r'] = C_SPACE, [' '] = C_SPACE,
	['$'] = C_IDENT,
	['0'] = C_DIGIT | C_IDENT, ['1'] = C_DIGIT | C_IDENT,
	['2'] = C_DIGIT | C_IDENT, ['3'] = C_DIGIT | C_IDENT,
	['4'] = C_DIGIT | C_IDENT, ['5'] = C_DIGIT | C_IDENT,
	['6'] = C_DIGIT | C_IDENT, ['7'] = C_DIGIT | C_IDENT,
	['8'] = C_DIGIT | C_IDENT, ['9'] = C_DIGIT | C_IDENT,
	['A'] = ID, ['B'] = ID, ['C'] = ID, ['D'] = ID, ['E'] = ID,
	['F'] = ID, ['G'] = ID, ['H'] = ID, ['I'] = ID, ['J'] = ID,
	['K'] = ID, ['L'] = ID, ['M'] = ID, ['N'] = ID, ['O'] = ID,
	['P'] = ID, ['Q'] = ID, ['R'] = ID, ['S'] = ID, ['T'] = ID,
	['U'] = ID, ['V'] = ID, ['W'] = ID, ['X'] = ID, ['Y'] = ID,
	['Z'] = ID, ['_'] = ID,
	['a'] = ID, ['b'] = ID, ['c'] = ID, ['d'] = ID, ['e'] = ID,
	['f'] = ID, ['g'] = ID, ['h'] = ID, ['i'] = ID, ['j'] = ID,
	['k'] = ID, ['l'] = ID, ['m'] = ID, ['n'] = ID, ['o'] = ID,
	['p'] = ID, ['q'] = ID, ['r'] = ID, ['s'] = ID, ['t'] = ID,
	['u'] = ID, ['v'] = ID, ['w'] = ID, ['x'] = ID, ['y'] = ID,
	['z'] = ID,
	/* bytes >= 0x80 (UTF-8) are identifier characters */
	[0x80] = R16(ID), R16(ID), R16(ID), R16(ID), R16(ID), R16(ID),
	R16(ID), R16(ID),
};
#undef ID
#undef R16
#undef R4

static inline int is_ident_start(unsigned char c)
{
	return cls[c] & C_IDSTART;
}

static inline int is_ident(unsigned char c)
{
	return cls[c] & C_IDENT;
}

static inline int is_digit(unsigned char c)
{
	return cls[c] & C_DIGIT;
}

static inline int is_space(unsigned char c)
{
	return cls[c] & C_SPACE;
}

/* Words after which a value (and so a signed number) may follow, by
 * length (w is lower case). */
static int is_value_keyword(const char *w, size_t n)
{
	static const char *const by_len[10] = {
		[2] = "in\0or\0by\0is\0on\0if\0",
		[3] = "and\0not\0set\0all\0any\0",
		[4] = "then\0else\0when\0like\0case\0some\0glob\0",
		[5] = "where\0value\0limit\0match\0",
		[6] = "select\0values\0return\0offset\0having\0exists\0"
		      "escape\0regexp\0",
		[7] = "between\0default\0",
		[8] = "distinct\0interval\0",
		[9] = "returning\0",
	};
	if (n >= sizeof(by_len) / sizeof(by_len[0]) || !by_len[n])
		return 0;
	for (const char *k = by_len[n]; *k; k += n + 1)
		if (k[0] == w[0] && memcmp(k, w, n) == 0)
			return 1;
	return 0;
}

/* Write the separator a token of kind t needs after the last one. */
static void space_before(struct fpw *w, enum tok t, int ws)
{
	enum tok p = w->last;
	if (p == T_NONE || p == T_OPEN || p == T_DOT)
		return;
	if (t == T_CLOSE || t == T_COMMA || t == T_SEMI || t == T_DOT)
		return;
	if (t == T_OPEN && p == T_WORD && !ws)
		return;
	put(w, " ", 1);
}

/* A token other than ?, "," and "(" was written inside a paren group. */
static void not_a_list(struct fpw *w)
{
	if (w->depth > 0 && w->depth <= MAX_PARENS)
		w->st[w->depth - 1].only_vals = 0;
}

static void after_token(struct fpw *w, enum tok t, int kw)
{
	w->last = t;
	w->last_kw = kw;
	if (t != T_COMMA) {
		w->comma_after_vals = 0;
		w->vals_end = (size_t)-1;
	}
}

/* Whether the output ends with the n bytes of s at a word boundary. */
static int ends_with(const struct fpw *w, const char *s, size_t n)
{
	if (w->len < n || memcmp(w->out + w->len - n, s, n) != 0)
		return 0;
	return w->len == n || !is_ident((unsigned char)w->out[w->len - n - 1]);
}

#define ENDS_WITH(w, lit) ends_with(w, lit, sizeof(lit) - 1)

static void emit_val(struct fpw *w, int ws)
{
	space_before(w, T_VAL, ws);
	put(w, "?", 1);
	w->res->nlit++;
	if (w->depth > 0 && w->depth <= MAX_PARENS)
		w->st[w->depth - 1].nvals++;
	after_token(w, T_VAL, 0);
	if (ENDS_WITH(w, "limit ?, ?"))
		w->len -= 3;
	else if (ENDS_WITH(w, "limit ? offset ?"))
		w->len -= 9;
}

static void emit_word(struct fpw *w, const char *s, size_t n, int ws)
{
	int kw = 0;

	space_before(w, T_WORD, ws);
	not_a_list(w);
	size_t start = w->len;
	if (w->full)
		return;
	if (start + n + 1 > w->cap) {
		/* as put() would: the part that fits, then full */
		n = w->cap - 1 - start;
		w->full = 1;
		w->res->truncated = 1;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		w->out[start + i] = c;
	}
	w->len = start + n;
	if (!w->full) {
		const char *low = w->out + start; /* the word, lower case */
		if (n == 2 && memcmp(low, "in", 2) == 0)
			kw = 1;
		else if ((n == 6 && memcmp(low, "values", 6) == 0) ||
			 (n == 5 && memcmp(low, "value", 5) == 0))
			kw = 2;
		else if (is_value_keyword(low, n))
			kw = 3;
	}
	after_token(w, T_WORD, kw);
	w->kw_end = w->len;
}

static void emit_open(struct fpw *w, int ws)
{
	size_t kw_end = (w->last == T_WORD && (w->last_kw == 1 ||
					       w->last_kw == 2)) ?
		w->kw_end : (size_t)-1;
	size_t trunc = (w->last == T_COMMA && w->comma_after_vals) ?
		w->vals_end : (size_t)-1;
	int is_values = w->last == T_WORD && w->last_kw == 2;

	not_a_list(w);
	space_before(w, T_OPEN, ws);
	if (w->depth < MAX_PARENS) {
		struct paren *p = &w->st[w->depth];
		p->pos = w->len;
		p->kw_end = kw_end;
		p->trunc = trunc;
		p->only_vals = kw_end != (size_t)-1 || trunc != (size_t)-1;
		p->nvals = 0;
		p->values = is_values || trunc != (size_t)-1;
	}
	w->depth++;
	put(w, "(", 1);
	after_token(w, T_OPEN, 0);
}

static void emit_close(struct fpw *w, int ws)
{
	space_before(w, T_CLOSE, ws);
	if (w->depth <= 0) {
		put(w, ")", 1);
		after_token(w, T_CLOSE, 0);
		return;
	}
	w->depth--;
	if (w->depth < MAX_PARENS) {
		struct paren p = w->st[w->depth];
		if (p.only_vals && p.nvals > 0 && !w->full) {
			if (p.trunc != (size_t)-1) {
				/* another tuple of a collapsed values list */
				w->len = p.trunc;
				w->last = T_CLOSE;
				w->vals_end = w->len;
				w->comma_after_vals = 0;
				return;
			}
			int values = p.values;
			w->len = p.kw_end;
			put(w, "(?+)", 4);
			after_token(w, T_CLOSE, 0);
			if (values)
				w->vals_end = w->len;
			return;
		}
	}
	put(w, ")", 1);
	after_token(w, T_CLOSE, 0);
}

static void emit_punct(struct fpw *w, enum tok t, const char *s, size_t n,
		       int ws)
{
	int was_vals = t == T_COMMA && w->last == T_CLOSE &&
		       w->vals_end == w->len;
	space_before(w, t, ws);
	if (t != T_COMMA)
		not_a_list(w);
	put(w, s, n);
	after_token(w, t, 0);
	if (t == T_COMMA)
		w->comma_after_vals = was_vals;
}

/* A sign here belongs to a number: the last token cannot end a value. */
static int value_expected(const struct fpw *w)
{
	switch (w->last) {
	case T_NONE:
	case T_OP:
	case T_OPEN:
	case T_COMMA:
	case T_SEMI:
		return 1;
	case T_WORD:
		return w->last_kw != 0;
	default:
		return 0;
	}
}

/* Length of a number starting at s[0] (a digit or "." digit). */
static size_t number_len(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (is_ident(c) || c == '.') {
			i++;
			continue;
		}
		/* exponent sign: 1e-3, 2E+10 */
		if ((c == '+' || c == '-') && i > 0 &&
		    (s[i - 1] == 'e' || s[i - 1] == 'E') && i + 1 < n &&
		    is_digit((unsigned char)s[i + 1]) &&
		    !(i >= 2 && (s[0] == '0') && (s[1] == 'x' || s[1] == 'X'))) {
			i++;
			continue;
		}
		break;
	}
	return i;
}

/* End of a quoted run opened by q at s[i] (i = the opening quote). */
static size_t quoted_end(const char *s, size_t n, size_t i, char q, int bs)
{
	for (i++; i < n; i++) {
		if (bs && s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == q) {
			if (i + 1 < n && s[i + 1] == q) {
				i++;
				continue;
			}
			return i + 1;
		}
	}
	return n;
}

static void lit(struct fpw *w, const char *s, size_t n, int ws)
{
	static const char sep = 0;
	w->res->value_hash = kp_fnv1a(w->res->value_hash, s, n);
	w->res->value_hash = kp_fnv1a(w->res->value_hash, &sep, 1);
	emit_val(w, ws);
}

const char *kp_fingerprint(const char *sql, size_t n, char *out, size_t cap,
			   struct kp_fp *res)
{
	struct fpw w;

	memset(&w, 0, offsetof(struct fpw, st));
	memset(res, 0, sizeof(*res));
	res->value_hash = KP_FP_NO_VALUES;
	w.out = out;
	w.cap = cap;
	w.res = res;
	w.vals_end = (size_t)-1;
	if (!sql)
		n = 0;
	size_t i = 0;
	int ws = 0;
	while (i < n && !w.full) {
		unsigned char c = (unsigned char)sql[i];
		unsigned char d = i + 1 < n ? (unsigned char)sql[i + 1] : 0;

		if (is_space(c)) {
			ws = 1;
			i++;
			continue;
		}
		if (c == '-' && d == '-') {
			while (i < n && sql[i] != '\n')
				i++;
			ws = 1;
			continue;
		}
		if (c == '/' && d == '*') {
			const char *e = NULL;
			for (size_t k = i + 2; k + 1 < n; k++)
				if (sql[k] == '*' && sql[k + 1] == '/') {
					e = sql + k + 2;
					break;
				}
			i = e ? (size_t)(e - sql) : n;
			ws = 1;
			continue;
		}
		if (c == '\'' || c == '"') {
			size_t e = quoted_end(sql, n, i, (char)c, 0);
			lit(&w, sql + i, e - i, ws);
			i = e;
		} else if ((c == 'e' || c == 'E' || c == 'x' || c == 'X' ||
			    c == 'b' || c == 'B' || c == 'n' || c == 'N') &&
			   d == '\'') {
			size_t e = quoted_end(sql, n, i + 1, '\'',
					      c == 'e' || c == 'E');
			lit(&w, sql + i, e - i, ws);
			i = e;
		} else if (c == '`' || c == '[') {
			size_t e = quoted_end(sql, n, i, c == '[' ? ']' : '`', 0);
			emit_word(&w, sql + i, e - i, ws);
			i = e;
		} else if (is_digit(c) || (c == '.' && is_digit(d))) {
			size_t e = i + number_len(sql + i, n - i);
			lit(&w, sql + i, e - i, ws);
			i = e;
		} else if ((c == '-' || c == '+') && value_expected(&w) &&
			   (is_digit(d) || (d == '.' && i + 2 < n &&
					    is_digit((unsigned char)sql[i + 2])))) {
			size_t e = i + 1 + number_len(sql + i + 1, n - i - 1);
			lit(&w, sql + i, e - i, ws);
			i = e;
		} else if (is_ident_start(c)) {
			size_t e = i;
			while (e < n && is_ident((unsigned char)sql[e]))
				e++;
			size_t len = e - i;
			int word_lit = 0;
			if (len == 4 || len == 5) {
				char low[5];
				for (size_t k = 0; k < len; k++)
					low[k] = (char)(sql[i + k] | 0x20);
				word_lit = (len == 4 && (!memcmp(low, "true", 4) ||
							 !memcmp(low, "null", 4))) ||
					   (len == 5 && !memcmp(low, "false", 5));
			}
			if (word_lit)
				lit(&w, sql + i, len, ws);
			else
				emit_word(&w, sql + i, len, ws);
			i = e;
		} else if (c == '?') {
			size_t e = i + 1;
			if (d == '+') /* a fingerprint's own "?+": stays one value */
				e++;
			while (e < n && is_digit((unsigned char)sql[e]))
				e++;
			emit_val(&w, ws);
			i = e;
		} else if (c == '$' && is_digit(d)) {
			size_t e = i + 1;
			while (e < n && is_digit((unsigned char)sql[e]))
				e++;
			emit_val(&w, ws);
			i = e;
		} else if (c == '$' && (d == '$' || is_ident_start(d))) {
			/* $tag$ ... $tag$ */
			size_t t = i + 1;
			while (t < n && sql[t] != '$' && is_ident((unsigned char)sql[t]))
				t++;
			if (t < n && sql[t] == '$') {
				size_t tl = t + 1 - i, e = n;
				for (size_t k = t + 1; k + tl <= n; k++)
					if (memcmp(sql + k, sql + i, tl) == 0) {
						e = k + tl;
						break;
					}
				lit(&w, sql + i, e - i, ws);
				i = e;
			} else {
				emit_punct(&w, T_OP, "$", 1, ws);
				i++;
			}
		} else if ((c == ':' || c == '@') && is_ident_start(d) &&
			   !(i > 0 && sql[i - 1] == ':')) {
			size_t e = i + 1;
			while (e < n && is_ident((unsigned char)sql[e]))
				e++;
			emit_val(&w, ws);
			i = e;
		} else if (c == ':' && d == ':') {
			emit_punct(&w, T_DOT, "::", 2, ws);
			i += 2;
		} else if (c == '(') {
			emit_open(&w, ws);
			i++;
		} else if (c == ')') {
			emit_close(&w, ws);
			i++;
		} else if (c == ',') {
			emit_punct(&w, T_COMMA, ",", 1, ws);
			i++;
		} else if (c == ';') {
			emit_punct(&w, T_SEMI, ";", 1, ws);
			i++;
		} else if (c == '.') {
			emit_punct(&w, T_DOT, ".", 1, ws);
			i++;
		} else {
			/* operator: a run of operator characters */
			static const char ops[] = "<>=!|&+-*/%^~#";
			size_t e = i + 1;
			if (strchr(ops, c) && c != '\0')
				while (e < n && sql[e] && strchr(ops, sql[e]) &&
				       !(sql[e] == '-' && e + 1 < n &&
					 sql[e + 1] == '-') &&
				       !(sql[e] == '/' && e + 1 < n &&
					 sql[e + 1] == '*') &&
				       !((sql[e] == '-' || sql[e] == '+') &&
					 e + 1 < n &&
					 is_digit((unsigned char)sql[e + 1])))
					e++;
			emit_punct(&w, T_OP, sql + i, e - i, ws);
			i = e;
		}
		ws = 0;
	}
	/* trailing semicolons (and the spaces before them) go */
	while (w.len > 0 && (w.out[w.len - 1] == ';' || w.out[w.len - 1] == ' '))
		w.len--;
	out[w.len] = '\0';
	res->len = w.len;
	res->hash = kp_fnv1a(KP_FP_NO_VALUES, out, w.len);
	return out;
}
