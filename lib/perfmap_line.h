/* SPDX-License-Identifier: MIT */
/*
 * One line of a JIT's perf map (/tmp/perf-<pid>.map, the file node
 * --perf-basic-prof, python3.12 -X perf and JVM agents write for perf):
 *
 *   START SIZE NAME
 *
 * START and SIZE in hexadecimal, "0x" optional, one space after each; the
 * name is the rest of the line. The recorder (preload/jitmap.c) and the
 * analyzer (tools/analyze/perfmap.c) read lines with this one parser.
 */
#ifndef KP_PERFMAP_LINE_H
#define KP_PERFMAP_LINE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of a name kept, by the recorder and the analyzer alike. */
#define KP_PERFMAP_NAME_MAX 1024

/*
 * Parse s[0..n), a line without its newline (a trailing "\r" is dropped).
 * @return 1 with the fields (*name points into s, *name_len at most
 * KP_PERFMAP_NAME_MAX), or 0 when it is not such a line: a field that is
 * not hex or overflows 64 bits, SIZE 0, a range past 2^64, no name.
 */
int kp_perfmap_line(const char *s, size_t n, uint64_t *lo, uint64_t *size,
		    const char **name, size_t *name_len);

#endif
