"""What every jaxgen command line shares: flags, errors, exit codes.

Each CLI (jaxgen.main, jaxgen.sample, jaxgen.translate, jaxgen.evaluate)
is a library function plus a `main(argv=None) -> int` that only parses
flags and calls it:

  def _define(fv, argv):
    flags.DEFINE_string("workdir", None, "Run to load.", flag_values=fv)

  def main(argv=None):
    return cli.run(lambda fv: library_function(fv.workdir), _define, argv,
                   __doc__)

`run` parses absl flags into a fresh `FlagValues` per call (so `main` can
be called again in one process, e.g. by tests, and the CLIs' flags never
clash), adds `--help` and `--verbose`, and turns errors a user can act on
into one or two lines on stderr and exit status 1, without a traceback:

  * `UserError` and `jaxgen.run.RunError` (a workdir without a checkpoint,
    or of another model);
  * missing files and folders (FileNotFoundError, NotADirectoryError,
    IsADirectoryError) and images PIL cannot read;
  * ValueError and OSError raised by jaxgen's own code: its config, data and
    checkpoint checks, whose messages name the file or field to fix.

Anything else is a bug and keeps its traceback, as does any error with
`--verbose`. Bad flags exit with status 2.

A CLI takes no positional arguments unless it names them: with
`positional=("src", "dst")`, `run` wants exactly two (before, between or
after the flags, as `python -m jaxgen.data.sketchify SRC DST --size=64`)
and calls `main(fv, src=..., dst=...)`; another number of them is a usage
error (status 2) that names the expected SRC DST. A `--` ends the flags, for
a path that starts with a dash.
"""

import os
import sys
from typing import Callable, List, Optional, Sequence

from absl import flags
from absl import logging
from PIL import Image

from jaxgen import run as run_lib

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PIL_DIR = os.path.dirname(os.path.abspath(Image.__file__))

EXIT_USER_ERROR = 1
EXIT_USAGE = 2


class UserError(Exception):
  """An error in the user's input (flags, files), shown without traceback."""


class UsageError(UserError):
  """Flags that do not go together (exit status 2, like a bad flag)."""


def _innermost_file(error: BaseException) -> str:
  tb = error.__traceback__
  if tb is None:
    return ""
  while tb.tb_next is not None:
    tb = tb.tb_next
  return os.path.abspath(tb.tb_frame.f_code.co_filename)


def _inside(path: str, folder: str) -> bool:
  return path.startswith(folder + os.sep)


def is_user_error(error: BaseException) -> bool:
  """Whether `error` is one a user can act on (see the module docstring)."""
  if isinstance(error, (UserError, run_lib.RunError, flags.Error,
                        FileNotFoundError, NotADirectoryError,
                        IsADirectoryError, Image.UnidentifiedImageError)):
    return True
  where = _innermost_file(error)
  if isinstance(error, OSError) and _inside(where, _PIL_DIR):
    return True  # A truncated or corrupt image file.
  return isinstance(error, (ValueError, OSError)) and _inside(
      where, _PACKAGE_DIR)


def error_lines(error: BaseException) -> List[str]:
  """The lines a user error is reported with."""
  text = str(error).strip() or type(error).__name__
  return [f"Error: {text}",
          "(--verbose shows where it was raised.)"]


def define_run_flags(fv: flags.FlagValues, workdir_help: str,
                     workdir_flag: str = "workdir"):
  """--workdir, --which and --step: a trained run (see jaxgen.run.load).

  Args:
    fv: the flags to define them on.
    workdir_help: the help of the workdir flag.
    workdir_flag: the name of the workdir flag, for a CLI that reads more
      than one run (--which and --step then choose this one's checkpoint).
  """
  flags.DEFINE_string(workdir_flag, None, workdir_help, flag_values=fv)
  flags.DEFINE_enum("which", None, list(run_lib.WHICH),
                    "Checkpoint: best or latest (default: best when the run "
                    "keeps one).", flag_values=fv)
  flags.DEFINE_integer("step", None, "A specific step of --which (default: "
                       "the newest).", flag_values=fv)


def define_truncation_flag(fv: flags.FlagValues):
  """--truncation: sampling codes of GAN runs (jaxgen.run.load's argument)."""
  flags.DEFINE_float(
      "truncation", None, "GAN runs (gan, siamese_gan): draw the latent "
      "codes from N(0, 1) truncated to [-t, t] (0: no truncation; default: "
      "the run's config). DCGAN generators wash out with it (README "
      "\"Results\").",
      flag_values=fv)


def define_select_flags(fv: flags.FlagValues):
  """--select and --candidates: jaxgen.sample.draw's best-of-k sampling."""
  flags.DEFINE_enum(
      "select", None, ["real", "class"], "GAN runs: keep each sample's best "
      "of --candidates draws by the run's discriminator: 'real' its "
      "real/fake logit, 'class' its class head's probability of the class "
      "asked for (configs/siamese_gan.py:cond,ac). Default: no selection.",
      flag_values=fv)
  flags.DEFINE_integer("candidates", 4, "Draws per sample with --select.",
                       lower_bound=2, flag_values=fv)


def print_written(found: dict, out: str, what: str, detail: str):
  """The closing lines of a tool that writes files.

  Args:
    found: with "written" (paths) and "skipped" ((path, reason) pairs).
    out: the output folder.
    what: what was written, e.g. "image(s)".
    detail: said in brackets after the folder.
  """
  print(f"Wrote {len(found['written'])} {what} to {os.path.abspath(out)} "
        f"({detail}).")
  if found["skipped"]:
    print(f"Skipped {len(found['skipped'])} unreadable file(s) (warnings "
          "above).", file=sys.stderr)


def _usage_error(message: str) -> int:
  lines = [l for l in message.strip().splitlines() if l.strip()]
  if any(l.startswith("Traceback (most recent call last)") for l in lines):
    # absl quotes the traceback of an error in a flag's parser (e.g. a
    # config file's); its first and last lines say what went wrong.
    lines = [lines[0], lines[-1]]
  print(f"Error: {' '.join(lines)} (--help lists the flags)", file=sys.stderr)
  return EXIT_USAGE


def _positional_mismatch(positional: Sequence[str], args: List[str]) -> str:
  """The usage error of `args` where `positional` are expected."""
  if not positional:
    return f"unexpected arguments: {' '.join(args)}"
  expected = " ".join(name.upper() for name in positional)
  got = f": {' '.join(args)}" if args else ""
  return (f"expected {len(positional)} positional argument(s) {expected}, "
          f"got {len(args)}{got}")


def _init_logging():
  """absl logging as absl.app sets it up, at INFO (progress lines)."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # Defaults, without "before flag parsing".
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)


def run(main: Callable[..., None],
        define: Callable[[flags.FlagValues, List[str]], None],
        argv: Optional[Sequence[str]] = None, doc: str = "",
        explain: Optional[Callable[[Exception, List[str]], Optional[str]]]
        = None, positional: Sequence[str] = ()) -> int:
  """Parses flags, calls `main` and reports errors; returns the exit status.

  Args:
    main: called with the parsed flags, and with the positional arguments
      as keyword arguments named by `positional`.
    define: defines the CLI's flags on the `FlagValues` it is given (and
      gets the full argv, for flags that read it, such as config files).
    argv: arguments without the program name (default: sys.argv[1:]).
    doc: the CLI's documentation, printed by --help above the flags.
    explain: optional (parse error, argv) -> message for errors raised while
      parsing that are not absl flag errors (e.g. an unknown config field);
      None leaves the error to the rules of `is_user_error`.
    positional: the names of the positional arguments the CLI takes, in
      order (valid Python identifiers; shown upper-case in errors). Each is
      required; none are taken by default.

  Returns:
    0, EXIT_USER_ERROR or EXIT_USAGE. Errors that are not the user's are
    raised.
  """
  argv = [sys.argv[0]] + list(sys.argv[1:] if argv is None else argv)
  verbose = "--verbose" in argv
  fv = flags.FlagValues()
  flags.DEFINE_bool("verbose", False, "Show tracebacks of all errors.",
                    flag_values=fv)
  flags.DEFINE_bool("help", False, "Show this help.", short_name="h",
                    flag_values=fv)
  define(fv, argv)
  try:
    rest = fv(argv)
  except flags.Error as e:
    if "--help" in argv or "-h" in argv:
      print(doc + "\n" + fv.get_help())
      return 0
    return _usage_error(str(e))
  except Exception as e:  # pylint: disable=broad-except
    message = explain(e, argv) if explain else None
    if verbose or not (message or is_user_error(e)):
      raise
    return _usage_error(message or str(e))
  if fv.help:
    print(doc + "\n" + fv.get_help())
    return 0
  args = rest[1:]
  if len(args) != len(positional):
    return _usage_error(_positional_mismatch(positional, args))
  _init_logging()
  try:
    main(fv, **dict(zip(positional, args)))
  except UsageError as e:
    return _usage_error(str(e))
  except Exception as e:  # pylint: disable=broad-except
    if fv.verbose or not is_user_error(e):
      raise
    print("\n".join(error_lines(e)), file=sys.stderr)
    return EXIT_USER_ERROR
  return 0

