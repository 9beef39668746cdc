/* SPDX-License-Identifier: MIT */
/*
 * The query texts of one trace (QUERY_TEXT records, format 2.1): id ->
 * text, for the QUERY records that name their text by id. Ids are dense
 * from 1 in a real trace, so the table is an array indexed by id; a
 * hostile trace is held to KP_MAX_QTEXTS ids and KP_MAX_QTEXT_BYTES of
 * text, past which definitions are ignored (their queries then have no
 * text), as is a second definition of an id.
 */
#include <stdlib.h>
#include <string.h>

#include "analyze.h"

void kp_qtexts_define(struct kp_qtexts *q, uint32_t id, const char *s,
		      uint32_t n)
{
	if (!id || id >= KP_MAX_QTEXTS ||
	    q->bytes + n + 1 > KP_MAX_QTEXT_BYTES)
		return;
	if (id >= q->cap) {
		size_t cap = q->cap ? q->cap : 64;
		while (cap <= id)
			cap *= 2;
		q->text = xrealloc_array(q->text, cap, sizeof(*q->text));
		q->len = xrealloc_array(q->len, cap, sizeof(*q->len));
		memset(q->text + q->cap, 0, (cap - q->cap) * sizeof(*q->text));
		memset(q->len + q->cap, 0, (cap - q->cap) * sizeof(*q->len));
		q->cap = cap;
	}
	if (q->text[id])
		return; /* defined once; the first definition stands */
	q->text[id] = xstrndup(s ? s : "", s ? n : 0);
	q->len[id] = s ? n : 0;
	q->bytes += n + 1;
}

const char *kp_qtexts_get(const struct kp_qtexts *q, uint32_t id,
			  uint32_t *n)
{
	if (id >= q->cap || !q->text[id])
		return NULL;
	*n = q->len[id];
	return q->text[id];
}

void kp_qtexts_free(struct kp_qtexts *q)
{
	for (size_t i = 0; i < q->cap; i++)
		free(q->text[i]);
	free(q->text);
	free(q->len);
	memset(q, 0, sizeof(*q));
}
