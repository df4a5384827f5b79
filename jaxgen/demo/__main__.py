"""python -m jaxgen.demo: see jaxgen/demo/cli.py."""

from jaxgen.demo import cli

if __name__ == "__main__":
  cli.run_main()
