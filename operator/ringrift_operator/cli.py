"""Entry points of the ``ringrift-operator`` command: one image, several programs.

``run`` (the operator), ``agent`` (the node agent), ``workload`` (the sample workload), ``crds``
(write the CRDs generated from the models). Each subcommand's module is imported only when
chosen, so the agent and the workload start without loading kopf.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, function taking the remaining argv and returning an exit code, help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("ringrift_operator.handlers.main", "main", "run the operator (kopf)"),
    "agent": ("ringrift_operator.agent.server", "main", "run the node agent"),
    "workload": ("ringrift_operator.workload.main", "main", "run the sample workload"),
    "crds": ("ringrift_operator.api.crdgen", "main", "write crds/*.yaml from the models"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="ringrift-operator", description=__doc__)
    parser.add_argument("command", choices=sorted(SUBCOMMANDS), help="what to run")
    parser.epilog = "; ".join(f"{k}: {v[2]}" for k, v in sorted(SUBCOMMANDS.items()))
    if not args or args[0] in {"-h", "--help"}:
        parser.print_help()
        return 0 if args else 2
    ns, rest = parser.parse_known_args(args[:1])
    module, function, _ = SUBCOMMANDS[ns.command]
    entry: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
    return entry(rest + args[1:])


if __name__ == "__main__":
    sys.exit(main())
