#!/usr/bin/env python3
"""Deploy infra/template.yaml to a local AWS emulator and write the local runtime's manifest.

Nothing here can run Lambda functions, so the SAM template is translated offline
(aws-sam-translator) and split in two:
- the data plane (bucket, queues, table, policies) is deployed through the emulator's own
  CloudFormation, so the tests use the very resources the template describes; with LocalStack the
  DynamoDB table goes to moto (LocalStack's DynamoDB needs DynamoDB Local, unavailable here);
- the functions, their SQS event source mappings, their schedules and their Function URLs are
  resolved against the deployed resources and written to a manifest that `proxyharvest-local`
  runs; each Function URL gets a loopback port (from --url-port-base up) and is served over plain
  HTTP, so `!GetAtt <Function>Url.FunctionUrl` resolves to `http://127.0.0.1:<port>/`.

Endpoints come from AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>, exactly as for the Rust code.
"""

import argparse
import json
import os
import sys
import time

import boto3
import yaml
from samtranslator.translator.transform import transform
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader

DATA_PLANE_TYPES = {
    "AWS::S3::Bucket",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::Queue",
    "AWS::SQS::QueuePolicy",
    "AWS::DynamoDB::Table",
}
# Resource types that the local stack skips: IAM is not enforced by the emulators, log groups
# and permissions have no local meaning, and functions and their URLs run in the local runtime.
CONTROL_PLANE_TYPES = {
    "AWS::Lambda::Function",
    "AWS::Lambda::Url",
    "AWS::Lambda::EventSourceMapping",
    "AWS::Lambda::Permission",
    "AWS::IAM::Role",
    "AWS::Events::Rule",
    "AWS::Logs::LogGroup",
    "AWS::CloudWatch::Alarm",
}


# The config loader takes PROXYHARVEST_CHECK_JUDGE_HTTPS as an https:// URL only, and a local
# Function URL is plain http: locally, a Function URL the template gives to the HTTPS judge serves
# as the plain-HTTP judge instead (unless the template sets that one too).
LOCAL_HTTP_STAND_INS = {"PROXYHARVEST_CHECK_JUDGE_HTTPS": "PROXYHARVEST_CHECK_JUDGE"}


def localize_environment(variables, local_urls):
    """A function's variables with local (http) Function URLs moved off https-only settings."""
    out = dict(variables)
    for https_name, http_name in LOCAL_HTTP_STAND_INS.items():
        if out.get(https_name) in local_urls:
            out.setdefault(http_name, out.pop(https_name))
    return out


class CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags as their long-form dicts."""


def _construct(tag):
    name = "Fn::GetAtt" if tag == "GetAtt" else ("Ref" if tag == "Ref" else "Fn::" + tag)

    def build(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return build


for _tag in ["Ref", "GetAtt", "Sub", "Join", "Select", "Split", "FindInMap", "If", "Equals",
             "Not", "And", "Or", "GetAZs", "ImportValue", "Base64", "Condition"]:
    CfnLoader.add_constructor("!" + _tag, _construct(_tag))


class StaticPolicies(ManagedPolicyLoader):
    """Offline managed-policy map: the translator asks IAM for these ARNs otherwise."""

    def __init__(self, region):
        self._partition = "aws"

    def load(self):
        names = ["AWSLambdaBasicExecutionRole", "AWSLambdaSQSQueueExecutionRole",
                 "AWSLambdaRole", "AWSXrayWriteOnlyAccess"]
        return {n: f"arn:aws:iam::aws:policy/service-role/{n}" for n in names}


def translate(template_path, params, region):
    with open(template_path) as f:
        sam = yaml.load(f, Loader=CfnLoader)
    # Offline translation needs an S3 code location; the local runtime uses built binaries.
    for res in sam["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://proxyharvest-local-code/function.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    return transform(sam, params, StaticPolicies(region))


def split(cfn, emulator):
    """Returns (stacks, control) where stacks maps a service target name to a template."""
    # Conditions only gate control-plane resources (alarm actions), which stay out of the stacks.
    base = {k: v for k, v in cfn.items()
            if k not in ("Resources", "Outputs", "Transform", "Conditions")}
    main, dynamo, control = {}, {}, {}
    for lid, res in cfn["Resources"].items():
        t = res["Type"]
        if t in CONTROL_PLANE_TYPES:
            control[lid] = res
        elif t in DATA_PLANE_TYPES:
            if t == "AWS::DynamoDB::Table" and emulator == "localstack":
                dynamo[lid] = res
            else:
                main[lid] = res
        else:
            sys.exit(f"deploy.py: resource {lid} has type {t}, which the local stack does not know")
    stacks = {"main": dict(base, Resources=main)}
    if dynamo:
        stacks["dynamodb"] = dict(base, Resources=dynamo)
    for tpl in stacks.values():
        tpl.pop("Parameters", None)  # parameters are substituted before deploying
        tpl["Parameters"] = {}
    return stacks, control


class Resolver:
    """Resolves the intrinsic functions the template uses against deployed physical ids."""

    def __init__(self, mappings, params, physical, attrs, region, account, stack):
        self.mappings, self.params, self.physical, self.attrs = mappings, params, physical, attrs
        self.pseudo = {"AWS::Region": region, "AWS::AccountId": account, "AWS::StackName": stack,
                       "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}

    def ref(self, name):
        if name in self.params:
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.physical:
            return self.physical[name]
        raise KeyError(f"cannot resolve Ref {name}")

    def __call__(self, v):
        if isinstance(v, list):
            return [self(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                return self.ref(a)
            if k == "Fn::GetAtt":
                lid, attr = a if isinstance(a, list) else a.split(".", 1)
                return self.attrs[(lid, attr)]
            if k == "Fn::FindInMap":
                m, top, second = self(a)
                return self.mappings[m][top][second]
            if k == "Fn::Sub":
                text, extra = (a, {}) if isinstance(a, str) else (a[0], self(a[1]))
                out, i = "", 0
                while i < len(text):
                    j = text.find("${", i)
                    if j < 0:
                        out += text[i:]
                        break
                    end = text.index("}", j)
                    out += text[i:j]
                    name = text[j + 2:end]
                    if name in extra:
                        out += str(extra[name])
                    elif "." in name and not name.startswith("AWS::"):
                        lid, attr = name.split(".", 1)
                        out += str(self.attrs[(lid, attr)])
                    else:
                        out += str(self.ref(name))
                    i = end + 1
                return out
            if k == "Fn::Join":
                sep, items = a
                return sep.join(str(x) for x in self(items))
            if k == "Fn::Select":
                idx, items = self(a)
                return self(items)[int(idx)]
            if k == "Fn::Split":
                sep, text = self(a)
                return text.split(sep)
        return {k: self(x) for k, x in v.items()}


def substitute_params(tpl, resolver):
    """Deploy-time substitution of parameters and mappings, which the emulators handle unevenly."""
    def walk(v):
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            if len(v) == 1:
                (k, a), = v.items()
                if k == "Ref" and (a in resolver.params or a in resolver.pseudo):
                    return resolver.ref(a)
                if k == "Fn::FindInMap":
                    return resolver(v)
            return {k: walk(x) for k, x in v.items()}
        return v
    return walk(tpl)


def deploy_stack(cfn_client, name, template):
    body = json.dumps(template)
    try:
        cfn_client.describe_stacks(StackName=name)
        exists = True
    except cfn_client.exceptions.ClientError:
        exists = False
    if exists:
        try:
            cfn_client.update_stack(StackName=name, TemplateBody=body)
        except cfn_client.exceptions.ClientError as e:
            if "No updates" not in str(e):
                raise
    else:
        cfn_client.create_stack(StackName=name, TemplateBody=body)
    deadline = time.time() + 120
    while True:
        st = cfn_client.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        if st.endswith("_COMPLETE") and "ROLLBACK" not in st:
            return
        if "FAILED" in st or "ROLLBACK" in st:
            events = cfn_client.describe_stack_events(StackName=name)["StackEvents"][:10]
            reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in events]
            sys.exit(f"deploy.py: stack {name} ended {st}:\n  " + "\n  ".join(reasons))
        if time.time() > deadline:
            sys.exit(f"deploy.py: stack {name} still {st} after 120 s")
        time.sleep(0.5)


def check_visibility(params):
    """AWS advises a queue visibility of at least 6x its consumer's timeout; refuse less."""
    timeout = int(params.get("ValidatorTimeout", 120))
    visibility = int(params.get("ChunkVisibilityTimeout", 720))
    if visibility < 6 * timeout:
        sys.exit(f"deploy.py: ChunkVisibilityTimeout {visibility} is less than 6 x "
                 f"ValidatorTimeout {timeout}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", required=True)
    ap.add_argument("--stack", default="proxyharvest")
    ap.add_argument("--emulator", choices=["moto", "localstack"], default="moto")
    ap.add_argument("--bin-dir", required=True, help="where the function binaries are")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--param", action="append", default=[], help="Name=Value")
    ap.add_argument("--url-port-base", type=int, default=9101,
                    help="loopback port of the first Function URL; the next ones follow")
    args = ap.parse_args()

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    params = dict(p.split("=", 1) for p in args.param)
    cfn = translate(args.template, params, region)
    for name, spec in cfn.get("Parameters", {}).items():
        params.setdefault(name, str(spec.get("Default", "")))

    # A local stack on moto for DynamoDB even when the rest is on LocalStack.
    dynamo_endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
    main_endpoint = os.environ.get("AWS_ENDPOINT_URL_CLOUDFORMATION") or os.environ.get("AWS_ENDPOINT_URL")
    account = boto3.client("sts", region_name=region).get_caller_identity()["Account"]

    check_visibility(params)
    stacks, control = split(cfn, args.emulator)
    pre = Resolver(cfn.get("Mappings", {}), params, {}, {}, region, account, args.stack)
    physical, attrs = {}, {}
    for part, tpl in stacks.items():
        endpoint = dynamo_endpoint if part == "dynamodb" else main_endpoint
        client = boto3.client("cloudformation", region_name=region, endpoint_url=endpoint)
        name = args.stack if part == "main" else f"{args.stack}-{part}"
        deploy_stack(client, name, substitute_params(tpl, pre))
        for r in client.describe_stack_resources(StackName=name)["StackResources"]:
            if "LogicalResourceId" in r and "PhysicalResourceId" in r:  # moto lists policies bare
                physical[r["LogicalResourceId"]] = r["PhysicalResourceId"]

    sqs = boto3.client("sqs", region_name=region)
    ddb = boto3.client("dynamodb", region_name=region)
    for lid, res in cfn["Resources"].items():
        t = res["Type"]
        if t == "AWS::SQS::Queue":
            # The emulator's own URL for the queue (the stack may report an AWS-style one).
            url = sqs.get_queue_url(QueueName=physical[lid].rstrip("/").rsplit("/", 1)[1])["QueueUrl"]
            physical[lid] = url
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attrs[(lid, "Arn")] = arn
            attrs[(lid, "QueueName")] = arn.rsplit(":", 1)[1]
            attrs[(lid, "QueueUrl")] = url
        elif t == "AWS::DynamoDB::Table":
            name = physical[lid]
            attrs[(lid, "Arn")] = f"arn:aws:dynamodb:{region}:{account}:table/{name}"
            ttl = res["Properties"].get("TimeToLiveSpecification")
            if ttl:  # moto ignores TTL in templates
                try:
                    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
                except ddb.exceptions.ClientError as e:
                    if "already enabled" not in str(e).lower():
                        raise
        elif t == "AWS::S3::Bucket":
            attrs[(lid, "Arn")] = f"arn:aws:s3:::{physical[lid]}"
    for lid, res in control.items():
        if res["Type"] == "AWS::Lambda::Function":
            fname = Resolver(cfn.get("Mappings", {}), params, physical, attrs, region, account,
                             args.stack)(res["Properties"].get("FunctionName", lid))
            physical[lid] = fname
            attrs[(lid, "Arn")] = f"arn:aws:lambda:{region}:{account}:function:{fname}"
    function_urls = []
    for lid, res in sorted(control.items()):
        if res["Type"] == "AWS::Lambda::Url":
            target = Resolver(cfn.get("Mappings", {}), params, physical, attrs, region, account,
                              args.stack)(res["Properties"]["TargetFunctionArn"])
            fname = target.rsplit(":function:", 1)[-1]  # a Ref gives the name, a GetAtt the ARN
            port = args.url_port_base + len(function_urls)
            attrs[(lid, "FunctionUrl")] = f"http://127.0.0.1:{port}/"
            attrs[(lid, "FunctionArn")] = f"arn:aws:lambda:{region}:{account}:function:{fname}"
            function_urls.append({"function": fname, "port": port})
    local_urls = {v for (_, attr), v in attrs.items() if attr == "FunctionUrl"}
    resolve = Resolver(cfn.get("Mappings", {}), params, physical, attrs, region, account, args.stack)

    manifest = {"region": region, "account_id": account, "stack": args.stack,
                "functions": {}, "event_sources": [], "schedules": [],
                "function_urls": function_urls,
                "outputs": {k: str(resolve(v["Value"])) for k, v in cfn.get("Outputs", {}).items()}}
    fn_by_lid = {}
    for lid, res in control.items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        p = {k: resolve(v) for k, v in res["Properties"].items()
             if k in ("FunctionName", "Timeout", "MemorySize", "Environment")}
        binary = cfn_binary(args.template, lid)
        fn_by_lid[lid] = p["FunctionName"]
        manifest["functions"][p["FunctionName"]] = {
            "logical_id": lid,
            "binary": os.path.abspath(os.path.join(args.bin_dir, binary)),
            "timeout_s": int(p.get("Timeout", 3)),
            "memory_mb": int(p.get("MemorySize", 128)),
            "environment": localize_environment(
                {k: str(v) for k, v in p.get("Environment", {}).get("Variables", {}).items()},
                local_urls),
        }
    for lid, res in control.items():
        p = res["Properties"]
        if res["Type"] == "AWS::Lambda::EventSourceMapping":
            fn = resolve(p["FunctionName"])
            arn = resolve(p["EventSourceArn"])
            url = next(attrs[(q, "QueueUrl")] for (q, a), v in attrs.items() if a == "Arn" and v == arn)
            manifest["event_sources"].append({
                "function": fn,
                "queue_url": url,
                "queue_arn": arn,
                "batch_size": int(p.get("BatchSize", 10)),
                "report_batch_item_failures": "ReportBatchItemFailures" in p.get("FunctionResponseTypes", []),
                "maximum_concurrency": int(resolve(p.get("ScalingConfig", {}).get("MaximumConcurrency", 1000))),
                "enabled": bool(p.get("Enabled", True)),
            })
        elif res["Type"] == "AWS::Events::Rule":
            rp = {k: resolve(v) for k, v in p.items() if k != "Targets"}
            rp["Targets"] = [{k: resolve(v) for k, v in t.items() if k in ("Arn", "Input", "Id")}
                             for t in p.get("Targets", [])]
            for target in rp.get("Targets", []):
                fn = target["Arn"].rsplit(":", 1)[1]
                manifest["schedules"].append({
                    "name": rp.get("Name", lid),
                    "function": fn,
                    "expression": rp["ScheduleExpression"],
                    "enabled": rp.get("State", "ENABLED") == "ENABLED",
                    "input": json.loads(target["Input"]) if "Input" in target else None,
                })
    os.makedirs(os.path.dirname(os.path.abspath(args.manifest)), exist_ok=True)
    with open(args.manifest, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    print(f"deploy.py: stack {args.stack} deployed to {args.emulator}; manifest {args.manifest}")


def cfn_binary(template_path, lid):
    with open(template_path) as f:
        sam = yaml.load(f, Loader=CfnLoader)
    res = sam["Resources"].get(lid, {})
    return res.get("Metadata", {}).get("BuildProperties", {}).get("Binary", lid)


if __name__ == "__main__":
    main()
