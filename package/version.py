"""The package version and timestamp, both from git.

A commit tagged v1.2.3 builds 1.2.3.  N commits after it builds
1.2.3+git<N>.<sha>, which opkg orders after 1.2.3 and before 1.2.4
(opkg compares digit runs as numbers).  Without any tag the base is 0.0.0
and N counts every commit.  The timestamp of every archive member is the
last commit's time, or SOURCE_DATE_EPOCH when set.
"""
import os
import re
import subprocess

TAG_RE = re.compile(r"^v(\d+\.\d+\.\d+)-(\d+)-g([0-9a-f]+)$")


class VersionError(Exception):
    pass


def _git(root, *args):
    result = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return result.stdout.strip()


def package_version(root):
    described = _git(root, "describe", "--tags", "--long", "--abbrev=7",
                     "--match", "v[0-9]*.[0-9]*.[0-9]*")
    if described:
        match = TAG_RE.match(described)
        if not match:
            raise VersionError(f"cannot read version from tag '{described}'")
        base, count, sha = match.groups()
        return base if count == "0" else f"{base}+git{count}.{sha}"
    count = _git(root, "rev-list", "--count", "HEAD")
    sha = _git(root, "rev-parse", "--short=7", "HEAD")
    if not count or not sha:
        raise VersionError(f"{root} is not a git checkout with a commit: "
                           "cannot tell the version")
    return f"0.0.0+git{count}.{sha}"


def source_date_epoch(root):
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value:
        if not value.isdigit():
            raise VersionError(
                f"SOURCE_DATE_EPOCH must be a number, not '{value}'")
        return int(value)
    stamp = _git(root, "log", "-1", "--format=%ct")
    if not stamp:
        raise VersionError("cannot read the last commit's time from git")
    return int(stamp)
