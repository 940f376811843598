#!/usr/bin/env python3
"""Writes an OCI image layout holding one image index over per-architecture images.

    assemble.py LAYOUT VERSION COMMIT SOURCE_DATE_EPOCH ARCH=LAYER.tar ...

Each layer tar (already deterministic: image/build.sh writes it) is compressed with `gzip -n`
semantics (no name, mtime 0), and the JSON documents are written with sorted keys and no
whitespace, so that the same inputs always give the same digests. Prints the index's digest.
Only the standard library: the format is four small JSON documents and content-addressed blobs.
"""

import datetime
import gzip
import hashlib
import json
import os
import sys

REPO = "https://github.com/kafka-expose/kafka-expose"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
VARIANT = {"arm64": "v8"}


def blob(layout, data, media_type, **extra):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest.split(":")[1])
    with open(path, "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}


def doc(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def main():
    layout, version, commit, epoch = sys.argv[1:5]
    layers = dict(arg.split("=", 1) for arg in sys.argv[5:])
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    created = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    labels = {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.description": "Makes Kafka brokers deployed by unmodified charts reachable from outside a Kubernetes cluster",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.source": REPO,
        "org.opencontainers.image.title": "kafka-expose",
        "org.opencontainers.image.url": REPO,
        "org.opencontainers.image.version": version,
    }
    manifests = []
    for arch in sorted(layers):
        with open(layers[arch], "rb") as f:
            tar = f.read()
        compressed = gzip.compress(tar, compresslevel=9, mtime=0)
        layer = blob(layout, compressed, LAYER)
        platform = {"architecture": arch, "os": "linux"}
        if arch in VARIANT:
            platform["variant"] = VARIANT[arch]
        config = {
            **platform,
            "created": created,
            "config": {
                "User": "65532:65532",
                "Entrypoint": ["/usr/bin/kafka-expose"],
                "Cmd": ["serve", "--tls-cert=/certs/tls.crt", "--tls-key=/certs/tls.key"],
                "Env": [
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                ],
                "ExposedPorts": {"8080/tcp": {}, "8443/tcp": {}},
                "WorkingDir": "/",
                "Labels": labels,
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
            "history": [{"created": created, "created_by": "image/build.sh"}],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": blob(layout, doc(config), CONFIG),
            "layers": [layer],
            "annotations": labels,
        }
        manifests.append(blob(layout, doc(manifest), MANIFEST, platform=platform))
    index = blob(
        layout,
        doc({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests, "annotations": labels}),
        INDEX,
        annotations={"org.opencontainers.image.ref.name": version},
    )
    with open(os.path.join(layout, "oci-layout"), "wb") as f:
        f.write(doc({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(layout, "index.json"), "wb") as f:
        f.write(doc({"schemaVersion": 2, "mediaType": INDEX, "manifests": [index]}))
    print(index["digest"])


if __name__ == "__main__":
    main()
