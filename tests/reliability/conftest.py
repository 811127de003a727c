"""The synthesized CDK app of tests/infra, for the security tests here."""

from tests.infra.conftest import cdk_context, synthesized  # noqa: F401  (session fixtures)
