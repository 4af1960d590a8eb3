#!/usr/bin/env python3
"""Write a tiny single-layer OCI image layout, fully offline and deterministic.

usage: mkimage.py DIR TAG

DIR gets oci-layout, index.json and blobs/sha256/*: one gzip'd tar layer holding
/e2e/hello.txt, an image config for the machine's architecture, and a manifest
tagged TAG (org.opencontainers.image.ref.name), ready for
`skopeo copy oci:DIR:TAG docker://...`.
"""
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import tarfile

ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
        "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def put_blob(root, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(root, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mkimage.py DIR TAG")
    root, tag = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)

    # layer: a directory and one file, fixed mtimes so the digest is stable
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("e2e")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1700000000
        tar.addfile(d)
        body = b"hello from the configure-containerd-registries e2e image\n"
        f = tarfile.TarInfo("e2e/hello.txt")
        f.size, f.mode, f.mtime = len(body), 0o644, 1700000000
        tar.addfile(f, io.BytesIO(body))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(tar_bytes)
    layer_digest, layer_size = put_blob(root, gz.getvalue())
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()

    arch = ARCH.get(platform.machine(), platform.machine())
    config = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/e2e/hello.txt"], "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "scripts/e2e/mkimage.py"}],
    }
    cfg_digest, cfg_size = put_blob(root, json.dumps(config, sort_keys=True).encode())

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer_size}],
    }
    man_digest, man_size = put_blob(root, json.dumps(manifest, sort_keys=True).encode())

    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": man_digest, "size": man_size,
                       "platform": {"architecture": arch, "os": "linux"},
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(man_digest)


if __name__ == "__main__":
    main()
