/*
 * Query fingerprints (lib/fingerprint.c): the rules of fingerprint.h on
 * the hard cases (quotes inside strings, negative numbers, IN and VALUES
 * lists, comments, multi-statement text, PostgreSQL and SQLite
 * placeholders), pt-query-digest's own test pairs where kprof agrees with
 * it (percona-toolkit t/lib/QueryRewriter.t), idempotence, value hashes,
 * and that no literal survives.
 */
#include <stdint.h>
#include <string.h>

#include "fingerprint.h"
#include "harness.h"

static const char *fp(const char *sql)
{
	static char out[4096];
	struct kp_fp r;
	return kp_fingerprint(sql, strlen(sql), out, sizeof(out), &r);
}

static int same(const char *sql, const char *want)
{
	const char *got = fp(sql);
	if (strcmp(got, want) == 0)
		return 1;
	printf("#   fingerprint(%s)\n#     got  [%s]\n#     want [%s]\n", sql,
	       got, want);
	return 0;
}

static const char *const cases[][2] = {
	/* literals, case, whitespace */
	{ "SELECT * FROM t WHERE a = 1", "select * from t where a = ?" },
	{ "select  *\n\tfrom T where A=1 and b='x'",
	  "select * from t where a = ? and b = ?" },
	/* quotes inside strings: doubled quote, other quote, backslash */
	{ "select 'it''s', 'say \"hi\"', \"dq 'x' \"\"y\"\"\" from t",
	  "select ?, ?, ? from t" },
	{ "select E'a\\'b', 'c' from t", "select ?, ? from t" },
	{ "select 'C:\\' , 'x' from t", "select ?, ? from t" },
	/* negative numbers and numeric forms */
	{ "select * from t where a = -5 and b > -1.5e-3 and c = 0x1F",
	  "select * from t where a = ? and b > ? and c = ?" },
	{ "select a-5, a - 5, -2 from t", "select a - ?, a - ?, ? from t" },
	{ "update t set a = a + 1 where id = .5",
	  "update t set a = a + ? where id = ?" },
	{ "select * from t where x between -10 and +10",
	  "select * from t where x between ? and ?" },
	/* IN lists */
	{ "select * from t where id in (1, 2, 3)",
	  "select * from t where id in(?+)" },
	{ "select * from t where id IN ('a','b') and x in (select y from u)",
	  "select * from t where id in(?+) and x in (select y from u)" },
	{ "select * from t where id in (?, ?, ?)",
	  "select * from t where id in(?+)" },
	/* VALUES lists, one and several tuples */
	{ "INSERT INTO t (a,b) VALUES (1,'x')", "insert into t (a, b) values(?+)" },
	{ "insert into t values (1,'x'),(2,'y'), (3, 'z');",
	  "insert into t values(?+)" },
	{ "insert into t values (1, now())", "insert into t values (?, now())" },
	/* comments */
	{ "select /* hint */ a -- trailing\nfrom t /*! 40001 x */ where b = 2",
	  "select a from t where b = ?" },
	{ "-- only a comment\nselect 1", "select ?" },
	{ "select 1 /* unterminated", "select ?" },
	/* multi-statement text */
	{ "BEGIN; UPDATE t SET x = 1 WHERE y = 2; COMMIT;",
	  "begin; update t set x = ? where y = ?; commit" },
	/* null, true, false (as pt) */
	{ "select * from t where a is null and b = TRUE or c = false",
	  "select * from t where a is ? and b = ? or c = ?" },
	/* placeholders: SQLite ?, ?NNN, :name, @name; PostgreSQL $n */
	{ "select * from t where a = ? and b = ?12 and c = :name and d = @v",
	  "select * from t where a = ? and b = ? and c = ? and d = ?" },
	{ "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
	  "select abalance from pgbench_accounts where aid = ?" },
	/* PostgreSQL casts and dollar quoting */
	{ "select $1::int, 'x'::text, $$a 'b' c$$, $f$x$f$",
	  "select ?::int, ?::text, ?, ?" },
	/* limit forms */
	{ "select * from t limit 10", "select * from t limit ?" },
	{ "select * from t limit 10, 20", "select * from t limit ?" },
	{ "select * from t limit 10 offset 20", "select * from t limit ?" },
	/* identifiers keep their digits; quoted identifiers */
	{ "select t1.c2 from t1 join `T2` on t1.id = [t2].id",
	  "select t1.c2 from t1 join `t2` on t1.id = [t2].id" },
	/* function calls stay attached, operators are canonical */
	{ "select count( * ), max(a)from t where a<=1 and b<>2 and c!=3",
	  "select count(*), max(a) from t where a <= ? and b <> ? and c != ?" },
	/* pt-query-digest's own cases (t/lib/QueryRewriter.t) that agree */
	{ "SELECT * from foo where a = 5", "select * from foo where a = ?" },
	{ "select 0e0, +6e-30, -6.00 from foo where a = 5.5 or b=0.5 or c=.5",
	  "select ?, ?, ? from foo where a = ? or b = ? or c = ?" },
	{ "select null, 5.001, 5001. from foo", "select ?, ?, ? from foo" },
	{ "select * from foo where a in (5) and b in (5, 8,9 ,9 , 10)",
	  "select * from foo where a in(?+) and b in(?+)" },
	{ "", "" },
	{ "   ;  ", "" },
};

TEST(rules_on_hard_cases)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(same(cases[i][0], cases[i][1]));
}

TEST(idempotent)
{
	/* a fingerprint fingerprints to itself (the analyzer re-applies it) */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char once[4096];
		snprintf(once, sizeof(once), "%s", cases[i][1]);
		CHECK(same(once, cases[i][1]));
	}
}

TEST(no_literal_survives)
{
	static const char *const secret[] = {
		"select * from users where email = 'alice@example.com' and pin = 4711",
		"insert into t values ('s3cr3t', -42, X'DEADBEEF', 3.14159)",
		"update t set note = $q$hunter2$q$ where id = 99",
		"select * from t where token = E'zq\\'en' and n in (123456, 654321)",
	};
	static const char *const lit[] = { "alice", "4711", "s3cr3t", "42",
		"deadbeef", "14159", "hunter2", "99", "zq", "123456", "654321" };
	for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
		const char *f = fp(secret[i]);
		for (size_t k = 0; k < sizeof(lit) / sizeof(lit[0]); k++)
			CHECK(strstr(f, lit[k]) == NULL);
	}
}

TEST(value_hash)
{
	char o[256];
	struct kp_fp a, b, c, d;
	kp_fingerprint("select * from t where id = 1", 28, o, sizeof(o), &a);
	kp_fingerprint("select * from t where id=1", 26, o, sizeof(o), &b);
	kp_fingerprint("select * from t where id = 2", 28, o, sizeof(o), &c);
	kp_fingerprint("select * from t", 15, o, sizeof(o), &d);
	CHECK(a.hash == b.hash && a.hash == c.hash);
	CHECK(a.value_hash == b.value_hash);
	CHECK(a.value_hash != c.value_hash);
	CHECK(d.value_hash == KP_FP_NO_VALUES && d.nlit == 0);
	CHECK_EQ_U(a.nlit, 1);
	/* "1, 23" and "12, 3" are different values */
	kp_fingerprint("select 1, 23", 12, o, sizeof(o), &a);
	kp_fingerprint("select 12, 3", 12, o, sizeof(o), &b);
	CHECK(a.value_hash != b.value_hash && a.hash == b.hash);
}

TEST(bounded_output)
{
	char big[10000], o[64];
	struct kp_fp r;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = "select abc, "[i % 12];
	kp_fingerprint(big, sizeof(big), o, sizeof(o), &r);
	CHECK(r.truncated);
	CHECK(r.len < sizeof(o) && strlen(o) == r.len);
	/* hostile input: unbalanced parens, lone quotes, NUL bytes */
	static const char junk[] = "))) in ((( values ,,( '\0 \"x` [ $a$ :: ?+";
	kp_fingerprint(junk, sizeof(junk) - 1, o, sizeof(o), &r);
	CHECK(strlen(o) == r.len);
	kp_fingerprint(NULL, 5, o, sizeof(o), &r);
	CHECK(r.len == 0 && o[0] == 0);
	/* a word that reaches the end of the output is cut there, lower
	 * case, and nothing follows it */
	kp_fingerprint("SELECT ABCDEFGHIJKLMNOP FROM t", 30, o, 16, &r);
	CHECK(strcmp(o, "select abcdefgh") == 0);
	CHECK(r.truncated && r.len == 15);
	kp_fingerprint("SELECT ABCDEFGH", 15, o, 16, &r);
	CHECK(strcmp(o, "select abcdefgh") == 0);
	CHECK(!r.truncated);
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(rules_on_hard_cases), T(idempotent),
			 T(no_literal_survives), T(value_hash),
			 T(bounded_output));
}
