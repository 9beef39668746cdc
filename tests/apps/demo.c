/*
 * The demo program of `make demo`: a tiny "service" that parses requests,
 * caches some results, and forgets to free two things — a leak that grows
 * with every request, and a one-off buffer at start-up. Each request is a
 * span (kprof.h) and writes one line to an access log, demo.log in the
 * working directory, with a write() of its own and an fsync() every 100
 * requests: the I/O report has something to say about that.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kprof.h"

static int log_fd = -1;

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

static void log_request(int i)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "GET /item/%d 200\n", i);
	if (write(log_fd, line, (size_t)n) != n)
		perror("demo.log");
	if (i % 100 == 99)
		fsync(log_fd);
}

static void *worker(void *arg)
{
	int base = *(int *)arg;
	for (int i = 0; i < 5000; i++) {
		uint64_t span = kprof_span_begin_if_loaded("request");
		handle(parse_request(base + i));
		log_request(base + i);
		kprof_span_end_if_loaded(span);
	}
	return NULL;
}

int main(void)
{
	char *banner = startup_banner();
	log_fd = open("demo.log", O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644);
	if (log_fd < 0) {
		perror("demo.log");
		return 1;
	}
	pthread_t t[2];
	int base[2] = { 0, 100000 };
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, &base[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	close(log_fd);
	printf("%s: handled 10000 requests\n", banner);
	return 0;
}
