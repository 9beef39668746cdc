/* SPDX-License-Identifier: MIT */
/*
 * kprof-analyze --format html: one self-contained page (no fetch, no
 * external file) that a browser opens from disk or a CI job keeps as an
 * artifact. It holds:
 *   - the JSON report (kprof-report/1, as --format json writes it) in a
 *     <script type="application/json" id="kprof-data">, but unindented
 *     and each stack as {"@": [i, ...]}: the frames at those indices of
 *     the array in <script type="application/json" id="kprof-frames">
 *     (a frame is written once: g++'s page took 44 MB, 34 of them the
 *     same 4,100 frames over and over),
 *   - report_html.js, which draws the report from it (tables that sort on
 *     a click, stacks that open, the heap over time of each process),
 *   - the flame graphs of CPU time and of allocated bytes (flame.c's SVG)
 *     when the trace has data for them.
 * Every string from the trace is escaped where it lands: '<' in the JSON
 * as \u003c (so no "</script>" or "<!--" inside it can end the element),
 * the title as text, the SVG in base64, and by report_html.js's esc()
 * when drawn.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "cpu.h"

/* report_html.js, its bytes and a NUL (the Makefile rebuilds this object
 * when the script changes). */
__asm__(".pushsection .rodata\n"
	".type kp_report_js, @object\n"
	"kp_report_js:\n"
	".incbin \"tools/analyze/report_html.js\"\n"
	".byte 0\n"
	".size kp_report_js, . - kp_report_js\n"
	".popsection\n");
extern const char kp_report_js[] __attribute__((visibility("hidden")));

static const char style[] =
	"body{font:14px/1.45 system-ui,sans-serif;margin:0 2em 3em;"
	"color:#222;background:#fff}"
	"h1{font-size:1.5em;margin:.8em 0 .2em}h2{border-bottom:2px solid #ccd;"
	"margin-top:2em}h3{margin:1.4em 0 .4em}"
	"nav a{margin-right:1em}.dim{color:#777}"
	"table{border-collapse:collapse;margin:.4em 0 1em}"
	"th,td{border-bottom:1px solid #e4e4ea;padding:3px 8px;text-align:left;"
	"vertical-align:top}th{background:#f2f2f6;cursor:pointer;"
	"white-space:nowrap}td.n{text-align:right;white-space:nowrap;"
	"font-variant-numeric:tabular-nums}"
	"code{font:12px ui-monospace,monospace}code.sql{white-space:pre-wrap}"
	"details summary{cursor:pointer}ol.stack{margin:.2em 0;"
	"padding-left:2em}"
	".ev{color:#555;font-size:.92em}.act{color:#064;font-size:.92em}"
	".sev,.conf{padding:0 .4em;border-radius:3px;font-size:.9em}"
	".sev.high,.conf.high{background:#fbd5d5}.sev.warn,.conf.medium"
	"{background:#fdf0c4}.sev.info,.conf.low{background:#e2ecf8}"
	".warn{background:#fdf0c4;padding:.4em .8em}"
	"dl.kv{display:grid;grid-template-columns:max-content auto;"
	"gap:2px 1.2em}dl.kv dt{color:#555}dl.kv dd{margin:0}"
	".bar{display:inline-block;height:10px;background:#7a9cc6}"
	"svg.chart{width:100%;max-width:760px;height:auto}"
	"svg.chart .area{fill:#9cb8dc;stroke:#3a6ea5}svg.chart .axis"
	"{stroke:#888}svg.chart text{font:11px sans-serif;fill:#444}"
	"svg.chart .floor{fill:none;stroke:#1b4f8a;stroke-width:1.5}"
	"svg.chart .peak{fill:#c33}figure{margin:1em 0}"
	"iframe{width:100%;max-width:1220px;border:1px solid #ccd}";

/* open_memstream and its stream's growth: xmalloc's status and line. */
static void oom(void)
{
	die(1, "out of memory");
}

/* The JSON as a <script> element's text: '<' as \u003c, which only a
 * JSON string can hold. */
static void put_json(FILE *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '<')
			fputs("\\u003c", out);
		else
			fputc(s[i], out);
	}
}

/* Text as a double-quoted attribute's value or an element's text. */
static void put_attr(FILE *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '&': fputs("&amp;", out); break;
		case '"': fputs("&quot;", out); break;
		case '<': fputs("&lt;", out); break;
		case '>': fputs("&gt;", out); break;
		default: fputc(s[i], out);
		}
	}
}

static void put_base64(FILE *out, const unsigned char *s, size_t n)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		"0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		fputc(digits[v >> 18], out);
		fputc(digits[(v >> 12) & 63], out);
		fputc(i + 1 < n ? digits[(v >> 6) & 63] : '=', out);
		fputc(i + 2 < n ? digits[v & 63] : '=', out);
	}
}

/* The page's title: the first process's program and pid. */
static void put_title(struct kp_analysis *an, FILE *out)
{
	fputs("kprof report", out);
	if (!an->nprocs)
		return;
	const struct kp_proc *p = an->procs[0];
	const char *exe = p->exe ? p->exe : "?";
	const char *slash = strrchr(exe, '/');
	fputs(": ", out);
	put_attr(out, slash ? slash + 1 : exe, strlen(slash ? slash + 1 : exe));
	fprintf(out, " (%" PRId64 ")", p->pid);
	if (an->nprocs > 1)
		fprintf(out, " and %zu more", an->nprocs - 1);
}

/*
 * Each flame graph with data, in an iframe of its own: the SVG document
 * flame.c writes for `kprof-analyze flame`, as a data: URL, so that it is
 * read as the SVG file is (XML, its script run on load) and its script
 * and ids stay apart from the page's and the other graph's.
 */
static void put_flames(struct kp_analysis *an, FILE *out)
{
	static const struct {
		enum kp_what what;
		const char *title;
	} graphs[] = {
		{ KP_WHAT_CPU, "CPU time" },
		{ KP_WHAT_ALLOC, "Allocated bytes" },
	};
	int any = 0;

	for (size_t i = 0; i < sizeof(graphs) / sizeof(graphs[0]); i++) {
		char *svg = NULL;
		size_t n = 0;
		FILE *m = open_memstream(&svg, &n);
		if (!m)
			oom();
		unsigned height = kp_flame_svg(an, graphs[i].what, m);
		if (fclose(m) != 0)
			oom();
		if (height) {
			if (!any)
				fputs("<section id=\"flame\"><h2>Flame graphs"
				      "</h2><p class=\"dim\">Hover a frame for "
				      "its weight, click to zoom in, Escape to "
				      "zoom out.</p>\n", out);
			any = 1;
			fprintf(out, "<h3>%s</h3>\n<iframe title=\"%s\" loading=\"lazy\" "
				"height=\"%u\" src=\"data:image/svg+xml;"
				"base64,", graphs[i].title, graphs[i].title,
				height + 4);
			put_base64(out, (const unsigned char *)svg, n);
			fputs("\"></iframe>\n", out);
		}
		free(svg);
	}
	if (any)
		fputs("</section>\n", out);
}

void kp_report_html(struct kp_analysis *an, FILE *out)
{
	char *json = NULL, *frames = NULL;
	size_t n = 0, nf = 0;
	FILE *m = open_memstream(&json, &n);
	FILE *mf = open_memstream(&frames, &nf);
	if (!m || !mf)
		oom();
	kp_report_json_page(an, m, mf);
	if (fclose(m) != 0 || fclose(mf) != 0)
		oom();

	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8"
	      "\">\n<meta name=\"generator\" content=\"kprof-analyze " KP_VERSION
	      "\">\n<title>", out);
	put_title(an, out);
	fprintf(out, "</title>\n<style>%s</style>\n</head><body>\n"
		"<main id=\"kprof-report\"><noscript><p>This report is drawn "
		"by its script. Without scripts, its data is the JSON below "
		"(kprof-report/1; kprof-analyze(1), JSON OUTPUT), each stack "
		"written as {\"@\": [i, ...]}, the frames at those indices "
		"of the array after it.</p></noscript></main>\n", style);
	put_flames(an, out);
	fputs("\n<script type=\"application/json\" id=\"kprof-data\">", out);
	put_json(out, json, n);
	fputs("</script>\n<script type=\"application/json\" "
	      "id=\"kprof-frames\">", out);
	put_json(out, frames, nf);
	fputs("</script>\n<script>\n", out);
	fputs(kp_report_js, out);
	fputs("</script>\n</body></html>\n", out);
	free(json);
	free(frames);
}
