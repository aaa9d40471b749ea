"""Reads pip-audit's JSON report and says what it means, without mistaking silence for safety.

    python .ci/pip_audit_report.py REPORT.json PIP_AUDIT_STATUS PIP_AUDIT_STDERR

pip-audit asks PyPI (or OSV) about every pinned package. Without internet, PyPI's JSON API is not
reachable and pip-audit answers "No known vulnerabilities found" with status 0 while every package
was skipped; OSV fails with a connection error. Both mean nothing was checked.

Exit status: 0 checked, nothing known; 1 known vulnerabilities (or pip-audit failed for another
reason); 3 the vulnerability database was unreachable, so nothing (or not everything) was checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CLEAN, VULNERABLE, UNREACHABLE = 0, 1, 3
NETWORK_ERRORS = ("ConnectionError", "NameResolutionError", "Max retries exceeded", "Temporary failure in name resolution", "timed out")


def main(report_path: str, status: str, stderr_path: str) -> int:
    stderr = Path(stderr_path).read_text(encoding="utf-8", errors="replace") if Path(stderr_path).exists() else ""
    raw = Path(report_path).read_text(encoding="utf-8") if Path(report_path).exists() else ""
    if not raw.strip():
        if any(marker in stderr for marker in NETWORK_ERRORS):
            print("WARNING: vulnerability database unreachable: pip-audit could not connect, NO package was checked.")
            return UNREACHABLE
        print(f"pip-audit failed (exit status {status}) without a report:\n{stderr}", file=sys.stderr)
        return VULNERABLE
    dependencies = json.loads(raw).get("dependencies", [])
    found = [(dep["name"], dep["version"], vuln) for dep in dependencies for vuln in dep.get("vulns", [])]
    skipped = [dep for dep in dependencies if dep.get("skip_reason")]
    for name, version, vuln in found:
        fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
        print(f"VULNERABLE: {name} {version}: {vuln.get('id')} (fixed in: {fixes})")
    if found:
        print(f"pip-audit: {len(found)} known vulnerabilities in the pinned requirements.", file=sys.stderr)
        return VULNERABLE
    if skipped:
        names = ", ".join(sorted(dep["name"] for dep in skipped))
        print(
            f"WARNING: vulnerability database unreachable: {len(skipped)} of {len(dependencies)} pinned packages "
            f"could NOT be checked ({skipped[0]['skip_reason']}). This is not a clean result. Unchecked: {names}"
        )
        return UNREACHABLE
    print(f"pip-audit: {len(dependencies)} pinned packages checked, no known vulnerabilities.")
    return CLEAN


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
