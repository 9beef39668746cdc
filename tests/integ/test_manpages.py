"""The man pages (man/) render without a single groff warning at the
width of a terminal (80 columns), and each names
what it documents in its NAME section."""
import glob
import os
import subprocess

from kptest import SRC, Tap, need

t = Tap()
need("man")
pages = sorted(glob.glob(os.path.join(SRC, "man", "*.[1-9]")))
t.ok(len(pages) >= 5, "man pages found: %s" % [os.path.basename(p) for p in pages])
for page in pages:
    name = os.path.basename(page)
    for width in ("80",):
        env = dict(os.environ, MANWIDTH=width, LC_ALL="C.UTF-8")
        p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", page],
                           env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        t.eq((p.returncode, p.stderr.strip()), (0, ""),
             "%s renders at %s columns without warnings" % (name, width))
    out = subprocess.run(["man", "-E", "UTF-8", "-l", page],
                         env=dict(os.environ, MANWIDTH="80"),
                         stdout=subprocess.PIPE, text=True).stdout
    stem = name.rsplit(".", 1)[0]
    t.ok("NAME" in out and stem.split("-")[0] in out.lower(),
         "%s: NAME section present" % name)
t.done()
