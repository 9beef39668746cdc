// node html_render.js PAGE: the HTML that kprof-analyze --format html's
// page draws in a browser (its script's KP.render on its JSON), on
// stdout, for tests/integ/test_html.py. Takes the three scripts out of
// the page as a browser would: the JSON elements' text (the report, its
// frames) and the script's.
'use strict';
const fs = require('fs');
const page = fs.readFileSync(process.argv[2], 'utf8');
const data = page.match(
	/<script type="application\/json" id="kprof-data">([^]*?)<\/script>/);
const frames = page.match(
	/<script type="application\/json" id="kprof-frames">([^]*?)<\/script>/);
const code = page.match(/<script>\n([^]*?)<\/script>/);
if (!data || !frames || !code) {
	process.stderr.write('no report data or script in the page\n');
	process.exit(1);
}
const mod = { exports: {} };
new Function('module', code[1])(mod);
process.stdout.write(mod.exports.render(mod.exports.parse(data[1], frames[1]),
	{ flame: page.includes('<section id="flame">') }));
