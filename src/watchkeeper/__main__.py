"""The ``watchkeeper`` command and ``python -m watchkeeper``: the CLI, or which install it needs."""

import sys


def main() -> None:
    """Run the CLI; in the light install (the SDK only) print ``--version`` or say how to install the service,
    not a traceback."""
    try:
        from watchkeeper.cli import main as cli
    except ModuleNotFoundError as exc:
        if sys.argv[1:] == ["--version"]:  # the light install has a version too
            from importlib.metadata import version

            print(f"watchkeeper {version('watchkeeper')}")
            raise SystemExit(0) from None
        print(
            f"watchkeeper: the command needs the service installed: pip install 'watchkeeper[server]' "
            f"(module {exc.name!r} is missing; `pip install watchkeeper` alone is the producer SDK)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    cli()


if __name__ == "__main__":
    main()
