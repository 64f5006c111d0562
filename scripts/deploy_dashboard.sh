#!/usr/bin/env bash
# Deploys the codecdash dashboard to AWS: S3 + CloudFront for the page, API Gateway + Lambda
# for the API, the snapshot schedule and the experiments aggregate (see docs/aws.md).
#
#   scripts/deploy_dashboard.sh [--stack NAME] [--region REGION] [codecdash deploy options]
#
# The stack defaults to $CODECDASH_STACK or "codecdash-dashboard". What the dashboard reports
# comes from the usual settings (codecdash.toml or CODECDASH_AWS_* variables). Prints
# "Dashboard URL: https://…" at the end. Every deployment is a release:
#
#   scripts/deploy_dashboard.sh --releases              # list them, * = live
#   scripts/deploy_dashboard.sh --rollback [RELEASE]    # site and functions back, one command
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'deploy_dashboard: %s\n' "$*" >&2; exit 1; }

# The codecdash command: $CODECDASH, else the project's virtual environment, else PATH.
if [ -n "${CODECDASH:-}" ]; then
  codecdash=("$CODECDASH")
elif [ -x .venv/bin/codecdash ]; then
  codecdash=(.venv/bin/codecdash)
elif command -v codecdash >/dev/null 2>&1; then
  codecdash=(codecdash)
else
  die "codecdash is not installed: pip install 'codecdash[aws]' (or run scripts/bootstrap)"
fi

args=("$@")
has_stack=false
for arg in "${args[@]+"${args[@]}"}"; do
  case "$arg" in --stack|--stack=*) has_stack=true ;; esac
done
if [ "$has_stack" = false ]; then
  args=(--stack "${CODECDASH_STACK:-codecdash-dashboard}" "${args[@]+"${args[@]}"}")
fi

# A readable error before anything else when there are no credentials at all.
if [ -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}${AWS_WEB_IDENTITY_TOKEN_FILE:-}${AWS_CONTAINER_CREDENTIALS_FULL_URI:-}${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-}" ] \
   && [ ! -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ] \
   && [ ! -f "${AWS_CONFIG_FILE:-$HOME/.aws/config}" ] \
   && [ -z "${CODECDASH_DEPLOY_SKIP_CREDENTIAL_CHECK:-}" ]; then
  # An instance or task role may still provide credentials: codecdash deploy checks for real.
  printf 'deploy_dashboard: no AWS credentials in the environment or ~/.aws; trying the instance role\n' >&2
fi

exec "${codecdash[@]}" deploy "${args[@]}"
