"""AWS CDK app for batchinfer, plus the resource spec it shares with the local engine."""
