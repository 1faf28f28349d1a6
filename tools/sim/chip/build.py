"""Build the simulated chip from MicroPython's source: mpy-cross, and the unix port as a 32-bit
ESP32_GENERIC look-alike with the NimBLE Bluetooth host (the variant in tools/sim/chip/esp32/).

    python -m tools.sim.chip.build          # build if needed; print the binaries' paths
    chip_binary(), mpy_cross()              # the same, from code (builds on first use)

The source: $MICROPY_SRC, else ../shared/micropython beside the project, else a shallow clone of
the release tag (needs git and the internet). It is copied into the cache, the variant's patch is
applied to the copy, and the build runs there:

    $ROOST_CACHE (default ~/.cache/roost)/chip/<key>/src/...          patched source and objects
    <key> = hash of the source tree, the variant's C files and patch, and this file

The frozen Python (the simulator's ROM and shims, tools/sim/chip/esp32/manifest.py) is not in the
key: make rebuilds just the frozen module and relinks when those files change (a few seconds).

    chip_binary(roost=True)                 # the same chip with roost frozen in (../manifest.py)

is the custom firmware a board without PSRAM can run (docs/real-board.md, "Frozen build"): the
project's manifest.py on top of the chip's own and its C modules (../cmodules), in
build-esp32-roost beside the plain build (a build of its own: the C modules add qstrs).
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

TAG = "v1.28.0"
REPO = "https://github.com/micropython/micropython"
HERE = Path(__file__).resolve().parent
VARIANT = HERE / "esp32"
PATCH = VARIANT / "esp32-sim.patch"
PROJECT = HERE.parents[2]
# What the build reads from the source tree (ports/esp32 and docs are reference only).
SOURCE_PARTS = ("py", "extmod", "shared", "lib", "mpy-cross", "ports/unix", "tools", "drivers")
# Python frozen into the chip: a change means a relink, not a new cache entry.
FROZEN = [VARIANT / "manifest.py"] + sorted(HERE.glob("*.py")) + sorted((HERE.parent / "shims").glob("*.py"))
# ... and into the chip with roost frozen in: the project's manifest and what it freezes, and
# its C modules (cmodules/, built in with USER_C_MODULES: make recompiles what changed).
CMODULES = PROJECT / "cmodules"
FROZEN_ROOST = [VARIANT / "manifest_roost.py", PROJECT / "manifest.py"] + sorted(
    p for d in ("firmware", "lib") for p in (PROJECT / d).rglob("*.py") if "__pycache__" not in p.parts) + sorted(
    p for p in CMODULES.rglob("*") if p.is_file())


class BuildError(RuntimeError):
    pass


def cache_root():
    root = os.environ.get("ROOST_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "roost"


def source_dir():
    """Where MicroPython's source is: $MICROPY_SRC, ../shared/micropython, or a clone of TAG."""
    env = os.environ.get("MICROPY_SRC")
    if env:
        if not (Path(env) / "py" / "mpconfig.h").exists():
            raise BuildError("MICROPY_SRC=%s is not a MicroPython source tree (no py/mpconfig.h)" % env)
        return Path(env)
    shared = PROJECT.parent / "shared" / "micropython"
    if (shared / "py" / "mpconfig.h").exists():
        return shared
    clone = cache_root() / ("micropython-" + TAG)
    if (clone / "py" / "mpconfig.h").exists():
        return clone
    print("chip: cloning MicroPython %s (set MICROPY_SRC to use a local tree)" % TAG, file=sys.stderr)
    r = subprocess.run(["git", "clone", "-q", "--depth", "1", "--recurse-submodules", "--shallow-submodules",
                        "-b", TAG, REPO, str(clone)], capture_output=True, text=True)
    if r.returncode:
        shutil.rmtree(clone, ignore_errors=True)
        raise BuildError("no MicroPython source: set MICROPY_SRC, put it in ../shared/micropython, or allow "
                         "`git clone %s` (%s)" % (REPO, (r.stderr.strip().splitlines() or ["git failed"])[-1]))
    return clone


def _files(root, parts):
    for part in parts:
        base = root / part
        if base.is_file():
            yield base
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in (".git", "build") and not d.startswith("build-"))
            for name in sorted(filenames):
                yield Path(dirpath) / name


def _hash_files(h, root, paths):
    for p in paths:
        st = p.stat()
        # Size and mtime stand for the content in a tree nobody edits (the release source);
        # the variant's own files are hashed by content.
        h.update(("%s\0%d\0%d\n" % (p.relative_to(root), st.st_size, st.st_mtime_ns)).encode())


def cache_key(src):
    h = hashlib.sha256()
    _hash_files(h, src, _files(src, SOURCE_PARTS))
    for p in sorted(VARIANT.iterdir()):
        if p.suffix in (".h", ".c", ".mk", ".patch"):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def frozen_key(roost=False):
    h = hashlib.sha256()
    for p in FROZEN + (FROZEN_ROOST if roost else []):
        h.update(p.relative_to(PROJECT).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _run(cmd, cwd, log):
    with open(log, "ab") as f:
        f.write(("\n$ %s\n" % " ".join(map(str, cmd))).encode())
        f.flush()
        r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        tail = Path(log).read_text(errors="replace").splitlines()[-25:]
        raise BuildError("chip build failed (%s); the end of %s:\n%s" % (" ".join(map(str, cmd[:3])), log,
                                                                        "\n".join(tail)))


def _prepare(src, work):
    """Copy the source into the cache and apply the variant's patch (the source stays untouched)."""
    tmp = work.with_name(work.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for part in SOURCE_PARTS:
        if (src / part).exists():
            shutil.copytree(src / part, tmp / part, symlinks=True,
                            ignore=shutil.ignore_patterns(".git", "build", "build-*"))
    for dirpath, dirnames, filenames in os.walk(tmp):       # a read-only source gives read-only copies
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o200)
    r = subprocess.run(["patch", "-p1", "-s", "-i", str(PATCH)], cwd=tmp, capture_output=True, text=True)
    if r.returncode:
        raise BuildError("the variant's patch does not apply to %s: %s" % (src, r.stdout + r.stderr))
    os.replace(tmp, work)


def build(roost=False):
    """Build (or find cached) mpy-cross and the chip (roost=True: with roost frozen in).
    Returns {"micropython": path, "mpy-cross": path}."""
    src = source_dir()
    key = cache_key(src)
    entry = cache_root() / "chip" / key
    entry.mkdir(parents=True, exist_ok=True)
    work = entry / "src"
    unix = work / "ports" / "unix"
    build_dir = "build-esp32-roost" if roost else "build-esp32"
    out = {"micropython": unix / build_dir / "micropython", "mpy-cross": work / "mpy-cross" / "build" / "mpy-cross"}
    stamp = entry / (build_dir + ".stamp")
    fkey = frozen_key(roost)
    if out["micropython"].exists() and stamp.exists() and stamp.read_text() == fkey:
        return out
    if roost:
        build()                                     # mpy-cross, and the patched source
    with open(entry / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)            # parallel test workers and make setup
        if out["micropython"].exists() and stamp.exists() and stamp.read_text() == fkey:
            return out
        log = entry / "build.log"
        if not work.exists():
            print("chip: building MicroPython %s as a 32-bit ESP32 (NimBLE) from %s" % (TAG, src), file=sys.stderr)
            _prepare(src, work)
        jobs = "-j%d" % max(2, os.cpu_count() or 2)
        _run(["make", jobs, "-C", str(work / "mpy-cross")], work, log)
        custom = ["FROZEN_MANIFEST=%s" % (VARIANT / "manifest_roost.py"), "USER_C_MODULES=%s" % CMODULES] if roost \
            else ["FROZEN_MANIFEST=%s" % (VARIANT / "manifest.py")]
        _run(["make", jobs, "-C", str(unix), "VARIANT_DIR=%s" % VARIANT, "BUILD=" + build_dir] + custom, work, log)
        stamp.write_text(fkey)
    return out


_built = {}


def _binaries(roost=False):
    key = frozen_key(roost)
    if _built.get(roost, {}).get("frozen") != key:
        _built[roost] = dict(build(roost), frozen=key)
    return _built[roost]


def chip_binary(roost=False):
    """The chip's binary; roost=True: the one with roost frozen in."""
    return str(_binaries(roost)["micropython"])


def mpy_cross():
    return str(_binaries()["mpy-cross"])


def main():
    # Both chips now, not in the middle of a test run: a build there takes both cores.
    try:
        out = build()
        out["micropython (roost frozen in, cmodules)"] = build(roost=True)["micropython"]
    except BuildError as e:
        sys.exit("chip: %s" % e)
    for name, path in out.items():
        print("%s %s (%d bytes)" % (name, path, path.stat().st_size))


if __name__ == "__main__":
    main()
