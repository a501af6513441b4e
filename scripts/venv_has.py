"""Exit 0 when every `name` or `name==version` given is installed in this
Python (a local version suffix such as +cpu is ignored), 1 otherwise. Used by
scripts/setup.sh and bench/install_refs.sh to install only what is missing."""
import importlib.metadata as m
import sys

for spec in sys.argv[1:]:
    name, _, version = spec.partition("==")
    try:
        got = m.version(name)
    except m.PackageNotFoundError:
        sys.exit(1)
    if version and got.split("+")[0] != version:
        sys.exit(1)
