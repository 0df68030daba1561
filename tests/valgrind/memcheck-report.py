#!/usr/bin/python3
"""Reads valgrind memcheck XML files (one per process) and fails when an
error or a definite leak has a stack frame in our source tree.

usage: memcheck-report.py SOURCE_ROOT BUILD_DIR FILE.xml...

An error or leak is ours when its first frame past the allocator and the
C library (valgrind's preload, libc, the dynamic loader, GLib's g_malloc
family) lies in BUILD_DIR or SOURCE_ROOT (its object or its source file):
every stack ends in our test program's main, so "a frame of ours anywhere"
would blame us for GStreamer's own allocations.

Errors and leaks whose stacks lie wholly in GLib, GStreamer or other
libraries are counted and listed as foreign, not failed on: Debian's
libraries keep some process-lifetime allocations (type system, registry)."""

import os
import sys
import xml.etree.ElementTree as ET


def frames(stack):
    for f in stack.iter('frame'):
        d, fn = f.findtext('dir') or '', f.findtext('file') or ''
        yield (f.findtext('fn') or '?', os.path.join(d, fn) if fn else '',
               f.findtext('line') or '', f.findtext('obj') or '')


PLUMBING = ('vgpreload_', 'libc.so', 'ld-linux', 'libglib-2.0.so')


def plumbing(f):
    return os.path.basename(f[3]).startswith(PLUMBING)


def main():
    roots = tuple(os.path.realpath(d) + os.sep for d in sys.argv[1:3])

    def is_ours(f):
        fn, src, ln, obj = f
        return ((obj and os.path.realpath(obj).startswith(roots)) or
                (os.path.isabs(src) and os.path.realpath(src).startswith(
                    roots)))

    ours = foreign = 0
    processes = 0
    for path in sys.argv[3:]:
        try:
            tree = ET.parse(path)
        except ET.ParseError as e:
            # a process killed mid-write (a test's own fork): say so
            print('%s: unreadable (%s)' % (path, e))
            continue
        processes += 1
        for err in tree.getroot().iter('error'):
            kind = err.findtext('kind')
            what = err.findtext('what') or (err.find('xwhat') is not None and
                                            err.find('xwhat').findtext('text'))
            st = err.find('stack')
            fr = list(frames(st)) if st is not None else []
            top = [f for f in fr if not plumbing(f)][:1]
            mine = [f for f in top if is_ours(f)]
            line = '%s: %s' % (kind, what)
            if mine:
                ours += 1
                print('OURS ' + line)
                for fn, src, ln, obj in fr[:12]:
                    print('    %s %s:%s (%s)' % (fn, src, ln, obj))
            else:
                foreign += 1
    print('memcheck: %d processes, %d errors or definite leaks from our code, '
          '%d only in other libraries' % (processes, ours, foreign))
    return 1 if ours or processes == 0 else 0


sys.exit(main())
