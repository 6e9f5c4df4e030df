"""Reproducible tar and gzip writing, the way opkg-lede reads packages.

Every archive is a GNU-format tar (opkg misreads PAX headers), with
numeric owners only, members in the order given, one fixed mtime and a
gzip header without a name or a timestamp, so the same input always gives
the same bytes.
"""
import gzip
import io
import tarfile
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    """One archive member: a file (data is bytes) or a directory (None)."""

    name: str
    data: bytes | None = None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0

    @property
    def is_dir(self):
        return self.data is None


def directory(name, mode=0o755, uid=0, gid=0):
    return Member(name.rstrip("/") + "/", None, mode, uid, gid)


def tar_bytes(members, mtime):
    """A GNU tar of members, in the order given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w",
                      format=tarfile.GNU_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.mode = member.mode
            info.uid, info.gid = member.uid, member.gid
            info.uname = info.gname = ""
            info.mtime = mtime
            if member.is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
    return out.getvalue()


def gzip_bytes(data):
    """gzip with no file name and mtime 0 in the header."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0,
                       compresslevel=9) as gz:
        gz.write(data)
    return out.getvalue()


def tar_gz(members, mtime):
    return gzip_bytes(tar_bytes(members, mtime))


def sort_members(members):
    """Name order, each directory before what it holds."""
    return sorted(members, key=lambda m: m.name.rstrip("/").split("/"))
