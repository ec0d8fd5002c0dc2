"""The audit policy engine: load, validate, evaluate and shape (spec sections 5, 7, 2.4).

::

    policy = load_policy("policy.yaml")          # strict v1 decode + apiserver validation
    ev = Evaluator(policy)
    ev.evaluate(from_http("GET", "/api/v1/namespaces/default/pods", User("alice", ("dev",))))
    # Decision(level='Metadata', omit_stages=frozenset(), omit_managed_fields=False, rule_index=3)
    out = apply(ev, captured_event)              # what the apiserver would have logged
"""

from kaudit.policy.attributes import Attributes, User, from_event, from_http
from kaudit.policy.evaluate import Decision, Evaluator, RuleTrace, explain_rule
from kaudit.policy.loader import LENIENT_HINT, decode_policy, load_policy, load_policy_bytes
from kaudit.policy.shape import Applied, apply, shape, strip_managed_fields
from kaudit.policy.types import GroupResources, Policy, PolicyRule
from kaudit.policy.validation import FieldError, check, validate

__all__ = [
    "LENIENT_HINT",
    "Applied",
    "Attributes",
    "Decision",
    "Evaluator",
    "FieldError",
    "GroupResources",
    "Policy",
    "PolicyRule",
    "RuleTrace",
    "User",
    "apply",
    "check",
    "decode_policy",
    "explain_rule",
    "from_event",
    "from_http",
    "load_policy",
    "load_policy_bytes",
    "shape",
    "strip_managed_fields",
    "validate",
]
