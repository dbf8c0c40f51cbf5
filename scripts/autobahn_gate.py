#!/usr/bin/env python3
"""Diff a fresh Autobahn (kosoku) index.json against the committed expected verdicts.

usage: autobahn_gate.py INDEX_JSON EXPECTED_JSON [--allow-unimplemented] [--subset] [--write]
       autobahn_gate.py INDEX_JSON --summary


Fails (exit 1) when:
  * any case's (behavior, behaviorClose) differs from the expected file (newly failing
    AND newly passing cases are both shown, with the reason from the case report), or
  * any case is not OK or INFORMATIONAL in both columns (the bar, enforced here too so
    the expected file cannot quietly hold a failure); with --allow-unimplemented (a run
    without permessage-deflate) sections 12-13 may be UNIMPLEMENTED instead.
--subset: the run selected some cases (kosoku -i/-x): expected cases it did not run are not
reported missing (every case it ran is still held to its expected verdict and to the bar).
--write rewrites EXPECTED_JSON from the run (use after a deliberate change).
--summary only prints the verdicts per section and the summed case durations (no bar, no
expected file; scripts/autobahn-peers.sh uses it for runs against other peers).
"""
import json
import os
import sys
from collections import Counter

GOOD = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return tuple(int(p) for p in case_id.split("."))


def load_run(index_path):
    with open(index_path) as f:
        index = json.load(f)
    if len(index) != 1:
        sys.exit(f"autobahn gate: expected one agent in {index_path}, found {list(index)}")
    (agent, cases), = index.items()
    return agent, cases


def reason(outdir, entry):
    report = entry.get("reportfile")
    if not report:
        return ""
    try:
        with open(os.path.join(outdir, report)) as f:
            case = json.load(f)
        return f"{case.get('result', '')} / {case.get('resultClose', '')}"
    except OSError:
        return ""


def print_sections(got, durations=None):
    per_section = {}
    for cid, g in got.items():
        sec = cid.split(".")[0]
        verdict = g["behavior"] if g["behavior"] == g["behaviorClose"] else f"{g['behavior']}/{g['behaviorClose']}"
        per_section.setdefault(sec, Counter())[verdict] += 1
    for sec in sorted(per_section, key=int):
        counts = ", ".join(f"{v} {k}" for k, v in sorted(per_section[sec].items()))
        took = ""
        if durations is not None:
            ms = sum(d for cid, d in durations.items() if cid.split(".")[0] == sec)
            took = f"  ({ms / 1000:.1f} s of case time)"
        print(f"  section {sec:>2}: {counts}{took}")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    summary = "--summary" in sys.argv
    if len(args) != (1 if summary else 2):
        sys.exit(__doc__)
    index_path = args[0]
    outdir = os.path.dirname(index_path)
    agent, cases = load_run(index_path)
    got = {cid: {"behavior": e["behavior"], "behaviorClose": e["behaviorClose"]} for cid, e in cases.items()}
    if summary:
        print(f"autobahn summary ({agent}): {len(got)} cases")
        print_sections(got, {cid: e.get("duration", 0) for cid, e in cases.items()})
        return 0
    expected_path = args[1]

    if "--write" in sys.argv:
        with open(expected_path, "w") as f:
            json.dump(dict(sorted(got.items(), key=lambda kv: case_key(kv[0]))), f, indent=1)
            f.write("\n")
        print(f"autobahn gate: wrote {len(got)} verdicts to {expected_path}")

    with open(expected_path) as f:
        expected = json.load(f)

    problems = []
    subset = "--subset" in sys.argv
    if subset and "--write" in sys.argv:
        sys.exit("autobahn gate: --write needs a whole run, not --subset")
    compared = set(got) if subset else set(expected) | set(got)
    for cid in sorted(compared, key=case_key):
        e, g = expected.get(cid), got.get(cid)
        if e != g:
            why = reason(outdir, cases[cid]) if cid in cases else "case missing from the run"
            problems.append(f"  {cid}: expected {e}, got {g}  {why}")
        if g is None:
            continue
        section = case_key(cid)[0]
        allowed = GOOD | {"UNIMPLEMENTED"} if section in (12, 13) and "--allow-unimplemented" in sys.argv else GOOD
        if g["behavior"] not in allowed or g["behaviorClose"] not in allowed:
            problems.append(f"  {cid}: {g['behavior']}/{g['behaviorClose']} is below the bar  {reason(outdir, cases[cid])}")

    print(f"autobahn gate ({agent}): {len(got)} cases" + (f" of the {len(expected)} expected (a subset)" if subset else ""))
    print_sections(got)
    if problems:
        print("autobahn gate: FAILED: either this is a regression, or update the expected file on purpose")
        print("\n".join(problems))
        return 1
    print("autobahn gate: all verdicts as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
