#!/usr/bin/env python3
"""Writes a one-architecture OCI image archive from a root directory, for the node tests.

    oci.py OUT.tar NAME ROOT [--entrypoint JSON] [--cmd JSON] [--env K=V ...] [--user U]

NAME is the full reference a kubelet asks for (`docker.io/apache/kafka:3.9.1`); the index carries
it as `io.containerd.image.name`, so that `ctr images import` stores the image under exactly that
name and a chart's manifest runs unchanged. Only the standard library. The released image is
written by image/assemble.py; this one is for images that only the tests use.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import tarfile

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def doc(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def add_blob(out, data, media_type, blobs):
    digest = hashlib.sha256(data).hexdigest()
    if digest not in blobs:
        blobs.add(digest)
        info = tarfile.TarInfo("blobs/sha256/" + digest)
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def layer_of(root):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                info = t.gettarinfo(path, os.path.relpath(path, root))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isfile():
                    with open(path, "rb") as f:
                        t.addfile(info, f)
                else:
                    t.addfile(info)
    tar = raw.getvalue()
    return tar, gzip.compress(tar, mtime=0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("name")
    p.add_argument("root")
    p.add_argument("--entrypoint", default="null")
    p.add_argument("--cmd", default="null")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--user", default="")
    p.add_argument("--workdir", default="")
    a = p.parse_args()

    tar, gz = layer_of(a.root)
    blobs = set()
    with tarfile.open(a.out, "w") as out:
        layer = add_blob(out, gz, "application/vnd.oci.image.layer.v1.tar+gzip", blobs)
        config = {
            "architecture": ARCH,
            "os": "linux",
            "config": {
                "Entrypoint": json.loads(a.entrypoint),
                "Cmd": json.loads(a.cmd),
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env,
                "User": a.user,
                "WorkingDir": a.workdir,
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        }
        config_desc = add_blob(out, doc(config), "application/vnd.oci.image.config.v1+json", blobs)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer],
        }
        manifest_desc = add_blob(out, doc(manifest), manifest["mediaType"], blobs)
        manifest_desc["platform"] = {"architecture": ARCH, "os": "linux"}
        manifest_desc["annotations"] = {
            "io.containerd.image.name": a.name,
            "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1],
        }
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [manifest_desc]}
        for name, data in (("oci-layout", doc({"imageLayoutVersion": "1.0.0"})), ("index.json", doc(index))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
