/*
 * A C program on libsqlite3 that prepares its statements from UTF-16
 * text, for tests/integ/test_query_sqlite.py: each of
 * sqlite3_prepare16, sqlite3_prepare16_v2 and sqlite3_prepare16_v3, with
 * a table and a column named outside ASCII (so the text is checked, not
 * only counted), a literal outside the BMP (a surrogate pair), a length
 * given in bytes and a multi-statement text stepped through its tail:
 *
 *   prepare16_v2  CREATE TABLE données(clé INTEGER PRIMARY KEY, valeur TEXT)  1
 *   prepare16_v2  INSERT INTO données(valeur) VALUES (?)          bound, 5 runs
 *   prepare16     INSERT INTO données(valeur) VALUES ('𝄞 clef')  nByte given,
 *                                                                 3 statements
 *   prepare16_v3  SELECT valeur FROM données WHERE clé = ?       4 runs, 1 row each
 *   prepare16     SELECT count(*) FROM données; SELECT max(clé) FROM données
 *                 (legacy, no sqlite3_sql(): two statements, by the tail)
 *
 *   sqlite_utf16 DBFILE     prints "rows=8 max=8"
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sqlite3 *db;

static void die(const char *what)
{
	fprintf(stderr, "sqlite_utf16: %s: %s\n", what, sqlite3_errmsg(db));
	exit(1);
}

/* UTF-8 to UTF-16 in the machine's byte order (what prepare16 takes). */
static size_t u16(const char *s, unsigned short *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;
	while (*p && o + 2 < cap) {
		unsigned c;
		if (*p < 0x80) {
			c = *p++;
		} else if ((*p & 0xe0) == 0xc0) {
			c = (unsigned)(*p++ & 0x1f) << 6;
			c |= *p++ & 0x3f;
		} else if ((*p & 0xf0) == 0xe0) {
			c = (unsigned)(*p++ & 0x0f) << 12;
			c |= (unsigned)(*p++ & 0x3f) << 6;
			c |= *p++ & 0x3f;
		} else {
			c = (unsigned)(*p++ & 0x07) << 18;
			c |= (unsigned)(*p++ & 0x3f) << 12;
			c |= (unsigned)(*p++ & 0x3f) << 6;
			c |= *p++ & 0x3f;
		}
		if (c >= 0x10000) {
			c -= 0x10000;
			out[o++] = (unsigned short)(0xd800 | c >> 10);
			out[o++] = (unsigned short)(0xdc00 | (c & 0x3ff));
		} else {
			out[o++] = (unsigned short)c;
		}
	}
	out[o] = 0;
	return o;
}

static long step_all(sqlite3_stmt *s)
{
	long n = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		n++;
	if (rc != SQLITE_DONE)
		die("step");
	return n;
}

int main(int argc, char **argv)
{
	unsigned short t[512];
	sqlite3_stmt *s;
	const void *tail;
	if (argc != 2) {
		fprintf(stderr, "usage: sqlite_utf16 DBFILE\n");
		return 2;
	}
	if (sqlite3_open(argv[1], &db) != SQLITE_OK)
		die("open");
	u16("CREATE TABLE données(clé INTEGER PRIMARY KEY, valeur TEXT)", t,
	    512);
	if (sqlite3_prepare16_v2(db, t, -1, &s, NULL) != SQLITE_OK)
		die("create");
	step_all(s);
	sqlite3_finalize(s);

	u16("INSERT INTO données(valeur) VALUES (?)", t, 512);
	if (sqlite3_prepare16_v2(db, t, -1, &s, NULL) != SQLITE_OK)
		die("insert");
	for (int i = 0; i < 5; i++) {
		sqlite3_bind_text(s, 1, "v", -1, SQLITE_STATIC);
		step_all(s);
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);

	/* legacy prepare16, the length in bytes, three times */
	size_t n = u16("INSERT INTO données(valeur) VALUES ('\xf0\x9d\x84\x9e clef')"
		       " -- not part of it", t, 512);
	int nbyte = (int)(n * 2 - sizeof(" -- not part of it") * 2 + 2);
	for (int i = 0; i < 3; i++) {
		if (sqlite3_prepare16(db, t, nbyte, &s, NULL) != SQLITE_OK)
			die("insert literal");
		step_all(s);
		sqlite3_finalize(s);
	}

	u16("SELECT valeur FROM données WHERE clé = ?", t, 512);
	if (sqlite3_prepare16_v3(db, t, -1, 0, &s, NULL) != SQLITE_OK)
		die("select");
	long rows = 0;
	for (int i = 1; i <= 4; i++) {
		sqlite3_bind_int(s, 1, i);
		rows += step_all(s);
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	if (rows != 4)
		die("select rows");

	/* legacy prepare16 over a text of two statements: by its tail */
	u16("SELECT count(*) FROM données; SELECT max(clé) FROM données", t, 512);
	const void *p = t;
	long count = 0, max = 0;
	for (int k = 0; k < 2; k++) {
		if (sqlite3_prepare16(db, p, -1, &s, &tail) != SQLITE_OK || !s)
			die("select 2");
		if (sqlite3_step(s) != SQLITE_ROW)
			die("select 2 step");
		*(k ? &max : &count) = sqlite3_column_int(s, 0);
		sqlite3_finalize(s);
		p = tail;
	}
	printf("rows=%ld max=%ld\n", count, max);
	sqlite3_close(db);
	return 0;
}
