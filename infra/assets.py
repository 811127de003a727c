"""What goes into the code assets: the repository root as the source, less everything else."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# The zip functions need the `lambdas` package and the resource spec it imports, nothing more.
# (Patterns are globs; a later "!" pattern takes a path back in.)
LAMBDA_CODE_EXCLUDE = [
    "*",
    ".*",
    "!lambdas",
    "!lambdas/**",
    "!infra",
    "!infra/__init__.py",
    "!infra/resource_spec.py",
    "**/__pycache__",
    "**/*.pyc",
]

# The container build context is the repository root, as the Dockerfile copies `lambdas/`,
# `infra/resource_spec.py` and `inference_image/`; everything else stays out, above all the
# virtualenv, which would make fingerprinting the context at synth very slow. The same list is
# in .dockerignore, for a `docker build` run by hand.
IMAGE_EXCLUDE = [
    "*",
    "!lambdas",
    "!infra/__init__.py",
    "!infra/resource_spec.py",
    "!inference_image",
    "**/__pycache__",
    "**/*.pyc",
]
