"""Build dist/: the .ipk packages, the feed and the overlay tarball."""
import sys


def main():
    print("package build: not implemented yet (issue 4); nothing built",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
