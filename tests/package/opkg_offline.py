"""opkg-lede's install, upgrade and remove steps, against a staging root.

No opkg binary runs on the development host, so the package tests replay
what opkg-lede (libopkg/opkg_install.c, opkg_remove.c, conffile.c, pkg.c)
does with a package, step by step and in the same order, running the
package's real maintainer scripts with /bin/sh and IPKG_INSTROOT set to the
staging root (the OpenWrt convention for an offline root).  The database
has opkg's layout for `dest root /`: usr/lib/opkg/status and
usr/lib/opkg/info/<package>.<control file>.
"""
import hashlib
import io
import os
import pathlib
import subprocess
import tarfile

BACKUP_SUFFIX = "-opkg.backup"      # opkg_install.c OPKG_BACKUP_SUFFIX
# Our own archives, extracted with owners and modes as they are (Python
# releases before the extraction filters of PEP 706 do that by default).
TRUSTED = ({"filter": "fully_trusted"}
           if hasattr(tarfile, "fully_trusted_filter") else {})


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


class Opkg:
    def __init__(self, root, shell=("/bin/sh", "-c"), path=None):
        self.root = pathlib.Path(root)
        self.path = path            # PATH for the scripts, if not ours
        self.db = self.root / "usr/lib/opkg"
        self.info = self.db / "info"
        self.info.mkdir(parents=True, exist_ok=True)
        self.shell = tuple(shell)
        self.output = []            # what the maintainer scripts printed

    # -- database -----------------------------------------------------------
    def status(self):
        """{package: {field: value}} from usr/lib/opkg/status."""
        path = self.db / "status"
        packages = {}
        if not path.exists():
            return packages
        for block in path.read_text().strip("\n").split("\n\n"):
            if not block.strip():
                continue
            fields, conffiles = {}, {}
            for line in block.splitlines():
                if line.startswith(" "):
                    name, digest = line.split()
                    conffiles[name] = digest
                else:
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
            fields["Conffiles"] = conffiles
            packages[fields["Package"]] = fields
        return packages

    def _write_status(self, packages):
        lines = []
        for fields in packages.values():
            for key in ("Package", "Version", "Depends", "Status",
                        "Architecture"):
                if fields.get(key):
                    lines.append(f"{key}: {fields[key]}")
            if fields["Conffiles"]:
                lines.append("Conffiles:")
                lines += [f" {name} {digest}"
                          for name, digest in fields["Conffiles"].items()]
            lines.append("")
        (self.db / "status").write_text("\n".join(lines) + "\n")

    def files(self, name):
        listing = self.info / f"{name}.list"
        return listing.read_text().split() if listing.exists() else []

    # -- scripts ------------------------------------------------------------
    def _run(self, script, args, upgrade=False):
        if not script.exists():
            return
        env = dict(os.environ, IPKG_INSTROOT=str(self.root),
                   PKG_ROOT=f"{self.root}/", PKG_UPGRADE=str(int(upgrade)))
        if self.path:
            env["PATH"] = str(self.path)
        if self.shell[-1] == "-c":          # pkg.c pkg_run_script
            cmd = [*self.shell, f"{script} {args}"]
        else:
            cmd = [*self.shell, str(script), *args.split()]
        result = subprocess.run(cmd, env=env, capture_output=True,
                                text=True, timeout=30)
        self.output.append(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"{script.name} {args} failed: "
                               f"{result.stdout}{result.stderr}")

    def _installed_script(self, name, script):
        return self.info / f"{name}.{script}"

    # -- operations ---------------------------------------------------------
    def install(self, ipk_path, force_reinstall=False):
        """opkg install <file> (opkg_cmd.c, opkg_install.c)."""
        ipk = _open(ipk_path)
        control = _fields(ipk["control"]["./control"].decode())
        name, version = control["Package"], control["Version"]
        installed = self.status()
        old = installed.get(name)
        if old and force_reinstall:
            self.remove(name)
            installed, old = self.status(), None
        elif old and old["Version"] == version:
            return "already installed"
        unpack = self.root / "tmp" / f"opkg-{name}"
        unpack.mkdir(parents=True, exist_ok=True)
        for member, data in ipk["control"].items():
            path = unpack / member[2:]
            path.write_bytes(data)
            path.chmod(ipk["control_modes"][member])
        new_conffiles = ipk["control"].get("./conffiles", b"").decode()
        new_conffiles = [c for c in new_conffiles.split() if c]

        if old:
            self._run(self._installed_script(name, "prerm"),
                      f"upgrade {version}", upgrade=True)
            self._run(unpack / "preinst", f"upgrade {old['Version']}")
        else:
            self._run(unpack / "preinst", "install")
        # backup_modified_conffiles
        for conffile, digest in (old or {}).get("Conffiles", {}).items():
            path = self.root / conffile.lstrip("/")
            if path.exists() and sha256(path) != digest:
                _backup(path)
        for conffile in new_conffiles:
            if old and conffile in old["Conffiles"]:
                continue
            path = self.root / conffile.lstrip("/")
            if path.exists() and not _backup_of(path).exists():
                _backup(path)
        if old:
            self._run(self._installed_script(name, "postrm"),
                      f"upgrade {version}", upgrade=True)
            new_files = {"/" + m[2:] for m in ipk["data_files"]}
            self._remove_files(name, old, keep=new_files)
            for path in self.info.glob(f"{name}.*"):
                path.unlink()
        # install_maintainer_scripts, install_data_files
        for member, data in ipk["control"].items():
            target = self.info / f"{name}.{member[2:]}"
            target.write_bytes(data)
            target.chmod(ipk["control_modes"][member])
        self._extract(ipk["data"])
        (self.info / f"{name}.list").write_text(
            "".join(f"/{m[2:]}\n" for m in ipk["data_files"]))
        # resolve_conffiles
        conffiles = {}
        for conffile in new_conffiles:
            path = self.root / conffile.lstrip("/")
            conffiles[conffile] = sha256(path)
            backup = _backup_of(path)
            if backup.exists():
                if sha256(backup) != conffiles[conffile]:
                    path.rename(f"{path}-opkg")
                    backup.rename(path)
                else:
                    backup.unlink()
        installed = self.status()
        installed[name] = {"Package": name, "Version": version,
                           "Depends": control.get("Depends"),
                           "Status": "install user installed",
                           "Architecture": control["Architecture"],
                           "Conffiles": conffiles}
        self._write_status(installed)
        # opkg_configure.c
        self._run(self.info / f"{name}.postinst", "configure",
                  upgrade=bool(old))
        return "upgraded" if old else "installed"

    def _extract(self, data):
        """libbb/unarchive.c: no missing parent is created, and every
        directory entry's owner and mode apply, existing or not."""
        for member in data.getmembers():
            target = self.root / member.name
            if not target.parent.is_dir():
                raise RuntimeError(f"opkg cannot create {member.name}: "
                                   f"{target.parent} does not exist")
            data.extract(member, self.root, **TRUSTED)
            if member.isdir():
                os.chown(target, member.uid, member.gid)
                target.chmod(member.mode)

    def remove(self, name):
        """opkg remove <package> (opkg_remove.c)."""
        installed = self.status()
        fields = installed.pop(name)
        self._run(self._installed_script(name, "prerm"), "remove")
        self._remove_files(name, fields)
        self._run(self._installed_script(name, "postrm"), "remove")
        for path in self.info.glob(f"{name}.*"):
            path.unlink()
        self._write_status(installed)

    def _remove_files(self, name, fields, keep=()):
        """remove_data_files_and_list: a modified conffile stays."""
        for listed in self.files(name):
            if listed in keep:
                continue
            path = self.root / listed.lstrip("/")
            digest = fields["Conffiles"].get(listed)
            if digest and path.exists() and sha256(path) != digest:
                continue
            if path.exists() or path.is_symlink():
                path.unlink()


def _backup_of(path):
    return pathlib.Path(f"{path}{BACKUP_SUFFIX}")


def _backup(path):
    _backup_of(path).write_bytes(path.read_bytes())


def _fields(text):
    return dict(line.split(": ", 1) for line in text.splitlines() if line)


def _open(path):
    """The parts opkg reads from a package file (pkg_extract.c)."""
    outer = tarfile.open(path, mode="r:gz")

    def inner(name):
        raw = outer.extractfile(f"./{name}").read()
        return tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz")

    control_tar = inner("control.tar.gz")
    control, modes = {}, {}
    for member in control_tar.getmembers():
        if member.isfile():
            control[member.name] = control_tar.extractfile(member).read()
            modes[member.name] = member.mode
    data = inner("data.tar.gz")
    files = [m.name for m in data.getmembers() if not m.isdir()]
    return {"control": control, "control_modes": modes, "data": data,
            "data_files": files}
