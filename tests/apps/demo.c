/*
 * The demo program of `make demo`: a tiny "service" that parses requests,
 * caches some results, and forgets to free two things — a leak that grows
 * with every request, and a one-off buffer at start-up.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct request { char *path; char *body; };

static char *startup_banner(void)
{
	char *b = malloc(4096); /* never freed: one-off */
	snprintf(b, 4096, "demo service v1");
	return b;
}

static struct request *parse_request(int i)
{
	struct request *r = malloc(sizeof(*r));
	r->path = malloc(64);
	snprintf(r->path, 64, "/item/%d", i);
	r->body = calloc(1, 256 + (size_t)(i % 7) * 32);
	return r;
}

static void handle(struct request *r)
{
	char *tmp = strdup(r->path);
	free(tmp);
	free(r->body);
	/* bug: r->path is never freed */
	free(r);
}

static void *worker(void *arg)
{
	int base = *(int *)arg;
	for (int i = 0; i < 5000; i++)
		handle(parse_request(base + i));
	return NULL;
}

int main(void)
{
	char *banner = startup_banner();
	pthread_t t[2];
	int base[2] = { 0, 100000 };
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, &base[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("%s: handled 10000 requests\n", banner);
	return 0;
}
