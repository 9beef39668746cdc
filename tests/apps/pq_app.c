/*
 * A libpq client with a known list of statements, for the libpq hook
 * (tests/integ/test_query_pg.py): sync, parameters, prepared, async.
 *
 *   PQexec          CREATE TABLE items(id int primary key, name text, qty int)
 *   10 x PQexecParams   INSERT INTO items VALUES ($1, $2, $3)   autocommit
 *   PQprepare       getq: SELECT qty FROM items WHERE id = $1
 *   10 x PQexecPrepared getq                                    N+1
 *   2 x PQexec      SELECT count(*) FROM items WHERE name = 'pq_literal_zq7'
 *   PQsendQuery     SELECT id FROM items ORDER BY id            async, 10 rows
 *   PQsendQueryParams   UPDATE items SET qty = qty + $1 WHERE id = $2
 *   PQsendQueryPrepared getq
 *   PQexec          SELECT * FROM no_such_table                 fails, 42P01
 *
 *   pq_app CONNINFO
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *c;

static void check(PGresult *r, ExecStatusType want, const char *what)
{
	if (PQresultStatus(r) != want) {
		fprintf(stderr, "pq_app: %s: %s", what, PQerrorMessage(c));
		exit(1);
	}
}

/* Drain an async query's results; @return the rows. Not inline: a query's
 * stack is where it was sent (main), not this function that ends it. */
static __attribute__((noinline)) int drain(void)
{
	int rows = 0;
	PGresult *r;
	while ((r = PQgetResult(c))) {
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			rows += PQntuples(r);
		PQclear(r);
	}
	return rows;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	c = PQconnectdb(argv[1]);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pq_app: connect: %s", PQerrorMessage(c));
		return 1;
	}
	PGresult *r = PQexec(c, "CREATE TABLE items(id int primary key, "
			     "name text, qty int)");
	check(r, PGRES_COMMAND_OK, "create");
	PQclear(r);
	for (int i = 1; i <= 10; i++) {
		char id[16], name[32], qty[16];
		snprintf(id, sizeof(id), "%d", i);
		snprintf(name, sizeof(name), "pq_secret_%d", i);
		snprintf(qty, sizeof(qty), "%d", i * 3);
		const char *v[3] = { id, name, qty };
		r = PQexecParams(c, "INSERT INTO items VALUES ($1, $2, $3)", 3,
				 NULL, v, NULL, NULL, 0);
		check(r, PGRES_COMMAND_OK, "insert");
		PQclear(r);
	}
	r = PQprepare(c, "getq", "SELECT qty FROM items WHERE id = $1", 1, NULL);
	check(r, PGRES_COMMAND_OK, "prepare");
	PQclear(r);
	int sum = 0;
	for (int i = 1; i <= 10; i++) {
		char id[16];
		snprintf(id, sizeof(id), "%d", i);
		const char *v[1] = { id };
		r = PQexecPrepared(c, "getq", 1, v, NULL, NULL, 0);
		check(r, PGRES_TUPLES_OK, "getq");
		sum += atoi(PQgetvalue(r, 0, 0));
		PQclear(r);
	}
	for (int k = 0; k < 2; k++) {
		r = PQexec(c, "SELECT count(*) FROM items WHERE name = 'pq_literal_zq7'");
		check(r, PGRES_TUPLES_OK, "count");
		PQclear(r);
	}
	if (!PQsendQuery(c, "SELECT id FROM items ORDER BY id"))
		return 1;
	int ids = drain();
	const char *uv[2] = { "5", "1" };
	if (!PQsendQueryParams(c, "UPDATE items SET qty = qty + $1 WHERE id = $2",
			       2, NULL, uv, NULL, NULL, 0))
		return 1;
	drain();
	const char *gv[1] = { "1" };
	if (!PQsendQueryPrepared(c, "getq", 1, gv, NULL, NULL, 0))
		return 1;
	int one = drain();
	r = PQexec(c, "SELECT * FROM no_such_table");
	int failed = PQresultStatus(r) == PGRES_FATAL_ERROR;
	PQclear(r);
	PQfinish(c);
	printf("sum=%d ids=%d one=%d failed=%d\n", sum, ids, one, failed);
	return 0;
}
