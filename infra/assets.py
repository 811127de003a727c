"""What goes into the code assets: the repository root as the source, less everything else."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# The zip functions ship whole packages: the contract and the handlers' package, nothing more.
# (Patterns are globs; a later "!" pattern takes a path back in.)
LAMBDA_PACKAGES = ("contract", "lambdas")
# The container images add the classifier's package; both Dockerfiles (ClassifyBatch's, and the
# training one with TensorFlow) copy the same three.
IMAGE_PACKAGES = ("contract", "lambdas", "inference_image")


def _only(packages: tuple[str, ...]) -> list[str]:
    included = [pattern for package in packages for pattern in (f"!{package}", f"!{package}/**")]
    return ["*", ".*", *included, "**/__pycache__", "**/*.pyc"]


LAMBDA_CODE_EXCLUDE = _only(LAMBDA_PACKAGES)

# The container build context is the repository root; everything but the image's packages stays
# out, above all the virtualenv, which would make fingerprinting the context at synth very slow.
# The same list is in .dockerignore, for a `docker build` run by hand.
IMAGE_EXCLUDE = _only(IMAGE_PACKAGES)
