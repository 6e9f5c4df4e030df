"""install.sh on a generic Klipper host: a temporary HOME laid out as
KIAUH and MainsailOS lay it out (~/klipper a copy of real upstream
Klipper, ~/klippy-env a real virtual environment, ~/printer_data/config),
a clone of this repository with an origin, and the simulator as the
device.  pip installs websocket-client from the cached wheel
(PIP_NO_INDEX, PIP_FIND_LINKS), never from the network."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import realparts
from pkgtools import CACHE, ROOT, commit, git, make_checkout

from package import wheel
from simulator import Simulator

PRINTER_CFG = """\
[mcu]
serial: /tmp/printer_mcu

[printer]
kinematics: none
max_velocity: 1
max_accel: 1

#*# <---------------------- SAVE_CONFIG ---------------------->
#*# DO NOT EDIT THIS BLOCK OR BELOW. The contents are auto-generated.
#*#
"""
MOONRAKER_CONF = """\
[server]
host: 0.0.0.0
port: 7125

[update_manager]
refresh_interval: 168

[update_manager mainsail]
type: web
repo: mainsail-crew/mainsail
path: ~/mainsail
"""


@pytest.fixture(scope="module")
def sim():
    with Simulator(push_interval=0.1) as device:
        yield device


@pytest.fixture(scope="module")
def wheels():
    wheel.fetch(CACHE)
    return CACHE


@pytest.fixture(scope="module")
def template_klipper(tmp_path_factory):
    """Upstream Klipper as a git clone, made once and copied per host."""
    upstream = realparts.need("install-sh", "klipper-upstream")
    tree = tmp_path_factory.mktemp("klipper") / "klipper"
    shutil.copytree(upstream, tree)
    git(tree, "init", "-q")
    git(tree, "add", ".")
    commit(tree)
    return tree


@pytest.fixture(scope="module")
def template_env(tmp_path_factory):
    """A real virtual environment, made once and copied for each host."""
    env = tmp_path_factory.mktemp("venv") / "klippy-env"
    subprocess.run(["python3", "-m", "venv", str(env)], check=True)
    return env


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """This repository's install files, committed as an upstream repo."""
    repo = tmp_path_factory.mktemp("origin") / "panda-breath"

    def add_installer(checkout):
        shutil.copy(ROOT / "install.sh", checkout / "install.sh")
    return make_checkout(repo, edit=add_installer)


class Host:
    def __init__(self, home, sim, wheels, closed):
        self.home, self.sim = home, sim
        self.clone = home / "panda-breath"
        self.extras = home / "klipper" / "klippy" / "extras"
        self.env_dir = home / "klippy-env"
        self.config = home / "printer_data" / "config"
        self.marker = home / "klipper-restarted"
        self.env = dict(os.environ, HOME=str(home), PIP_NO_INDEX="1",
                        PIP_FIND_LINKS=str(wheels),
                        PATH=f"{home / '.local' / 'bin'}:{os.environ['PATH']}")
        self.env.pop("PANDA_BREATH_CONFIG_DIR", None)
        self.restart = ["--restart-cmd", f"touch {self.marker}",
                        "--moonraker", f"http://127.0.0.1:{closed}",
                        "--klipper-socket", str(home / "no-klipper.sock")]

    def install(self, *args, restart=True):
        command = ["bash", str(self.clone / "install.sh"), *map(str, args)]
        if restart:
            command += self.restart
        result = subprocess.run(command, env=self.env, capture_output=True,
                                text=True, timeout=300, stdin=subprocess.
                                DEVNULL)
        assert "Traceback" not in result.stderr
        return result

    def python(self, code):
        return subprocess.run([str(self.env_dir / "bin" / "python"), "-c",
                               code], env=self.env, capture_output=True,
                              text=True, timeout=60, cwd=self.home /
                              "klipper")

    def snapshot(self):
        """sha256 of every file of Klipper's, the config's, the clone's
        and ~/.local (links by their target)."""
        found = {}
        paths = [p for top in ("klipper", "klippy-env", "printer_data",
                               "panda-breath", ".local")
                 for p in (self.home / top).rglob("*")]
        for path in sorted(paths):
            if "__pycache__" in path.parts:
                continue
            if path.is_symlink():
                found[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                found[str(path)] = hashlib.sha256(
                    path.read_bytes()).hexdigest()
        return found


@pytest.fixture
def host(tmp_path, sim, wheels, template_klipper, template_env, origin):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copytree(template_klipper, home / "klipper")
    shutil.copytree(template_env, home / "klippy-env", symlinks=True)
    config = home / "printer_data" / "config"
    config.mkdir(parents=True)
    (config / "printer.cfg").write_text(PRINTER_CFG)
    (config / "moonraker.conf").write_text(MOONRAKER_CONF)
    subprocess.run(["git", "clone", "-q", str(origin),
                    str(home / "panda-breath")], check=True)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    return Host(home, sim, wheels, closed)


def websocket_client_of(host):
    return host.python("import websocket, sys; "
                       "print(websocket.__version__, websocket.__file__)")


def test_install_sets_up_everything_once(host):
    result = host.install("--host", "127.0.0.1", "--port", host.sim.port,
                          "--updater", "yes")
    assert result.returncode == 0, result.stdout + result.stderr
    module = host.clone / "klipper" / "extras" / "panda_breath.py"
    link = host.extras / "panda_breath.py"
    assert link.is_symlink() and Path(os.readlink(link)) == module
    version, where = websocket_client_of(host).stdout.split()
    assert version == wheel.VERSION
    assert where.startswith(str(host.env_dir))
    cfg = (host.config / "panda_breath.cfg").read_text()
    assert f"host: 127.0.0.1\nport: {host.sim.port}\n" in cfg
    assert (host.config / "printer.cfg").read_text() == PRINTER_CFG.replace(
        "#*# <---", "[include panda_breath.cfg]\n#*# <---")
    assert (host.config / "moonraker.conf").read_text() == (
        MOONRAKER_CONF + "\n[update_manager panda-breath]\n"
        "type: git_repo\n"
        f"path: {host.clone}\n"
        f"origin: {git_out(host.clone, 'remote', 'get-url', 'origin')}\n"
        f"primary_branch: {git_out(host.clone, 'branch', '--show-current')}"
        "\nmanaged_services: klipper\n")
    assert "restart Moonraker" in result.stdout
    assert host.marker.exists()
    assert "klippy/extras/panda_breath.py" in (
        host.home / "klipper" / ".git" / "info" / "exclude").read_text()
    assert git_out(host.home / "klipper", "status", "--porcelain",
                   "klippy/extras") == ""
    # the command on PATH, with this host's config folder
    status = subprocess.run(["panda-breath", "status"], env=host.env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"{host.config}/panda_breath.cfg (host 127.0.0.1" in status.stdout
    assert "firmware V1.0.3" in status.stdout

    # again, as after a git pull: nothing changes, Klipper keeps running
    host.marker.unlink()
    before = host.snapshot()
    again = host.install()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing changed" in again.stdout
    assert not host.marker.exists()
    assert host.snapshot() == before


def git_out(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_uninstall_undoes_all_of_it(host):
    before = host.snapshot()
    assert host.install("--host", "127.0.0.1", "--port", host.sim.port,
                        "--updater", "yes").returncode == 0
    host.marker.unlink()
    result = host.install("--uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert host.marker.exists()        # Klipper restarted without it
    host.marker.unlink()
    after = host.snapshot()
    # what pip and git leave behind is not the installer's
    for path in list(after):
        if "/klippy-env/" in path and "websocket" not in path \
                or "/klipper/.git/" in path and not path.endswith("exclude"):
            after.pop(path)
            before.pop(path, None)
    assert after == before
    assert "No module named 'websocket'" in websocket_client_of(host).stderr
    again = host.install("--uninstall")
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert not host.marker.exists()


def test_dry_run_changes_nothing(host):
    before = host.snapshot()
    result = host.install("--host", "127.0.0.1", "--port", host.sim.port,
                          "--updater", "yes", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would run: ln -sfn" in result.stdout
    assert "would run: cli setup --host 127.0.0.1" in result.stdout
    assert host.snapshot() == before


def test_without_consent_the_updater_section_is_only_shown(host):
    result = host.install("--host", "127.0.0.1", "--port", host.sim.port,
                          "--updater", "no", "--no-restart", restart=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (host.config / "moonraker.conf").read_text() == MOONRAKER_CONF
    assert "[update_manager panda-breath]\ntype: git_repo\n" in result.stdout
    assert "not restarting Klipper (--no-restart)" in result.stdout


def test_offline_without_the_wheel_stops_with_a_clear_message(host):
    host.env.pop("PIP_FIND_LINKS")
    result = host.install("--host", "127.0.0.1", "--port", host.sim.port)
    assert result.returncode == 1
    assert "pip could not install websocket-client 1.9.2" in result.stderr
    assert "--help" in result.stderr
    assert not (host.config / "panda_breath.cfg").exists()
    assert "include" not in (host.config / "printer.cfg").read_text()
    assert not host.marker.exists()


def test_unreachable_device_leaves_klipper_config_alone(host):
    result = host.install("--host", "127.0.0.1", "--port", 9)
    assert result.returncode == 1
    assert "refused the connection" in result.stderr
    assert "panda-breath setup failed" in result.stderr
    assert (host.config / "printer.cfg").read_text() == PRINTER_CFG
    assert not host.marker.exists()


def test_missing_klipper_is_named(host):
    result = host.install("--klipper", host.home / "nowhere")
    assert result.returncode == 1
    assert "no Klipper at" in result.stderr and "--klipper" in result.stderr


def test_installed_module_loads_in_klippers_python(host):
    assert host.install("--host", "127.0.0.1", "--port", host.sim.port,
                        "--no-restart", restart=False).returncode == 0
    loaded = host.python(
        "import sys; sys.path.insert(0, 'klippy'); "
        "import extras.panda_breath as m; "
        "print(m.websocket is not None, m.__file__)")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == [
        "True", str(host.extras / "panda_breath.py")]


def test_klippy_import_test_passes_on_the_installed_tree(host):
    """Klipper's own build check imports every extra, ours among them."""
    try:
        import greenlet  # noqa: F401
    except ImportError:
        pytest.skip(f"{sys.executable} lacks Klipper's requirements "
                    "(greenlet): run ./build.sh to refresh .venv")
    assert host.install("--host", "127.0.0.1", "--port", host.sim.port,
                        "--no-restart", restart=False).returncode == 0
    result = subprocess.run([sys.executable, "klippy/klippy.py",
                             "--import-test"], cwd=host.home / "klipper",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
