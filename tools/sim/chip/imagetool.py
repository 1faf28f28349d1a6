# Writes a deploy staging folder into a flash image, run by the unix port so the
# image is written by exactly the LittleFS the chip mounts. Only changed files are
# written; code files that are no longer part of the build are removed, because a
# stale foo.py would shadow a new foo.mpy. Data files (records) are never touched.
# The factory record is written by the firmware's own store code (from CODE_DIR, the
# full build), exactly as the board writes it.
# usage: micropython imagetool.py deploy IMAGE STAGING_DIR
#        micropython imagetool.py factory IMAGE CODE_DIR FACTORY_JSON
import os
import sys
import vfs

sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
import flash  # noqa: E402

_CODE_DIRS = ("firmware", "lib")


def _walk(root, rel=""):
    for name, kind, *_ in os.ilistdir(root + "/" + rel if rel else root):
        path = rel + "/" + name if rel else name
        if kind == 0x4000:
            yield from _walk(root, path)
        else:
            yield path


def _same(a, b):
    try:
        if os.stat(a)[6] != os.stat(b)[6]:
            return False
    except OSError:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(1024)
            if x != fb.read(1024):
                return False
            if not x:
                return True


def _makedirs(path):
    part = ""
    for p in path.split("/")[:-1]:
        part += "/" + p
        try:
            os.mkdir(part)
        except OSError:
            pass


def _mount(image):
    bd = flash.FileBlockDevice(image)
    try:
        fs = vfs.VfsLfs2(bd)
    except OSError:
        vfs.VfsLfs2.mkfs(bd)
        fs = vfs.VfsLfs2(bd)
    vfs.mount(fs, "/flash")


def deploy(image, staging):
    _mount(image)
    wanted = set(_walk(staging))
    written = 0
    for path in sorted(wanted):
        dst = "/flash/" + path
        if _same(staging + "/" + path, dst):
            continue
        _makedirs("flash/" + path)
        with open(staging + "/" + path, "rb") as src, open(dst, "wb") as out:
            while True:
                chunk = src.read(1024)
                if not chunk:
                    break
                out.write(chunk)
        written += 1
        print("wrote", path)
    removed = 0
    for d in _CODE_DIRS:
        try:
            old = list(_walk("/flash/" + d))
        except OSError:
            continue
        for rel in old:
            if d + "/" + rel not in wanted:
                os.remove("/flash/" + d + "/" + rel)
                removed += 1
                print("removed", d + "/" + rel)
    print("deployed %d files: %d written, %d removed" % (len(wanted), written, removed))
    vfs.umount("/flash")


def factory(image, code, path):
    import json
    _mount(image)
    sys.path[:0] = [code, code + "/lib"]
    from firmware.store import Store
    with open(path) as f:
        Store("/flash").set_factory(json.load(f))
    print("factory config written")
    vfs.umount("/flash")


if sys.argv[1] == "deploy":
    deploy(sys.argv[2], sys.argv[3])
else:
    factory(sys.argv[2], sys.argv[3], sys.argv[4])
