"""Resolve the CloudFormation intrinsic functions this project's templates use.

The deployment checks render a packaged template's environment variables and
IAM policies with stand-in values (a fake account, the test tables) so they can
be compared with what the code calls; `infra/stateful.py` renders the same
policies with the real names for the `chalice deploy` path.

    render({"Fn::Sub": "${JobsTable.Arn}/index/*"}, {}, {"JobsTable.Arn": "arn:aws:dynamodb:...:table/jobs"})
    # 'arn:aws:dynamodb:...:table/jobs/index/*'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")


class UnresolvedReference(KeyError):
    """A `Ref`, `Fn::GetAtt` or `${...}` names something the caller gave no value for."""


def render(value: Any, refs: Mapping[str, str], attrs: Mapping[str, str]) -> Any:
    """`value` with every `Ref`, `Fn::GetAtt`, `Fn::Sub` and `Fn::Join` replaced by a string.

    `refs` maps logical ids and pseudo parameters (`AWS::Region`) to what `Ref`
    returns; `attrs` maps `"LogicalId.Attribute"` to what `Fn::GetAtt` returns.
    Raises `UnresolvedReference` for anything not given.

        render({"Ref": "AWS::Region"}, {"AWS::Region": "eu-west-1"}, {})  # 'eu-west-1'
    """
    if isinstance(value, list):
        return [render(item, refs, attrs) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (name, argument), *_ = value.items()
        if name == "Ref":
            return _lookup(refs, str(argument))
        if name == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return _lookup(attrs, f"{logical_id}.{attribute}")
        if name == "Fn::Sub":
            return _sub(argument, refs, attrs)
        if name == "Fn::Join":
            delimiter, items = argument
            return str(delimiter).join(str(item) for item in render(items, refs, attrs))
    return {key: render(item, refs, attrs) for key, item in value.items()}


def references(value: Any) -> set[str]:
    """Logical ids (and pseudo parameters) that `value` refers to, through any intrinsic function.

    references({"Fn::Sub": "${Api}/x/${AWS::Region}"})  # {'Api', 'AWS::Region'}
    """
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for name, argument in value.items():
            if name == "Ref":
                found.add(str(argument))
            elif name == "Fn::GetAtt":
                found.add(argument[0] if isinstance(argument, list) else str(argument).split(".")[0])
            elif name == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                for bang, variable in _SUB_VARIABLE.findall(text):
                    if not bang and variable not in variables:
                        found.add(variable.split(".")[0])
                found |= references(variables)
            else:
                found |= references(argument)
    return found


def _sub(argument: Any, refs: Mapping[str, str], attrs: Mapping[str, str]) -> str:
    text, variables = (argument, {}) if isinstance(argument, str) else argument
    local = {name: str(render(v, refs, attrs)) for name, v in variables.items()}

    def replace(match: re.Match[str]) -> str:
        bang, variable = match.groups()
        if bang:  # `${!Literal}` is the literal text `${Literal}`
            return "${" + variable + "}"
        if variable in local:
            return local[variable]
        if "." in variable and not variable.startswith("AWS::"):
            return _lookup(attrs, variable)
        return _lookup(refs, variable)

    return _SUB_VARIABLE.sub(replace, str(text))


def _lookup(values: Mapping[str, str], name: str) -> str:
    if name not in values:
        raise UnresolvedReference(name)
    return values[name]
