#!/usr/bin/python3
"""The Debian packages scripts/image.sh puts in the image, resolved from apt's own index.

    debs.py [--data-only NAME]... NAME...

Prints one line per package: NAME VERSION ARCHITECTURE SHA256 FILE, where FILE is the name
`apt-get download NAME=VERSION` saves it as. The packages are NAME... and, for those, every package
their Depends and Pre-Depends name (the first alternative a real package answers, else the first
provider of a virtual one), recursively. A --data-only package is listed without its dependencies
(the image takes files of it, not its maintainer scripts' needs). The version is the one installed
on this machine when apt can still download it (what the binary was built and tested against),
else apt's candidate. One read of apt's cache: each apt-cache call costs about a second here.
"""
import sys

import apt_pkg


def main(argv):
    wanted, data_only = [], []
    args = iter(argv)
    for arg in args:
        if arg == "--data-only":
            data_only.append(next(args))
        else:
            wanted.append(arg)

    apt_pkg.init()
    cache = apt_pkg.Cache(progress=None)
    depcache = apt_pkg.DepCache(cache)
    records = apt_pkg.PackageRecords(cache)
    arch = apt_pkg.config.find("APT::Architecture")

    def package(name):
        try:
            return cache[name, arch]
        except KeyError:
            try:
                return cache[name, "all"]
            except KeyError:
                return cache[name]

    def version(pkg):
        current = pkg.current_ver
        if current is not None and current.downloadable:
            return current
        candidate = depcache.get_candidate_ver(pkg)
        if candidate is None or not candidate.downloadable:
            sys.exit(f"debs.py: no downloadable version of {pkg.name} (apt-get update?)")
        return candidate

    def choose(alternatives):
        for dep in alternatives:
            if dep.target_pkg.has_versions:
                return dep.target_pkg.name
        for dep in alternatives:
            providers = dep.target_pkg.provides_list
            if providers:
                return providers[0][2].parent_pkg.name
        sys.exit(f"debs.py: nothing provides {alternatives[0].target_pkg.name}")

    chosen = {}
    queue = [(name, False) for name in wanted] + [(name, True) for name in data_only]
    while queue:
        name, data = queue.pop(0)
        if name in chosen:
            continue
        try:
            pkg = package(name)
        except KeyError:
            sys.exit(f"debs.py: apt knows no package {name}")
        ver = version(pkg)
        chosen[name] = ver
        if data:
            continue
        for kind in ("PreDepends", "Depends"):
            for alternatives in ver.depends_list.get(kind, []):
                queue.append((choose(alternatives), False))

    for name in sorted(chosen):
        ver = chosen[name]
        records.lookup(ver.file_list[0])
        sha256 = records.hashes.find("sha256")
        if not sha256:
            sys.exit(f"debs.py: apt has no SHA256 for {name} {ver.ver_str}")
        # apt-get download's file name: NAME_VERSION_ARCH.deb, the epoch's colon as %3a
        file = f"{name}_{ver.ver_str.replace(':', '%3a')}_{ver.arch}.deb"
        print(name, ver.ver_str, ver.arch, sha256.hashvalue, file)


if __name__ == "__main__":
    main(sys.argv[1:])
