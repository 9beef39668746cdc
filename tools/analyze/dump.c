/* SPDX-License-Identifier: MIT */
/*
 * kprof-analyze dump: every record of a trace in file order, one JSON
 * object a line, as the reader decodes it (absolute ts and tid; pointers,
 * sizes and values as integers). For debugging traces and for tests that
 * check what was recorded rather than what an analysis made of it.
 *
 *   {"type":"header","pid":..,"ppid":..,"exe":..,"clock":..}
 *   {"type":"alloc","ts":..,"tid":..,"ptr":..,"size":..,"stack":..,"kind":..}
 *   {"type":"io","ts":..,"tid":..,"kind":..,"stack":..,"str":..,"v":[..]}
 *   ...
 * A last line {"type":"error","what":..} when the trace is cut or corrupt.
 * A QUERY that names its text by id (v[12], format 2.1) shows the text of
 * its QUERY_TEXT record as its str, null when no such record came before.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"
#include "codec.h"
#include "json.h"

static void rec_json(struct kp_json *j, const struct kp_rec *r,
		     struct kp_qtexts *qt)
{
	char tn[32];

	kp_json_begin_object(j);
	kp_json_key(j, "type");
	kp_json_str(j, kp_rec_type_name(r->type, tn, sizeof(tn)));
	kp_json_key(j, "ts");
	kp_json_u64(j, r->ts);
	kp_json_key(j, "tid");
	kp_json_u64(j, r->tid);
	switch (r->type) {
	case KP_REC_FRAME:
		kp_json_key(j, "seq");
		kp_json_u64(j, r->u.frame.seq);
		break;
	case KP_REC_ALLOC:
		kp_json_key(j, "ptr");
		kp_json_u64(j, r->u.alloc.ptr);
		kp_json_key(j, "size");
		kp_json_u64(j, r->u.alloc.size);
		kp_json_key(j, "stack");
		kp_json_u64(j, r->u.alloc.stack);
		kp_json_key(j, "kind");
		kp_json_u64(j, r->kind);
		break;
	case KP_REC_FREE:
		kp_json_key(j, "ptr");
		kp_json_u64(j, r->u.free.ptr);
		break;
	case KP_REC_REALLOC:
		kp_json_key(j, "old_ptr");
		kp_json_u64(j, r->u.realloc.old_ptr);
		kp_json_key(j, "new_ptr");
		kp_json_u64(j, r->u.realloc.new_ptr);
		kp_json_key(j, "size");
		kp_json_u64(j, r->u.realloc.size);
		kp_json_key(j, "stack");
		kp_json_u64(j, r->u.realloc.stack);
		kp_json_key(j, "dur");
		kp_json_u64(j, r->u.realloc.dur);
		break;
	case KP_REC_STACK:
		kp_json_key(j, "id");
		kp_json_u64(j, r->u.stack.id);
		kp_json_key(j, "pcs");
		kp_json_begin_array(j);
		for (uint32_t i = 0; i < r->u.stack.depth; i++)
			kp_json_u64(j, r->u.stack.pcs[i]);
		kp_json_end_array(j);
		break;
	case KP_REC_MODULE:
	case KP_REC_UNMODULE:
		kp_json_key(j, "bias");
		kp_json_u64(j, r->u.module.bias);
		kp_json_key(j, "path");
		kp_json_strn(j, r->u.module.path, r->u.module.path_len);
		break;
	case KP_REC_THREAD_START:
	case KP_REC_THREAD_NAME:
		kp_json_key(j, "name");
		kp_json_strn(j, r->u.thread.name, r->u.thread.name_len);
		break;
	case KP_REC_LOST:
		kp_json_key(j, "what");
		kp_json_str(j, kp_rec_type_name(r->u.lost.what, tn,
						 sizeof(tn)));
		kp_json_key(j, "count");
		kp_json_u64(j, r->u.lost.count);
		break;
	case KP_REC_END:
	case KP_REC_FORK:
		kp_json_key(j, "kind");
		kp_json_u64(j, r->kind);
		kp_json_key(j, "status");
		kp_json_i64(j, r->u.end.status);
		break;
	case KP_REC_EXEC:
		kp_json_key(j, "path");
		kp_json_strn(j, r->u.exec.path, r->u.exec.path_len);
		break;
	case KP_REC_JIT_CODE:
		kp_json_key(j, "lo");
		kp_json_u64(j, r->u.jit.lo);
		kp_json_key(j, "size");
		kp_json_u64(j, r->u.jit.size);
		kp_json_key(j, "name");
		kp_json_strn(j, r->u.jit.name, r->u.jit.name_len);
		break;
	case KP_REC_QUERY_TEXT:
		kp_qtexts_define(qt, r->u.qtext.id, r->u.qtext.text,
				 r->u.qtext.len);
		kp_json_key(j, "id");
		kp_json_u64(j, r->u.qtext.id);
		kp_json_key(j, "str");
		kp_json_strn(j, r->u.qtext.text, r->u.qtext.len);
		break;
	default:
		if (r->type >= KP_REC_EXT_MIN) {
			struct kp_ext_layout l = kp_ext_layout(r->type);
			const char *str = r->u.ext.str;
			uint32_t str_len = r->u.ext.str_len;
			if (r->type == KP_REC_QUERY &&
			    r->u.ext.v[KP_Q_TEXT_ID] > 0 &&
			    r->u.ext.v[KP_Q_TEXT_ID] <= UINT32_MAX)
				str = kp_qtexts_get(
					qt, (uint32_t)r->u.ext.v[KP_Q_TEXT_ID],
					&str_len);
			kp_json_key(j, "kind");
			kp_json_u64(j, r->kind);
			kp_json_key(j, "stack");
			kp_json_u64(j, r->u.ext.stack);
			kp_json_key(j, "str");
			if (str)
				kp_json_strn(j, str, str_len);
			else
				kp_json_null(j);
			kp_json_key(j, "v");
			kp_json_begin_array(j);
			for (unsigned i = 0; i < l.nv; i++)
				kp_json_i64(j, r->u.ext.v[i]);
			kp_json_end_array(j);
		}
		break;
	}
	kp_json_end_object(j);
	kp_json_end(j);
}

int kp_dump_file(const char *path, FILE *out)
{
	struct kp_reader *r = NULL;
	struct kp_json j;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return error("%s: %s", path, strerror(errno));
	struct kp_source src = { .xRead = kp_fd_read, .ctx = &fd };
	int rc = kp_reader_open(&r, &kp_allocator_libc, &src);
	if (rc < 0) {
		kp_reader_free(r);
		close(fd);
		return error("%s: not a readable kprof trace (%s)", path,
			     kp_strerror(rc));
	}
	const struct kp_header *h = kp_reader_header(r);
	kp_json_init(&j, out, 0);
	kp_json_begin_object(&j);
	kp_json_key(&j, "type");
	kp_json_str(&j, "header");
	kp_json_key(&j, "file");
	kp_json_str(&j, path);
	kp_json_key(&j, "pid");
	kp_json_i64(&j, h->pid);
	kp_json_key(&j, "ppid");
	kp_json_i64(&j, h->ppid);
	kp_json_key(&j, "exe");
	kp_json_str(&j, h->exe ? h->exe : "");
	kp_json_key(&j, "clock");
	kp_json_str(&j, h->clock ? h->clock : "");
	kp_json_end_object(&j);
	kp_json_end(&j);
	struct kp_qtexts qt;
	memset(&qt, 0, sizeof(qt));
	for (;;) {
		struct kp_rec rec;
		rc = kp_reader_next(r, &rec);
		if (rc == 1) {
			kp_json_init(&j, out, 0);
			rec_json(&j, &rec, &qt);
			continue;
		}
		if (rc < 0) {
			kp_json_init(&j, out, 0);
			kp_json_begin_object(&j);
			kp_json_key(&j, "type");
			kp_json_str(&j, "error");
			kp_json_key(&j, "what");
			kp_json_str(&j, kp_strerror(rc));
			kp_json_end_object(&j);
			kp_json_end(&j);
		}
		break;
	}
	kp_qtexts_free(&qt);
	kp_reader_free(r);
	close(fd);
	return 0;
}
