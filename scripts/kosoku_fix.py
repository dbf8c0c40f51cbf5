#!/usr/bin/env python3
"""Apply ringwire's fix to the installed Autobahn runner (kosoku), idempotently.

usage: VENV/bin/python scripts/kosoku_fix.py

kosoku 0.1.0's 12.x/13.x cases (kosoku/cases/case12_x_x.py, which holds both sections)
hash what the native bridge hands to `onMessage`: `bytes` for a compressed message, but a
`str` for an uncompressed one (UTF-8 for text, latin-1 for binary; see `bridge_message` in
kosoku's src/protocol.rs). `hashlib` refuses a `str` ("Strings must be encoded before
hashing"), so every message a peer sends uncompressed on a negotiated connection (legal:
RFC 7692 section 6) errors the case. The fix turns that `str` back into the payload's bytes
(UTF-8 for text, latin-1 for binary: both exact inverses of the bridge), so the hash is over
the same bytes as on the compressed path and matches the one `sendOne` computed.

Exit 0 when the fix is in place (applied now or before); exit 1, with the reason, when the
installed file is neither the known original nor the fixed one (another kosoku version):
the gate must then stop rather than run an unfixed runner.
"""
import importlib.metadata
import importlib.util
import os
import sys

TARGET = os.path.join("cases", "case12_x_x.py")

ORIGINAL = """def onMessage(self, msg, binary):
   m = hashlib.sha1()
   m.update(msg)
"""

FIXED = """def onMessage(self, msg, binary):
   # ringwire fix (scripts/kosoku_fix.py): an uncompressed message arrives as str
   # (UTF-8 for text, latin-1 for binary); hash the payload's bytes, as for a compressed one.
   if isinstance(msg, str):
      msg = msg.encode('latin-1' if binary else 'utf-8')
   m = hashlib.sha1()
   m.update(msg)
"""


def main():
    spec = importlib.util.find_spec("kosoku")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("kosoku_fix: kosoku is not installed in this interpreter")
    version = importlib.metadata.version("kosoku")
    path = os.path.join(list(spec.submodule_search_locations)[0], TARGET)
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        sys.exit(f"kosoku_fix: kosoku {version}: cannot read {path}: {e}")
    if text.count(FIXED) == 1:
        print(f"kosoku_fix: kosoku {version}: str-hash fix already in {path}")
        return 0
    if text.count(ORIGINAL) != 1:
        sys.exit(
            f"kosoku_fix: kosoku {version}: {path} does not hold the onMessage this fix was "
            "written for (kosoku 0.1.0's); refusing to run an unfixed runner. Check whether this "
            "version still hashes a str in onMessage, then update scripts/kosoku_fix.py."
        )
    tmp = path + ".ringwire-tmp"
    with open(tmp, "w") as f:
        f.write(text.replace(ORIGINAL, FIXED))
    os.replace(tmp, path)
    print(f"kosoku_fix: kosoku {version}: applied the str-hash fix to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
