"""`codecdash deploy --stack NAME`: the dashboard on AWS, from the CloudFormation template.

1. checks the credentials (STS) and reads the configured resources (the same settings as
   ``codecdash serve --source aws``), finding the experiments table's stream;
2. packages the Lambda functions: a zip of the installed codecdash and its runtime
   dependencies, built for Lambda's Python 3.11 (Amazon Linux 2, glibc 2.26) with
   ``pip install --platform``, or copied from this environment when its wheels fit;
3. uploads the zip, content-addressed, to an artifacts bucket (made if missing);
4. creates or updates the stack (``infrastructure/cloudformation/dashboard.yaml``) and
   waits; a first deployment updates once more to allow the new CloudFront origin in the
   API's CORS;
5. uploads the static site with its content types and cache headers (index.html last),
   has the stream function build the read replica of the experiments when none is
   published yet, invalidates CloudFront, and prints ``Dashboard URL: https://…`` and the
   replica's bucket (``CODECDASH_AWS_READ_MODEL_BUCKET`` for ``serve --source aws``).

Three rooms: :mod:`~codecdash.deploy.package` (step 2, the Lambda package; no AWS call),
:mod:`~codecdash.deploy.stack` (the AWS steps: :class:`~codecdash.deploy.stack.Deployer`) and
:mod:`~codecdash.deploy.command` (the click command). Each imports only the ones before it.
"""
