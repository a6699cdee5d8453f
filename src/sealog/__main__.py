from sealog.cli import main

# Guarded: a preparing process (spawned) imports this module under another name.
if __name__ == "__main__":
    raise SystemExit(main())
