/*
 * kprof-analyze --format html: draws the report from its JSON
 * (kprof-report/1, the element #kprof-data of the page, its frames in
 * #kprof-frames: KP.parse), in the browser that opens the file; nothing
 * is fetched. report_html.c puts this file
 * into the page as it is.
 *
 * KP.render(report) returns the report's HTML as a string and touches
 * no DOM, so it also runs under node (tests/integ/test_html.py). Every
 * string from the trace goes through esc(). Sections the JSON lacks
 * (another command's report) are left out; keys this file does not know
 * are ignored, as the schema asks of its consumers.
 */
'use strict';

var KP = (function () {
	function esc(s) {
		return String(s === null || s === undefined ? '' : s)
			.replace(/&/g, '&amp;').replace(/</g, '&lt;')
			.replace(/>/g, '&gt;').replace(/"/g, '&quot;')
			.replace(/'/g, '&#39;');
	}

	function num(n) {
		if (typeof n !== 'number' || !isFinite(n))
			return '-';
		return Math.round(n).toString()
			.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
	}

	function bytes(n) {
		if (typeof n !== 'number')
			return '-';
		var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0, v = n;
		while (v >= 1024 && i < u.length - 1) {
			v /= 1024;
			i++;
		}
		return i ? v.toFixed(1) + ' ' + u[i] : num(n) + ' B';
	}

	function ns(n) {
		if (typeof n !== 'number')
			return '-';
		if (n >= 1e9)
			return (n / 1e9).toFixed(2) + ' s';
		if (n >= 1e6)
			return (n / 1e6).toFixed(1) + ' ms';
		if (n >= 1e3)
			return (n / 1e3).toFixed(1) + ' us';
		return num(n) + ' ns';
	}

	function pct(f) {
		return typeof f === 'number' ? (100 * f).toFixed(1) + ' %' : '-';
	}

	function base(path) {
		var s = String(path || '');
		return s.slice(s.lastIndexOf('/') + 1);
	}

	function frameText(f) {
		if (!f)
			return '?';
		var at = base(f.module) + '+0x' + (f.offset || 0).toString(16);
		if (!f.function)
			return at;
		return f.function + ' (' + (f.file ? base(f.file) +
			(f.line ? ':' + f.line : '') : at) + ')';
	}

	/* A stack: its first frame, the rest on a click (<details>). */
	function stack(frames) {
		if (!frames || !frames.length)
			return '<span class="dim">(no stack)</span>';
		var head = esc(frameText(frames[0]));
		if (frames.length === 1)
			return '<code>' + head + '</code>';
		var rows = '';
		for (var i = 1; i < frames.length; i++)
			rows += '<li><code>' + esc(frameText(frames[i])) +
				'</code></li>';
		return '<details><summary><code>' + head + '</code> <span ' +
			'class="dim">+' + (frames.length - 1) + ' frames</span>' +
			'</summary><ol class="stack">' + rows + '</ol></details>';
	}

	/*
	 * A table: cols are [title, function(row) -> [html, sort value]] or
	 * [title, function(row) -> html]; a sort value makes the column
	 * numeric for kprofSortable().
	 */
	function table(cls, cols, rows) {
		var h = '<table class="' + cls + '"><thead><tr>';
		for (var c = 0; c < cols.length; c++)
			h += '<th>' + esc(cols[c][0]) + '</th>';
		h += '</tr></thead><tbody>';
		for (var r = 0; r < rows.length; r++) {
			h += '<tr>';
			for (var k = 0; k < cols.length; k++) {
				var v = cols[k][1](rows[r], r);
				if (Array.isArray(v))
					h += '<td class="n" data-v="' + esc(v[1]) +
						'">' + v[0] + '</td>';
				else
					h += '<td>' + v + '</td>';
			}
			h += '</tr>';
		}
		return h + '</tbody></table>';
	}

	function n(v) {
		return [num(v), v];
	}
	function id(v) { /* a pid or tid: no thousands separator */
		return [esc(v), v];
	}
	function b(v) {
		return [bytes(v), v];
	}
	function t(v) {
		return [ns(v), v];
	}
	function p(v) {
		return [pct(v), v];
	}

	function kv(pairs) {
		var h = '<dl class="kv">';
		for (var i = 0; i < pairs.length; i++)
			h += '<dt>' + esc(pairs[i][0]) + '</dt><dd>' +
				pairs[i][1] + '</dd>';
		return h + '</dl>';
	}

	function section(id, title, body) {
		return '<section id="' + id + '"><h2>' + esc(title) + '</h2>' +
			body + '</section>';
	}

	function sub(title, body) {
		return '<h3>' + esc(title) + '</h3>' + body;
	}

	function list(a) {
		return Array.isArray(a) ? a : [];
	}

	/* ---- processes -------------------------------------------------- */

	function endText(pr) {
		var r = pr.end_reason, k = pr.killed_by;
		var to = !k || k.group === null || k.group === undefined ? '' :
			k.group === -1 ? ' to every process' :
			' to process group ' + k.group;
		var by = k ? ', by pid ' + k.pid + ' (' + k.how + to + ')' : '';
		var o = pr.oom_suspect;
		if (!r && o)
			return 'no end (truncated): probably the OOM killer (' +
				bytes(o.cgroup_usage) + ' of its cgroup\'s ' +
				bytes(o.cgroup_limit) + ' limit)';
		if (!r)
			return (pr.truncated ? 'no end (truncated)' : '-') +
				(k ? ': killed by signal ' + k.signal + by : '');
		if (r === 'signal' && pr.exit_status > 128)
			return 'killed by signal ' + (pr.exit_status - 128) + by;
		return r + (pr.exit_status !== null &&
			    pr.exit_status !== undefined ?
			    '(' + pr.exit_status + ')' : '');
	}

	function processes(tr) {
		var ps = list(tr.processes), warn = '';
		if (tr.truncated)
			warn += '<p class="warn">A trace is truncated: the ' +
				'process ended without writing its end (killed,' +
				' or still running); its last events may be ' +
				'missing.</p>';
		if (tr.events_lost)
			warn += '<p class="warn">' + num(tr.events_lost) +
				' events were dropped (overflow policy ' +
				'"drop"): counts below are short by as many.</p>';
		return section('processes', 'Processes', warn + table('procs', [
			['pid', function (r) { return id(r.pid); }],
			['parent', function (r) { return id(r.ppid); }],
			['program', function (r) {
				return '<code>' + esc(list(r.argv).join(' ') ||
					r.exe) + '</code>';
			}],
			['ran', function (r) { return t(r.duration_ns); }],
			['threads', function (r) { return n(r.threads); }],
			['ended', function (r) { return esc(endText(r)); }],
			['heap peak', function (r) {
				return r.memory && r.memory.recorded ?
					b(r.memory.peak_bytes) : ['-', -1];
			}],
			['RSS peak', function (r) {
				return b(r.resources ?
					r.resources.rss_peak_bytes : 0);
			}],
			['CPU', function (r) {
				return t(r.resources ? r.resources.cpu_ns : 0);
			}],
			['trace', function (r) {
				return '<code>' + esc(r.file) + '</code>';
			}]
		], ps));
	}

	/* ---- advice ----------------------------------------------------- */

	/* The findings the user's rules (--suppress) left out, as a line. */
	function suppressed(sup) {
		var f = sup ? list(sup.findings) : [];
		if (!f.length)
			return '';
		var by = {};
		f.forEach(function (x) { by[x.code] = (by[x.code] || 0) + 1; });
		return '<p class="dim" id="suppressed">' + num(f.length) +
			' suppressed (' + Object.keys(by).sort().map(function (c) {
				return esc(c) + ' ' + num(by[c]);
			}).join(', ') + ').</p>';
	}

	function advice(a, sup) {
		if (!a.length)
			return section('advice', 'Advice',
				'<p>Nothing to advise: no finding.</p>' +
				suppressed(sup));
		return section('advice', 'Advice', '<p class="dim">Ranked by ' +
			'what a fix may save: time as a share of the run, ' +
			'memory as a share of the peak heap.</p>' + suppressed(sup) +
			table('advice', [
				['#', function (r) { return n(r.rank); }],
				['severity', function (r) {
					return '<span class="sev ' +
						esc(r.severity) + '">' +
						esc(r.severity) + '</span>';
				}],
				['code', function (r) {
					return '<code>' + esc(r.code) + '</code>';
				}],
				['finding', function (r) {
					return '<b>' + esc(r.title) + '</b>' +
						'<div class="ev">' + esc(r.evidence) +
						'</div><div class="act">' +
						esc(r.action) + '</div>';
				}],
				['at stake', function (r) { return p(r.share); }],
				['where', function (r) { return stack(r.stack); }]
			], a));
	}

	/* ---- memory ----------------------------------------------------- */

	/* The most in use in each slice of one process, as an SVG chart. */
	function heapChart(pr) {
		var m = pr.memory, tl = m && m.timeline;
		var v = tl ? list(tl.max_in_use) : [];
		if (v.length < 2 || !tl.slice_ns)
			return '';
		var W = 760, H = 180, L = 70, B = 24, max = 0, pk = 0;
		for (var i = 0; i < v.length; i++)
			if (v[i] > max) {
				max = v[i];
				pk = i;
			}
		if (!max)
			return '';
		var x = function (i) {
			return L + (W - L - 10) * i / (v.length - 1);
		};
		var y = function (u) { return 8 + (H - B - 8) * (1 - u / max); };
		var pts = x(0).toFixed(1) + ',' + y(0).toFixed(1);
		for (i = 0; i < v.length; i++)
			pts += ' ' + x(i).toFixed(1) + ',' + y(v[i]).toFixed(1);
		pts += ' ' + x(v.length - 1).toFixed(1) + ',' + y(0).toFixed(1);
		/* the floor (the least in use in each slice), as a line */
		var lo = list(tl.min_in_use), floor = '';
		if (lo.length === v.length) {
			var fp = [];
			for (i = 0; i < lo.length; i++)
				fp.push(x(i).toFixed(1) + ',' +
					y(Math.min(lo[i], max)).toFixed(1));
			floor = '<polyline class="floor" points="' +
				fp.join(' ') + '"/>';
		}
		var end = tl.slice_ns * v.length;
		return '<figure><svg class="chart" viewBox="0 0 ' + W + ' ' + H +
			'" role="img"><title>heap in use over time, process ' +
			esc(pr.pid) + '</title>' +
			'<polygon class="area" points="' + pts + '"/>' + floor +
			'<line class="axis" x1="' + L + '" y1="' + y(0) +
			'" x2="' + (W - 10) + '" y2="' + y(0) + '"/>' +
			'<text x="' + (L - 6) + '" y="' + (y(max) + 4) +
			'" text-anchor="end">' + esc(bytes(max)) + '</text>' +
			'<text x="' + (L - 6) + '" y="' + y(0) +
			'" text-anchor="end">0</text>' +
			'<text x="' + L + '" y="' + (H - 6) + '">0</text>' +
			'<text x="' + (W - 10) + '" y="' + (H - 6) +
			'" text-anchor="end">' + esc(ns(end)) + '</text>' +
			'<circle class="peak" cx="' + x(pk).toFixed(1) +
			'" cy="' + y(max).toFixed(1) + '" r="3"/></svg>' +
			'<figcaption>Process ' + esc(pr.pid) + ' (' +
			esc(base(pr.exe)) + '): the most heap in use in each ' +
			esc(ns(tl.slice_ns)) + (floor ? ' (area) and the ' +
			'least (line)' : '') + '; peak ' +
			esc(bytes(m.peak_bytes)) + ' at ' +
			esc(ns(m.peak_time_ns)) + '.</figcaption></figure>';
	}

	function siteTable(rows) {
		return table('sites', [
			['calls', function (r) { return n(r.calls); }],
			['bytes', function (r) { return b(r.bytes); }],
			['frees', function (r) { return n(r.frees); }],
			['temporary', function (r) { return n(r.temporary); }],
			['at the peak', function (r) { return b(r.peak_bytes); }],
			['stack', function (r) { return stack(r.stack); }]
		], rows);
	}

	/* The classes of a leak scan at exit (memory.leak_scan, a leak's
	 * reachability), valgrind's, in its order: the ones with blocks as
	 * "7 definitely lost, 2 still reachable" (blocks), or every one as
	 * "definitely lost 700 B in 7 blocks" (sizes). */
	var LEAK_CLASSES = [['definitely_lost', 'definitely lost'],
			    ['indirectly_lost', 'indirectly lost'],
			    ['possibly_lost', 'possibly lost'],
			    ['still_reachable', 'still reachable']];
	function reach(r, sizes) {
		var parts = [];
		for (var i = 0; i < LEAK_CLASSES.length; i++) {
			var c = r[LEAK_CLASSES[i][0]] || {};
			if (sizes)
				parts.push(LEAK_CLASSES[i][1] + ' ' +
					bytes(c.bytes) + ' in ' + num(c.blocks) +
					(c.blocks === 1 ? ' block' : ' blocks'));
			else if (c.blocks)
				parts.push(num(c.blocks) + ' ' +
					LEAK_CLASSES[i][1]);
		}
		return parts.join(', ');
	}

	/* memory.leak_scan: what it found, and where it did not run, why
	 * (the first such process's status; "done": it had no scan) */
	function leakScan(s) {
		var why = s.status === 'done' ? 'no scan in the trace' :
			s.status;
		var miss = s.processes_not_scanned ? ' (not run in ' +
			num(s.processes_not_scanned) + ' of ' +
			num(s.processes_scanned + s.processes_not_scanned) +
			' processes: ' + why + ')' : '';
		return esc(s.processes_scanned ? reach(s, true) + miss :
			'not run (' + why + ')');
	}

	/* A program that leaks much (cc1plus: 6,775 groups) would make a page
	 * that takes a browser seconds to draw; the largest groups are the
	 * ones to read. */
	var LEAK_ROWS = 200;
	/* Charts of the heap over time, one a process. */
	var CHARTS = 12;

	function memory(m, procs) {
		if (!m.recorded)
			return section('memory', 'Memory', '<p>Not recorded ' +
				'(KOTOBA_PROFILE_MEMORY=0, or the program ' +
				'allocates through a malloc of its own).</p>');
		var h = kv([
			['allocation calls', esc(num(m.alloc_calls))],
			['free calls', esc(num(m.free_calls))],
			['bytes allocated', esc(bytes(m.bytes_allocated))],
			['peak heap', esc(bytes(m.peak_bytes)) + ' at ' +
				esc(ns(m.peak_time_ns))],
			['in use at exit', m.in_use_at_exit ?
				esc(bytes(m.in_use_at_exit.bytes)) + ' in ' +
				esc(num(m.in_use_at_exit.blocks)) + ' blocks' :
				'-'],
			['temporary', esc(num(m.temporary_allocs)) +
				' (freed at once)']
		].concat(m.leak_scan ? [['leak scan at exit',
					  leakScan(m.leak_scan)]] : []));
		/* the processes with the highest heap peaks, as the text
		 * report's table of the busiest */
		var charts = procs.filter(function (pr) {
			return pr.memory && pr.memory.recorded;
		}).sort(function (x, y) {
			return y.memory.peak_bytes - x.memory.peak_bytes;
		}).map(heapChart).filter(function (c) { return c; });
		for (var i = 0; i < charts.length && i < CHARTS; i++)
			h += charts[i];
		if (charts.length > CHARTS)
			h += '<p class="dim">The heap over time of ' +
				esc(num(charts.length - CHARTS)) + ' more ' +
				'processes with smaller peaks is in the page\'s ' +
				'data.</p>';
		var sizes = list(m.sizes);
		if (sizes.length) {
			var most = 0;
			for (i = 0; i < sizes.length; i++)
				most = Math.max(most, sizes[i].calls);
			h += sub('Allocation sizes', table('sizes', [
				['size from', function (r) { return b(r.min); }],
				['calls', function (r) { return n(r.calls); }],
				['bytes', function (r) { return b(r.bytes); }],
				['', function (r) {
					return '<span class="bar" style="width:' +
						(most ? (200 * r.calls / most)
						 .toFixed(0) : 0) + 'px"></span>';
				}]
			], sizes));
		}
		var leaks = list(m.leaks), more = '';
		if (leaks.length > LEAK_ROWS) {
			var rest = 0;
			for (i = LEAK_ROWS; i < leaks.length; i++)
				rest += leaks[i].bytes;
			more = '<p class="dim">And ' +
				esc(num(leaks.length - LEAK_ROWS)) + ' smaller ' +
				'groups, ' + esc(bytes(rest)) + ' in all: every ' +
				'group is in the page\'s data (the element ' +
				'#kprof-data) and in <code>kprof-analyze leaks' +
				'</code>.</p>';
			leaks = leaks.slice(0, LEAK_ROWS);
		}
		h += sub('Leaks (in use at exit, by stack)', leaks.length ?
			table('leaks', [
				['bytes', function (r) { return b(r.bytes); }],
				['blocks', function (r) { return n(r.blocks); }],
				['confidence', function (r) {
					return '<span class="conf ' +
						esc(r.confidence) + '">' +
						esc(r.confidence) + '</span><div ' +
						'class="ev">' + esc(r.reason) +
						'</div>' + (r.reachability ?
						'<div class="ev">leak scan: ' +
						esc(reach(r.reachability)) +
						'</div>' : '');
				}],
				['stack', function (r) { return stack(r.stack); }]
			], leaks) + more :
			'<p>No leak: every block was freed.</p>');
		var tops = [['top_by_bytes', 'Most bytes allocated'],
			    ['top_by_calls', 'Most allocation calls'],
			    ['top_by_peak', 'Most in use at the heap peak'],
			    ['top_by_temporary', 'Most temporary allocations']];
		for (i = 0; i < tops.length; i++)
			if (list(m[tops[i][0]]).length)
				h += sub(tops[i][1], siteTable(m[tops[i][0]]));
		return section('memory', 'Memory', h);
	}

	/* ---- I/O --------------------------------------------------------- */

	function ops(o) {
		var names = Object.keys(o || {}), h = '';
		for (var i = 0; i < names.length; i++) {
			var s = o[names[i]];
			h += '<div><code>' + esc(names[i]) + '</code> ' +
				esc(num(s.calls)) + ' calls, p50 ' +
				esc(ns(s.p50_ns)) + ', p99 ' + esc(ns(s.p99_ns)) +
				', max ' + esc(ns(s.max_ns)) +
				(s.errors ? ', <b>' + esc(num(s.errors)) +
				 ' errors</b>' : '') + '</div>';
		}
		return h;
	}

	function io(x) {
		var tot = x.totals || {};
		var h = kv([
			['calls', esc(num(tot.calls))],
			['errors', esc(num(tot.errors))],
			['time in I/O', esc(ns(tot.total_ns)) + ' (' +
				esc(pct(tot.wall_share)) + ' of the run)'],
			['read', esc(bytes(tot.bytes_read))],
			['written', esc(bytes(tot.bytes_written))]
		]);
		var f = list(x.findings);
		if (f.length)
			h += sub('Findings', table('iofind', [
				['code', function (r) {
					return '<code>' + esc(r.code) + '</code> ' +
						'<span class="sev ' + esc(r.severity) +
						'">' + esc(r.severity) + '</span>';
				}],
				['finding', function (r) {
					return '<b>' + esc(r.title) + '</b> <code>' +
						esc(r.path) + '</code><div ' +
						'class="ev">' + esc(r.evidence) +
						'</div><div class="act">' +
						esc(r.recommendation) + '</div>';
				}],
				['where', function (r) { return stack(r.stack); }]
			], f));
		var files = list(x.files);
		if (files.length)
			h += sub('Files, by time in I/O', table('files', [
				['file', function (r) {
					return '<code>' + esc(r.path) + '</code>';
				}],
				['time', function (r) { return t(r.total_ns); }],
				['bytes', function (r) { return b(r.bytes); }],
				['operations', function (r) { return ops(r.ops); }],
				['slowest stack', function (r) {
					var s = list(r.stacks);
					return s.length ? stack(s[0].frames) : '';
				}]
			], files));
		return section('io', 'I/O', h);
	}

	/* ---- queries ------------------------------------------------------ */

	function fp(r) {
		return '<code class="sql">' + esc(r.fingerprint) + '</code>';
	}

	/* A fingerprint's calls by decade of time, from the first decade with
	 * calls to the last, as the text report prints them. */
	var DECADES = ['<1us', '1us', '10us', '100us', '1ms', '10ms', '100ms',
		       '1s', '10s+'];
	function distribution(d) {
		d = list(d);
		var lo = 0, hi = d.length - 1, parts = [];
		while (lo < hi && !d[lo])
			lo++;
		while (hi > lo && !d[hi])
			hi--;
		for (var i = lo; i <= hi && i < DECADES.length; i++)
			parts.push(DECADES[i] + ' ' + num(d[i]));
		return esc(parts.join(', '));
	}

	function queries(q) {
		var fps = list(q.fingerprints);
		if (!q.calls && !fps.length)
			return '';
		var h = kv([
			['queries', esc(num(q.calls))],
			['time in queries', esc(ns(q.total_ns))],
			['slow from', esc(ns(q.slow_threshold_ns))],
			['N+1 from', esc(num(q.n_plus_one_min)) + ' queries in a row'],
			['write storm from', esc(num(q.storm_min)) + ' writes in a row']
		]);
		h += sub('Fingerprints, by ' + (q.order_by === 'total_ns' ?
			'total time' : q.order_by), table('fps', [
			['fingerprint', fp],
			['source', function (r) { return esc(r.source); }],
			['calls', function (r) { return n(r.calls); }],
			['total', function (r) { return t(r.total_ns); }],
			['share', function (r) {
				return p((r.share_ppm || 0) / 1e6);
			}],
			['p50', function (r) { return t(r.p50_ns); }],
			['p95', function (r) { return t(r.p95_ns); }],
			['p99', function (r) { return t(r.p99_ns); }],
			['max', function (r) { return t(r.max_ns); }],
			['time distribution', function (r) {
				return distribution(r.distribution);
			}],
			['rows', function (r) { return n(r.rows); }],
			['full scan', function (r) { return n(r.full_scan); }],
			['allocated', function (r) { return b(r.alloc_bytes); }],
			['I/O', function (r) { return b(r.io_bytes); }],
			['fsyncs', function (r) { return n(r.fsyncs); }]
		], fps));
		var slow = list(q.slow);
		if (slow.length)
			h += sub('Slow queries', table('slow', [
				['fingerprint', fp],
				['slow calls', function (r) {
					return n(r.slow_calls);
				}],
				['worst', function (r) {
					return t(r.worst ? r.worst.dur_ns : 0);
				}],
				['of which', function (r) {
					var w = r.worst || {};
					return esc('I/O ' + ns(w.io_ns) + ', fsync ' +
						ns(w.fsync_ns) + ', locks ' +
						ns(w.lock_ns) + ', CPU ' +
						ns(w.cpu_ns) + ', rest ' +
						ns(w.rest_ns));
				}],
				['called from', function (r) {
					return stack(r.worst && r.worst.stack);
				}]
			], slow));
		var np1 = list(q.n_plus_one);
		if (np1.length)
			h += sub('N+1 loops', table('nplus1', [
				['fingerprint', fp],
				['runs', function (r) { return n(r.runs); }],
				['queries', function (r) { return n(r.queries); }],
				['longest run', function (r) {
					return n(r.max_run);
				}],
				['time', function (r) { return t(r.total_ns); }],
				['saving if batched', function (r) {
					return t(r.saving_ns);
				}],
				['called from', function (r) {
					return stack(r.stack);
				}]
			], np1));
		var dup = list(q.duplicates);
		if (dup.length)
			h += sub('Duplicate reads', table('dups', [
				['fingerprint', fp],
				['calls', function (r) { return n(r.calls); }],
				['duplicates', function (r) {
					return n(r.duplicate_calls);
				}],
				['distinct values', function (r) {
					return esc(r.distinct_values);
				}]
			], dup));
		var ia = list(q.index_advice);
		if (ia.length)
			h += sub('Index advice', table('index', [
				['fingerprint', fp],
				['full scans', function (r) {
					return n(r.full_scan_calls);
				}],
				['statement', function (r) {
					return '<code class="sql">' +
						esc(r.statement) + '</code>';
				}],
				['verified', function (r) {
					return esc(r.verified === null ||
						   r.verified === undefined ?
						   'not checked' : r.verified ?
						   'the plan uses it' :
						   'the plan does not use it');
				}]
			], ia));
		var ws = list(q.write_storms);
		if (ws.length)
			h += sub('Autocommit write storms', table('storms', [
				['fingerprint', fp],
				['storms', function (r) { return n(r.storms); }],
				['statements', function (r) {
					return n(r.statements);
				}],
				['time', function (r) { return t(r.total_ns); }],
				['fsyncs', function (r) { return n(r.fsyncs); }],
				['saving', function (r) { return t(r.saving_ns); }]
			], ws));
		return section('queries', 'Queries', h);
	}

	/* ---- CPU ------------------------------------------------------------ */

	function cpu(c, top) {
		if (!c.samples)
			return '';
		var h = kv([
			['samples', esc(num(c.samples))],
			['CPU time', esc(ns(c.cpu_ns))],
			['in kprof', esc(ns(c.kprof_ns))]
		]);
		h += sub('Threads', table('threads', [
			['tid', function (r) { return id(r.tid); }],
			['name', function (r) { return esc(r.name || ''); }],
			['CPU', function (r) { return t(r.cpu_ns); }],
			['share', function (r) { return p(r.share); }]
		], list(c.threads)));
		h += sub('Functions, by self time', table('funcs', [
			['function', function (r) {
				return '<code>' + esc(r.function) + '</code>';
			}],
			['self', function (r) { return t(r.self_ns); }],
			['self share', function (r) { return p(r.self_share); }],
			['total', function (r) { return t(r.total_ns); }],
			['total share', function (r) {
				return p(r.total_share);
			}]
		], list(c.functions).slice(0, top)));
		h += sub('Hottest stacks', table('cstacks', [
			['CPU', function (r) { return t(r.cpu_ns); }],
			['share', function (r) { return p(r.share); }],
			['stack', function (r) { return stack(r.stack); }]
		], list(c.stacks)));
		return section('cpu', 'CPU', h);
	}

	/* ---- application events ------------------------------------------- */

	function app(a) {
		var sp = list(a.spans), du = list(a.durations),
		    co = list(a.counters), ga = list(a.gauges), h = '';
		var timed = [
			['name', function (r) {
				return '<code>' + esc(r.name) + '</code>';
			}],
			['events', function (r) { return n(r.events); }],
			['total', function (r) { return t(r.total_ns); }],
			['p50', function (r) { return t(r.p50_ns); }],
			['p90', function (r) { return t(r.p90_ns); }],
			['p99', function (r) { return t(r.p99_ns); }],
			['max', function (r) { return t(r.max_ns); }]
		];
		if (sp.length)
			h += sub('Spans', table('spans', timed, sp));
		if (du.length)
			h += sub('Durations', table('durs', timed, du));
		if (co.length)
			h += sub('Counters', table('counters', [
				timed[0], timed[1],
				['sum', function (r) { return n(r.sum); }]
			], co));
		if (ga.length)
			h += sub('Gauges', table('gauges', [
				timed[0], timed[1],
				['min', function (r) { return n(r.min); }],
				['max', function (r) { return n(r.max); }],
				['last', function (r) { return n(r.last); }]
			], ga));
		return h ? section('app', 'Application events', h) : '';
	}

	/* opts.flame: the page has flame graphs (report_html.c's). */
	function render(r, opts) {
		if (!r || r.schema !== 'kprof-report/1')
			return '<p class="warn">Not a kprof-report/1 ' +
				'report.</p>';
		var tr = r.trace || {}, procs = list(tr.processes);
		var names = [];
		for (var i = 0; i < procs.length && i < 3; i++)
			names.push(base(procs[i].exe) + ' (' + procs[i].pid + ')');
		if (procs.length > 3)
			names.push('and ' + (procs.length - 3) + ' more');
		var h = '<header><h1>kprof report: ' + esc(names.join(', ')) +
			'</h1><p class="dim">kprof-analyze ' + esc(r.command) +
			', ' + esc(list(tr.files).join(', ')) + '</p><nav>';
		var parts = [
			['advice', 'Advice'], ['memory', 'Memory'], ['io', 'I/O'],
			['queries', 'Queries'], ['cpu', 'CPU'],
			['app', 'Application events'], ['flame', 'Flame graphs']
		];
		var body = processes(tr);
		var got = {
			advice: r.advice ? advice(list(r.advice), r.advice_suppressed) : '',
			memory: r.memory ? memory(r.memory, procs) : '',
			io: r.io ? io(r.io) : '',
			queries: r.queries ? queries(r.queries) : '',
			cpu: r.cpu ? cpu(r.cpu, 50) : '',
			app: r.app ? app(r.app) : ''
		};
		for (i = 0; i < parts.length; i++) {
			var id = parts[i][0];
			if (id === 'flame' ? opts && opts.flame : got[id])
				h += '<a href="#' + id + '">' + parts[i][1] +
					'</a> ';
			if (got[id])
				body += got[id];
		}
		return h + '</nav></header>' + body;
	}

	/*
	 * The page's data (#kprof-data) as the JSON report: its stacks are
	 * {"@": [i, ...]}, indices into the frames (#kprof-frames, each
	 * frame once), and become arrays of those frames again.
	 */
	function parse(dataText, framesText) {
		var frames = JSON.parse(framesText);
		return JSON.parse(dataText, function (k, v) {
			if (v === null || typeof v !== 'object' ||
			    !Array.isArray(v['@']))
				return v;
			return v['@'].map(function (i) { return frames[i]; });
		});
	}

	return { render: render, esc: esc, parse: parse };
})();

/*
 * Click a column's title to sort by it (numbers by their exact value,
 * text as text); again to reverse.
 */
function kprofSortable(root) {
	var heads = root.querySelectorAll('th');
	Array.prototype.forEach.call(heads, function (th) {
		th.addEventListener('click', function () {
			var tb = th.closest('table').tBodies[0];
			var col = Array.prototype.indexOf.call(
				th.parentNode.children, th);
			var down = th.getAttribute('data-sort') !== 'down';
			th.setAttribute('data-sort', down ? 'down' : 'up');
			var rows = Array.prototype.slice.call(tb.rows);
			rows.sort(function (x, y) {
				var a = x.cells[col], b = y.cells[col];
				var va = a.getAttribute('data-v'),
				    vb = b.getAttribute('data-v');
				var c = va !== null && vb !== null ?
					Number(va) - Number(vb) :
					a.textContent.localeCompare(b.textContent);
				return down ? -c : c;
			});
			rows.forEach(function (row) { tb.appendChild(row); });
		});
	});
}

if (typeof document !== 'undefined') {
	var kpData = KP.parse(
		document.getElementById('kprof-data').textContent,
		document.getElementById('kprof-frames').textContent);
	var kpRoot = document.getElementById('kprof-report');
	kpRoot.innerHTML = KP.render(kpData, {
		flame: !!document.getElementById('flame')
	});
	kprofSortable(kpRoot);
}
if (typeof module !== 'undefined')
	module.exports = KP;
