"""Build the device files and put them on a board: a flash image (the simulator) or a
serial port (a real board, or the simulator's console) through mpremote.

Both doors deploy the same build: boot.py and main.py as source (the board runs them by
name), firmware/ and lib/ as .py or, with mpy=True, as .mpy from mpy-cross. With
romfs=True, firmware/ and lib/ go into a ROMFS image instead (the `romfs` partition of
MicroPython's partitions-4MiB-romfs.csv, mounted at /rom): the code then runs from flash
and leaves ~35% more heap, which is what TLS and BLE need on an ESP32 without PSRAM. With
frozen=True the board's MicroPython already holds firmware/ and lib/ (built with the project's
manifest.py): only boot.py and main.py go to LittleFS, and code left there is removed, since it
would come before the frozen modules on sys.path.
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
ROOT_FILES = ("boot.py", "main.py")
CODE_DIRS = ("firmware", "lib")


class DeployError(Exception):
    pass


def sources():
    """(path relative to the repo, absolute path) of every device file, in a stable order."""
    out = [(name, ROOT / name) for name in ROOT_FILES]
    for d in CODE_DIRS:
        for p in sorted((ROOT / d).rglob("*.py")):
            if "__pycache__" not in p.parts:
                out.append((p.relative_to(ROOT).as_posix(), p))
    return out


def _mpy_cross():
    """mpy-cross built from the same MicroPython source as the simulated chip (one version)."""
    from tools.sim.chip import build as chip_build
    return chip_build.mpy_cross()


def build(mpy=False, out=None):
    """Fill a staging folder with the device files; returns it. Recompiles only what changed
    (and everything when the compiler changed). Safe to call from parallel processes (test
    workers): one builds while the others wait, and each file appears whole."""
    out = Path(out or BUILD / ("mpy" if mpy else "py"))
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / (".%s.lock" % out.name), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        compiler = _mpy_cross() if mpy else ""
        stamp = out.parent / (".%s.compiler" % out.name)      # beside: nothing extra reaches the board
        fresh = stamp.exists() and stamp.read_text() == compiler
        wanted = set()
        for rel, src in sources():
            if mpy and not rel in ROOT_FILES:
                rel = rel[:-3] + ".mpy"
            dst = out / rel
            wanted.add(dst)
            if fresh and dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            if rel.endswith(".mpy"):
                r = subprocess.run([compiler, "-o", str(tmp), "-s", rel[:-4] + ".py", str(src)],
                                   capture_output=True, text=True)
                if r.returncode:
                    raise DeployError("mpy-cross failed on %s: %s" % (src, r.stderr.strip()))
            else:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        stamp.write_text(compiler)
        for p in list(out.rglob("*")):
            if p.is_file() and p not in wanted:
                p.unlink()
    return out


def _fresh_dir(path):
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def build_romfs():
    """The ROMFS image (bytes) of firmware/ and lib/ as .mpy."""
    import contextlib
    import io
    from mpremote.romfs import make_romfs
    staging = build(mpy=True)
    src = _fresh_dir(BUILD / "romfs-src")
    for d in CODE_DIRS:
        shutil.copytree(staging / d, src / d)
    with contextlib.redirect_stdout(io.StringIO()):   # it draws the tree on stdout
        return make_romfs(str(src), mpy_cross=False)


def _fit_partition(romfs):
    """The ROMFS image as the partition holds it: padded with erased flash to its size."""
    from tools.sim.board import ROMFS_PARTITION_SIZE
    if len(romfs) > ROMFS_PARTITION_SIZE:
        raise DeployError("the ROMFS image (%d bytes) is larger than the romfs partition (%d bytes)"
                          % (len(romfs), ROMFS_PARTITION_SIZE))
    return romfs + b"\xff" * (ROMFS_PARTITION_SIZE - len(romfs))


def romfs_path(image):
    """Where the simulator keeps a board's ROMFS partition: beside its flash image."""
    return Path(str(image) + ".romfs")


def _imagetool(*args, micropython=None):
    from tools.sim.board import CHIP, micropython_binary
    r = subprocess.run([micropython_binary(micropython), "-X", "heapsize=1M", str(CHIP / "imagetool.py"),
                        *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        raise DeployError("could not write %s: %s" % (args[1], (r.stdout + r.stderr).strip()[-500:]))
    return r.stdout


def _code_elsewhere(romfs, frozen):
    if romfs and frozen:
        raise DeployError("the code goes either to the romfs partition or is frozen in, not both")
    return romfs or frozen


def to_image(image, mpy=False, micropython=None, log=print, factory=None, romfs=False, frozen=False):
    """Write the build into a simulated board's flash image (created blank if missing).
    romfs=True puts the code in the board's ROMFS partition (a file beside the image) and
    only boot.py/main.py in the filesystem; frozen=True puts only those (the chip holds the
    code: tools/sim/chip/build.py, roost=True). A factory config (dict) is written too, if given."""
    from tools.sim.board import blank_image
    image = Path(image)
    if not image.exists():
        blank_image(image)
    rom = romfs_path(image)
    staging = build(mpy or romfs)
    if _code_elsewhere(romfs, frozen):
        if romfs:
            rom.write_bytes(_fit_partition(build_romfs()))
        elif rom.exists():
            rom.unlink()
        lfs = _fresh_dir(BUILD / "boot-lfs")
        for name in ROOT_FILES:
            shutil.copyfile(staging / name, lfs / name)
        staging = lfs
    elif rom.exists():
        rom.unlink()
    log(files_to_image(image, staging, micropython=micropython))
    if factory is not None:
        factory_to_image(image, factory, micropython=micropython, log=log)


def files_to_image(image, staging, micropython=None):
    """Make the image's filesystem hold what the staging folder holds (changed files only)."""
    from tools.sim.board import blank_image
    if not Path(image).exists():
        blank_image(image)
    return _imagetool("deploy", image, staging, micropython=micropython).strip().splitlines()[-1]


def factory_to_image(image, factory, micropython=None, log=print):
    """Write the factory config (node ID, PoP, endpoints, ...) into an image, as manufacturing does."""
    import json
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(factory, f)
        f.flush()
        log(_imagetool("factory", image, build(mpy=True), f.name, micropython=micropython).strip())


# Runs on the board: prints "<path> <sha256>" for every deployed file it has.
_HASHES = """
import os, hashlib, binascii
def show(p):
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(512)
            if not b:
                break
            h.update(b)
    print(p, binascii.hexlify(h.digest()).decode())
def walk(d):
    for name, kind, *_ in os.ilistdir(d):
        p = d + '/' + name
        walk(p) if kind == 0x4000 else show(p)
for f in %r:
    try:
        walk(f) if os.stat(f)[0] & 0x4000 else show(f)
    except OSError:
        pass
""" % (ROOT_FILES + CODE_DIRS,)


def mpremote(port, *args, timeout=120):
    """Run mpremote against a port (socket://host:port, /dev/ttyUSB0, ...); returns stdout."""
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeployError("mpremote timed out on %s" % port)
    if r.returncode:
        raise DeployError("mpremote failed on %s: %s" % (port, (r.stderr or r.stdout).strip()[-500:]))
    return r.stdout


def _board_hashes(port):
    have = {}
    for line in mpremote(port, "exec", _HASHES).splitlines():
        parts = line.split()
        if len(parts) == 2:
            have[parts[0]] = parts[1]
    return have


# Runs on the board: "<size> <sha256>" of the romfs partition's first n bytes.
_ROM_HASH = """
import vfs, hashlib, binascii
dev = vfs.rom_ioctl(2, 0)
h = hashlib.sha256()
buf = bytearray(512)
n = %d
for off in range(0, n, 512):
    dev.readblocks(0, buf, off)
    h.update(buf if n - off >= 512 else buf[:n - off])
print(binascii.hexlify(h.digest()).decode())
"""


# Runs on the board: remove the code folders from LittleFS, folders too (an empty /firmware
# would still come before /rom on sys.path, as a namespace package without the modules).
_RMTREE = """
import os
def rm(p):
    for name, kind, *_ in os.ilistdir(p):
        q = p + '/' + name
        rm(q) if kind == 0x4000 else os.remove(q)
    os.rmdir(p)
for d in %r:
    try:
        rm(d)
    except OSError:
        pass
""" % (CODE_DIRS,)


# Runs on the board: is roost frozen into its MicroPython? mpremote interrupts the running
# firmware without a reset, so its modules (from LittleFS, perhaps) are set aside first and only
# the frozen ones are looked at.
_FROZEN_CHECK = """
import sys
path, mods = sys.path[:], sys.modules.pop('firmware', None)
sys.path[:] = ['.frozen']
try:
    import firmware
    print('frozen')
except ImportError:
    print('missing')
sys.path[:] = path
if mods is not None:
    sys.modules['firmware'] = mods
"""


def _check_frozen(port):
    if mpremote(port, "exec", _FROZEN_CHECK).strip() != "frozen":
        raise DeployError("this board's MicroPython has no roost frozen in: build it with the project's "
                          "manifest.py (docs/real-board.md, \"Frozen build\") or deploy without --frozen")


def _romfs_to_port(port, log):
    """Write the ROMFS image into the board's romfs partition (mpremote's own `romfs deploy`,
    which checks the partition and its size), then read it back to verify it."""
    import tempfile
    romfs = build_romfs()
    with tempfile.NamedTemporaryFile(suffix=".romfs") as image:   # mpremote takes a file named *.romfs
        image.write(romfs)
        image.flush()
        out = mpremote(port, "romfs", "deploy", image.name, timeout=300)
    if "ROMFS image deployed" not in out:
        # mpremote prints its refusals ("ROMFS is not enabled on this device", "... partition not
        # found", "too big") and exits 1 or 0: say what it said.
        lines = [line.strip() for line in out.replace("\r", "\n").splitlines() if line.strip()]
        raise DeployError("no ROMFS written on %s: %s" % (port, lines[-1] if lines else "mpremote said nothing"))
    have = mpremote(port, "exec", _ROM_HASH % len(romfs)).strip()
    if have != hashlib.sha256(romfs).hexdigest():
        raise DeployError("verify failed: the romfs partition does not hold the image; deploy again")
    log("ROMFS: %d bytes written to the romfs partition, verified" % len(romfs))


def to_port(port, mpy=False, log=print, factory=None, romfs=False, frozen=False):
    """Copy changed files to a board over its serial console (hash compare), check what the
    board then holds (hash compare again), write the factory config if given, then reset it.
    romfs=True: firmware/ and lib/ go into the board's romfs partition (a build with one:
    partitions-4MiB-romfs.csv) and leave LittleFS, where they would shadow it. frozen=True:
    the board's MicroPython holds them (checked first); they leave LittleFS too."""
    elsewhere = _code_elsewhere(romfs, frozen)
    staging = build(mpy or romfs)
    if romfs:
        _romfs_to_port(port, log)
    elif frozen:
        _check_frozen(port)
    have = _board_hashes(port)
    local = {p.relative_to(staging).as_posix(): p for p in staging.rglob("*") if p.is_file()
             and not (elsewhere and p.relative_to(staging).parts[0] in CODE_DIRS)}
    digest = {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in local.items()}
    changed = [rel for rel in sorted(local) if have.get(rel) != digest[rel]]
    stale = [rel for rel in have if rel.split("/")[0] in CODE_DIRS and rel not in local]
    args = []
    dirs = set()
    for rel in changed:
        parts = rel.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    for d in sorted(dirs):
        args += ["exec", "import os\ntry:\n os.mkdir(%r)\nexcept OSError:\n pass" % d, "+"]
    for rel in changed:
        args += ["fs", "cp", str(local[rel]), ":" + rel, "+"]
    if elsewhere:
        args += ["exec", _RMTREE, "+"]
    else:
        for rel in stale:
            args += ["fs", "rm", ":" + rel, "+"]
    if changed or stale or elsewhere:
        mpremote(port, *args[:-1])
        args = []
        now = _board_hashes(port)
        bad = [rel for rel in local if now.get(rel) != digest[rel]] + [rel for rel in stale if rel in now]
        if bad:
            raise DeployError("verify failed: %d files differ on the board (%s); deploy again"
                              % (len(bad), ", ".join(sorted(bad)[:3])))
    if factory is not None:
        import json
        args += ["exec", "import json\nfrom firmware.store import Store\nStore().set_factory(json.loads(%r))"
                 % json.dumps(factory), "+"]
    if elsewhere or changed or stale or factory is not None:
        mpremote(port, *args, "reset")
    log("deployed %d files: %d written, %d removed, all verified" % (len(local), len(changed), len(stale)))
    return changed


def package_json():
    """The mip manifest of the device files (relative URLs: works from a clone or github:)."""
    return {"version": _version(), "urls": [[rel, rel] for rel, _ in sources()]}


def _version():
    for line in (ROOT / "firmware" / "app.py").read_text().splitlines():
        if line.startswith("VERSION"):
            return line.split("=")[1].strip().strip('"')
    raise DeployError("firmware/app.py has no VERSION")


def package_json_text():
    import json
    pj = package_json()
    urls = ",\n".join("    " + json.dumps(u) for u in pj["urls"])
    return '{\n  "version": %s,\n  "urls": [\n%s\n  ]\n}\n' % (json.dumps(pj["version"]), urls)


def write_package_json():
    """Regenerate package.json after adding or removing device files (a test checks it)."""
    (ROOT / "package.json").write_text(package_json_text())
