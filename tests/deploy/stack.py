"""A packaged template seen as a deployed stack: stand-in values for every reference it makes.

`FakeStack(template, "dev")` resolves `Ref`/`Fn::GetAtt`/`Fn::Sub` the way
CloudFormation would in account 123456789012 / us-east-1, so the tests can read
each function's rendered environment and IAM policy and compare them with the
AWS calls the code makes against moto under those very names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.cfn import render
from tests.deploy.recording import ACCOUNT, REGION

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
FIREBASE_PROJECT = "test-project"  # the project tests/firebase_tokens.py mints tokens for


@dataclass
class FakeStack:
    template: dict[str, Any]
    stage: str
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stack = f"chalice-realtime-{self.stage}"
        self.refs.update(
            {
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::StackName": stack,
            }
        )
        for name, parameter in self.template.get("Parameters", {}).items():
            default = str(parameter.get("Default", ""))
            self.refs[name] = {"FirebaseProjectId": FIREBASE_PROJECT, "Stage": self.stage}.get(name, default)
        for logical_id, resource in self.resources.items():
            kind = resource.get("Type", "")
            if kind == "AWS::DynamoDB::Table":
                name = f"{stack}-{logical_id}"
                self.refs[logical_id] = name
                self.attrs[f"{logical_id}.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
            elif kind == "AWS::SNS::Topic":
                arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{stack}-{logical_id}"
                self.refs[logical_id] = arn
                self.attrs[f"{logical_id}.TopicArn"] = arn
                self.attrs[f"{logical_id}.TopicName"] = f"{stack}-{logical_id}"
            elif kind == "AWS::SQS::Queue":
                props = resource.get("Properties", {})
                name = self.render(props["QueueName"]) if "QueueName" in props else f"{stack}-{logical_id}"
                self.refs[logical_id] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
                self.attrs[f"{logical_id}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
                self.attrs[f"{logical_id}.QueueName"] = name
                self.attrs[f"{logical_id}.QueueUrl"] = self.refs[logical_id]
            elif kind == "AWS::CloudWatch::Dashboard":
                self.refs[logical_id] = self.render(resource["Properties"]["DashboardName"])
            elif kind == "AWS::ApiGatewayV2::Api":
                self.refs[logical_id] = f"ws{self.stage}api"
            elif kind in ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi"):
                self.refs[logical_id] = f"rest{self.stage}api"
            elif kind == "AWS::IAM::Role":
                self.attrs[f"{logical_id}.Arn"] = f"arn:aws:iam::{ACCOUNT}:role/{stack}-{logical_id}"
        for logical_id, resource in self.resources.items():
            kind = resource.get("Type", "")
            if kind in FUNCTION_TYPES:
                name = self.render(resource["Properties"].get("FunctionName", f"{stack}-{logical_id}-X1"))
                self.refs[logical_id] = name
                self.attrs[f"{logical_id}.Arn"] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
            elif kind == "AWS::Logs::LogGroup":
                name = self.render(resource["Properties"]["LogGroupName"])
                self.refs[logical_id] = name
                self.attrs[f"{logical_id}.Arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.template["Resources"])

    def render(self, value: Any) -> Any:
        return render(value, self.refs, self.attrs)

    def of_type(self, *kinds: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r.get("Type") in kinds}

    @property
    def functions(self) -> dict[str, dict[str, Any]]:
        """Logical id -> properties of each Lambda function."""
        return {k: r["Properties"] for k, r in self.of_type(*FUNCTION_TYPES).items()}

    def handler_of(self, function: str) -> str:
        """`APIHandler` -> 'app' (the REST app), `WebsocketConnect` -> 'ws_connect', ..."""
        return str(self.functions[function]["Handler"]).rsplit(".", 1)[-1]

    def function_for(self, handler: str) -> str:
        (function,) = [f for f in self.functions if self.handler_of(f) == handler]
        return function

    def environment(self, function: str) -> dict[str, str]:
        """The function's environment variables, as the deployed function would see them."""
        variables = self.functions[function].get("Environment", {}).get("Variables", {})
        return {name: str(value) for name, value in self.render(variables).items()}

    def role_of(self, function: str) -> dict[str, Any]:
        role = self.functions[function]["Role"]
        assert isinstance(role, dict) and "Fn::GetAtt" in role, f"{function}: role is not this stack's"
        return dict(self.resources[role["Fn::GetAtt"][0]])

    def statements_of(self, function: str) -> list[dict[str, Any]]:
        """Every statement of every inline and managed policy of the function's role, rendered."""
        role = self.role_of(function)["Properties"]
        statements: list[dict[str, Any]] = []
        for policy in role.get("Policies", []):
            statements.extend(self.render(policy["PolicyDocument"])["Statement"])
        assert not role.get("ManagedPolicyArns"), f"{function}: managed policies are not least privilege"
        return statements
